"""Replay a Dockerfile without a Docker engine: its ARG, ENV, COPY, WORKDIR, RUN
and CMD, in a temporary root that stands for the image's filesystem, with the
image's Python (3.12). Absolute paths the Dockerfile writes to (/opt, /tmp/build,
/var/task, /app) are mapped under that root; `python` and `pip` are the 3.12
interpreter's. It catches what only the image would: a file the Dockerfile does
not copy, a wrong path, a dependency missing from the image's requirements.

What it cannot check is the base image itself (its OS packages, the Lambda
runtime interface client it ships): the tests bring awslambdaric for 3.12."""

from __future__ import annotations

import glob
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAPPED = ("/opt/", "/tmp/build", "/var/task", "/app")


def python312() -> str | None:
    """A Python 3.12 interpreter with pip, if this machine has one."""
    candidates = [
        shutil.which("python3.12"),
        *sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.12*/bin/python3.12"))),
    ]
    for path in filter(None, candidates):
        check = subprocess.run([path, "-m", "pip", "--version"], capture_output=True, timeout=60)
        if check.returncode == 0:
            return path
    return None


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    return out


@dataclass
class Replay:
    root: Path
    python: str
    build_args: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    cmd: list[str] = field(default_factory=list)
    healthcheck: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)

    def path(self, value: str) -> str:
        """An image path under the replay root; other strings unchanged."""
        for prefix in MAPPED:
            value = value.replace(prefix, str(self.root) + prefix)
        return value

    def expand(self, value: str) -> str:
        return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: self.env.get(m.group(1) or m.group(2), ""), value)

    def shim_bin(self) -> Path:
        bin_dir = self.root / "shim-bin"
        bin_dir.mkdir(exist_ok=True)
        (bin_dir / "python").write_text(f'#!/bin/sh\nexec "{self.python}" "$@"\n')
        # The replay keeps pip's cache (the image build does not): the same wheels, fetched once.
        (bin_dir / "pip").write_text(
            f'#!/bin/sh\nargs=""\nfor a in "$@"; do [ "$a" = "--no-cache-dir" ] || args="$args \\"$a\\""; done\n'
            f'eval exec "{self.python}" -m pip $args\n'
        )
        for tool in ("python", "pip"):
            (bin_dir / tool).chmod(0o755)
        return bin_dir

    def run(self, dockerfile: Path, plain_pip_target: Path | None = None) -> None:
        bin_dir = self.shim_bin()
        self.env.setdefault("PATH", f"{bin_dir}:/usr/bin:/bin")
        for keyword, rest in instructions(dockerfile):
            self.log.append(f"{keyword} {rest}")
            if keyword == "FROM":
                if "lambda/python" in rest:
                    self.env["LAMBDA_TASK_ROOT"] = str(self.root / "var/task")
                    (self.root / "var/task").mkdir(parents=True, exist_ok=True)
            elif keyword == "ARG":
                name, _, default = rest.partition("=")
                self.env[name] = self.build_args.get(name, default)
            elif keyword == "ENV":
                for pair in shlex.split(rest):
                    name, _, value = pair.partition("=")
                    self.env[name] = self.expand(self.path(value))
            elif keyword == "WORKDIR":
                self.cwd = Path(self.expand(self.path(rest)))
                self.cwd.mkdir(parents=True, exist_ok=True)
            elif keyword == "COPY":
                *sources, dest = shlex.split(rest)
                self.copy([self.expand(s) for s in sources], self.expand(self.path(dest)))
            elif keyword == "RUN":
                command = self.path(rest)
                if plain_pip_target is not None and "pip install" in command:
                    command = command.replace("pip install", f"pip install --target {plain_pip_target}", 1)
                if re.match(r"useradd\b", command):
                    continue  # users belong to the base image's OS, not to a replay
                result = subprocess.run(
                    ["bash", "-c", command],
                    env=self.env,
                    cwd=self.cwd or self.root,
                    capture_output=True,
                    text=True,
                    timeout=900,
                )
                assert result.returncode == 0, f"RUN {rest}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            elif keyword == "CMD":
                self.cmd = [str(v) for v in __import__("json").loads(rest)]
            elif keyword == "HEALTHCHECK":
                self.healthcheck = __import__("json").loads(rest.split("CMD", 1)[1].strip())
            elif keyword in ("USER", "EXPOSE"):
                continue

    def copy(self, sources: list[str], dest: str) -> None:
        target = Path(dest)
        for source in sources:
            src = ROOT / source
            assert src.exists(), f"COPY {source}: not in the repository"
            if src.is_dir():
                shutil.copytree(
                    src,
                    target,
                    dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"),
                )
            else:
                if dest.endswith("/") or len(sources) > 1:
                    target.mkdir(parents=True, exist_ok=True)
                    shutil.copy(src, target / src.name)
                else:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy(src, target)

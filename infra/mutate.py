"""`make mutate`: mutmut over the modules that decide, limit and classify, in
two sets, each in its own git worktree of HEAD (commit first) under the temp
folder, so that each keeps its own results between runs:

    .venv/bin/python -m infra.mutate core imaging [--jobs 2]

core     pyproject.toml's [tool.mutmut] as written: matching, verification,
         the API key, the error vocabulary and handlers, S3 reads, the queue's
         failure classification, face selection; against the fast tests.
imaging  imaging.py (the image limits and decoding) against the fast tests
         less three files whose use of it is incidental and slow (every
         photo through the whole model: quality, large photos, every
         encoding): with them each of its 1,244 mutants cost up to 35 s of
         tests, and a mutant that loops (a header walk that stops advancing)
         minutes; their imaging cases are covered by test_imaging*.py.

Each set's listing goes to mutants-<set>.txt in the repository (git-ignored),
then through infra/mutation_report.py; tests/MUTATION.md records the result.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

SETS: dict[str, dict[str, list[str]]] = {
    "core": {"only_mutate": [], "ignore": []},  # pyproject.toml as written
    "imaging": {
        "only_mutate": ["src/face_recognition_service/imaging.py"],
        "ignore": [
            "tests/unit/test_quality.py",
            "tests/unit/test_large_photos.py",
            "tests/integration/server/test_faces_and_inputs.py",
        ],
    },
}


def configure(pyproject: Path, only_mutate: list[str], ignore: list[str]) -> None:
    """The set's module list and extra --ignore options in the worktree's pyproject."""
    text = pyproject.read_text()
    if only_mutate:
        listed = "".join(f'    "{path}",\n' for path in only_mutate)
        text = re.sub(r"only_mutate = \[\n(?:    .*\n)*?\]", f"only_mutate = [\n{listed}]", text, count=1)
    if ignore:
        extra = "".join(f', "--ignore={path}"' for path in ignore)
        text = re.sub(r"(pytest_add_cli_args = \[.*?)\]", lambda m: m.group(1) + extra + "]", text, count=1)
    pyproject.write_text(text)


def worktree(name: str) -> Path:
    work = Path(tempfile.gettempdir()) / f"face-recognition-mutate-{name}"
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, check=True, capture_output=True, text=True)
    if not (work / ".git").exists():
        subprocess.run(["git", "worktree", "prune"], cwd=ROOT, check=True)
        subprocess.run(["git", "worktree", "add", "--detach", str(work), "HEAD"], cwd=ROOT, check=True)
    else:
        subprocess.run(["git", "checkout", "--force", "--detach", head.stdout.strip()], cwd=work, check=True)
    link = work / "src"  # mutmut knows ./, src/ and source/ as source roots
    if not link.exists():
        link.symlink_to("function")
    return work


def run(name: str, jobs: int) -> Path:
    work = worktree(name)
    configure(work / "pyproject.toml", SETS[name]["only_mutate"], SETS[name]["ignore"])
    subprocess.run([str(BIN / "mutmut"), "run", "--max-children", str(jobs)], cwd=work, check=False)
    listing = subprocess.run(
        [str(BIN / "mutmut"), "results", "--all", "true"],
        cwd=work,
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    out = ROOT / f"mutants-{name}.txt"
    out.write_text(listing)
    subprocess.run(
        [sys.executable, "-m", "infra.mutation_report", str(out), "--cwd", str(work)], cwd=ROOT, check=False
    )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("sets", nargs="*", default=list(SETS), choices=list(SETS))
    parser.add_argument("--jobs", type=int, default=int(os.environ.get("MUTATE_JOBS", "2")))
    args = parser.parse_args()
    for name in args.sets:
        run(name, args.jobs)
    return 0


if __name__ == "__main__":
    sys.exit(main())

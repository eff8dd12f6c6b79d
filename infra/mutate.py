"""`make mutate`: mutmut over the modules that decide, limit and classify, in
two sets, each in its own git worktree of HEAD (commit first) under the temp
folder, so that each keeps its own results between runs:

    .venv/bin/python -m infra.mutate core imaging [--jobs 2]

core     pyproject.toml's [tool.mutmut] as written: matching, verification,
         the API key, the error vocabulary and handlers, S3 reads, the queue's
         failure classification, face selection; against the fast tests.
imaging  imaging.py (the image limits and decoding) against the tests that
         call it: its own unit tests, the boundary and fuzz contracts (every
         bad input through the app) and face finding's limits. The rest of
         the fast suite decodes photos only on the way to the model: with it
         each mutant cost up to 35 s of tests and their fixtures, and a
         survivor that reached every photo test timed out instead of
         surviving; a looping mutant (a header walk that stops advancing)
         held a core for minutes. Here the fixtures are light, so a mutant is
         given 10 s of CPU over its tests' time, not 60. Its survivors and
         timeouts are then run by name, in a second worktree (imaging-full),
         against every test that decodes images on purpose (the server's
         inputs, the bad-input corpus, large photos, quality, and the memory
         budget measured against the decoders): killed there is killed.

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
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

# The tests that call imaging.py on purpose.
IMAGING_TESTS = [
    "tests/unit/test_imaging.py",
    "tests/unit/test_imaging_headers.py",
    "tests/unit/test_imaging_limits.py",
    "tests/unit/test_min_face_and_scale.py",
    "tests/contract/test_boundaries.py",
    "tests/contract/test_fuzz.py",
]

SETS: dict[str, dict[str, Any]] = {
    "core": {},  # pyproject.toml as written
    "imaging": {
        "only_mutate": ["src/face_recognition_service/imaging.py"],
        "tests": IMAGING_TESTS,
        "timeout_constant": 10.0,
        # Its survivors and timeouts, run again by name against every test
        # that decodes images on purpose: the server's inputs and bad-input
        # corpus, large photos, quality, and the memory budget measured
        # against the decoders' real peak (a slow test, so "-m" is dropped).
        "recheck": {  # the same module list
            "tests": [
                *IMAGING_TESTS,
                "tests/unit/test_large_photos.py",
                "tests/unit/test_quality.py",
                "tests/contract/test_bad_input_corpus.py",
                "tests/contract/test_hostile_surfaces.py",
                "tests/integration/server/test_api.py",
                "tests/integration/server/test_faces_and_inputs.py",
                "tests/integration/server/test_memory_budget.py",
            ],
            "markers": "",
            "timeout_constant": 30.0,
        },
    },
}


def configure(pyproject: Path, spec: dict[str, Any]) -> None:
    """The set's module list, test selection and CPU allowance in the worktree's pyproject."""
    text = pyproject.read_text()
    if "only_mutate" in spec:
        listed = "".join(f'    "{path}",\n' for path in spec["only_mutate"])
        text = re.sub(r"only_mutate = \[\n(?:    .*\n)*?\]", f"only_mutate = [\n{listed}]", text, count=1)
    if "tests" in spec:
        listed = ", ".join(f'"{path}"' for path in spec["tests"])
        text = re.sub(
            r"pytest_add_cli_args_test_selection = \[.*?\]",
            f"pytest_add_cli_args_test_selection = [{listed}]",
            text,
            count=1,
        )
    if "ignore" in spec:
        extra = "".join(f', "--ignore={path}"' for path in spec["ignore"])
        text = re.sub(r"(pytest_add_cli_args = \[.*?)\]", lambda m: m.group(1) + extra + "]", text, count=1)
    if spec.get("markers") == "":
        text = text.replace('"-m", "not slow", ', "", 1)
    if "timeout_constant" in spec:
        text = re.sub(
            r"timeout_constant = .*", f"timeout_constant = {spec['timeout_constant']}", text, count=1
        )
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


def mutmut(work: Path, *args: str) -> str:
    return subprocess.run(
        [str(BIN / "mutmut"), *args], cwd=work, capture_output=True, text=True, check=False
    ).stdout


def statuses(listing: str) -> dict[str, str]:
    """`mutmut results --all true` as {mutant: status}."""
    out = {}
    for line in listing.splitlines():
        name, sep, status = line.strip().partition(": ")
        if sep and "__mutmut_" in name:
            out[name] = status.strip()
    return out


def run(name: str, jobs: int) -> Path:
    spec = SETS[name]
    work = worktree(name)
    configure(work / "pyproject.toml", spec)
    subprocess.run([str(BIN / "mutmut"), "run", "--max-children", str(jobs)], cwd=work, check=False)
    results = statuses(mutmut(work, "results", "--all", "true"))
    report_from = work
    if "recheck" in spec:
        again = sorted(m for m, status in results.items() if status in ("survived", "timeout"))
        if again:
            full = worktree(f"{name}-full")
            configure(full / "pyproject.toml", {"only_mutate": spec["only_mutate"], **spec["recheck"]})
            subprocess.run(
                [str(BIN / "mutmut"), "run", "--max-children", str(jobs), *again], cwd=full, check=False
            )
            rechecked = statuses(mutmut(full, "results", "--all", "true"))
            results.update({m: rechecked.get(m, results[m]) for m in again})
            report_from = full  # `mutmut show` of a survivor works in either worktree
    out = ROOT / f"mutants-{name}.txt"
    out.write_text("".join(f"    {m}: {status}\n" for m, status in sorted(results.items())))
    subprocess.run(
        [sys.executable, "-m", "infra.mutation_report", str(out), "--cwd", str(report_from)],
        cwd=ROOT,
        check=False,
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

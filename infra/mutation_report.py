"""Summarise a `mutmut results --all true` listing: mutants killed and surviving
per module, the score, and each survivor's one-line change (from `mutmut show`).

    .venv/bin/python -m infra.mutation_report mutants-core.txt [--cwd WORKTREE]

`make mutate` runs it; tests/MUTATION.md keeps the recorded score and says why
each survivor is equivalent (or which test now kills it).
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

LINE = re.compile(r"^\s*(?P<name>\S+?)__mutmut_\d+: (?P<status>.+)$")
# A timeout is not counted as a kill: mutmut's CPU limit leaves out fixture
# set-up, so a surviving mutant that runs every test can hit it (tests/MUTATION.md).
KILLED = {"killed"}
NOT_RUN = {"not checked", "skipped"}


def module_of(name: str) -> str:
    """face_recognition_service.matching.x_rank -> matching; classes: xǁClassǁmethod."""
    dotted = name.split(".x", 1)[0] if ".x" in name else name.rsplit(".", 1)[0]
    return dotted.removeprefix("face_recognition_service.")


def change(mutant: str, cwd: str | None = None) -> str:
    shown = subprocess.run(
        [str(Path(sys.executable).parent / "mutmut"), "show", mutant],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
    ).stdout
    lines = [ln[1:].strip() for ln in shown.splitlines() if ln[:1] in "+-" and ln[:3] not in ("---", "+++")]
    return " => ".join(lines)[:200]


def main(path: str, cwd: str | None = None) -> int:
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    survivors: list[str] = []
    for line in Path(path).read_text().splitlines():
        match = LINE.match(line)
        if not match:
            continue
        full = line.strip().split(":", 1)[0]
        status = match["status"].strip()
        counts[module_of(match["name"])][status] += 1
        if status in ("survived", "timeout"):
            survivors.append(full)
    killed = sum(c[s] for c in counts.values() for s in KILLED)
    judged = sum(n for c in counts.values() for s, n in c.items() if s not in NOT_RUN)
    print("| module | mutants run | killed | survived | timed out | not run yet | score |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for module, c in sorted(counts.items()):
        run = sum(n for s, n in c.items() if s not in NOT_RUN)
        dead = sum(c[s] for s in KILLED)
        waiting = sum(c[s] for s in NOT_RUN)
        print(
            f"| {module} | {run} | {dead} | {c['survived']} | {c['timeout']} | {waiting} | {dead / max(run, 1):.1%} |"
        )
    timeouts = sum(c["timeout"] for c in counts.values())
    waiting = sum(c[s] for c in counts.values() for s in NOT_RUN)
    print(
        f"| **all** | {judged} | {killed} | {sum(c['survived'] for c in counts.values())} | {timeouts} | {waiting} | "
        f"**{killed / max(judged, 1):.1%}** |"
    )
    print()
    for mutant in survivors:
        print(f"- `{mutant.removeprefix('face_recognition_service.')}`: {change(mutant, cwd)}")
    return 0


if __name__ == "__main__":
    args = sys.argv[1:]
    where = args[args.index("--cwd") + 1] if "--cwd" in args else None  # the worktree mutmut ran in
    sys.exit(main(args[0], where))

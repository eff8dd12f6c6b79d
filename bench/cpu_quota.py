"""Embeds under a CPU quota, as a Lambda function or a container gets one: a
2,048 MB function has about 1.16 vCPUs of time (1,769 MB a vCPU) while it
shows two. Each case runs in its own process inside a cgroup with that quota
(cgroup v1 ``cpu`` or v2; needs root), over the labelled single-face photos,
with a pause between embeds as between requests: 10 ms (a busy function, its
requests back to back) and 300 ms (sparse requests: the quota refills between
them):

* ``default``: ORT_THREADS=0, the service's choice (``available_cpus``);
* ``two`` and ``one``: ORT_THREADS=2 and 1.

    sudo .venv/bin/python -m bench.cpu_quota [--quota 1.16 --quota 1.5 ...]

Writes bench/results/cpu_quota.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from .common import DEFAULT_PHOTOS, ROOT, load_photos

RESULTS = ROOT / "bench" / "results" / "cpu_quota.json"
CASES = {"default": 0, "two": 2, "one": 1}
PERIOD_US = 100_000
GAPS = (0.01, 0.3)


def child(threads: int, model_dir: Path, gap: float, rounds: int = 2) -> dict[str, Any]:
    from face_recognition_service.config import Settings, available_cpus
    from face_recognition_service.engine import load_model
    from face_recognition_service.faces import EmbedOptions, find_faces

    photos = load_photos(DEFAULT_PHOTOS)
    settings = Settings(_env_file=None, model_dir=model_dir, model_name="buffalo_sc", ort_threads=threads)  # type: ignore[call-arg]
    engine = load_model(settings.engine).require()
    for photo in photos:
        find_faces(photo.data, engine, settings.images, EmbedOptions())
    times = []
    for _ in range(rounds):
        for photo in photos:
            started = time.perf_counter()
            find_faces(photo.data, engine, settings.images, EmbedOptions())
            times.append((time.perf_counter() - started) * 1000)
            time.sleep(gap)
    return {
        "ort_threads": settings.threads,
        "available_cpus": available_cpus(),
        "median_ms": round(float(np.median(times)), 2),
        "p95_ms": round(float(np.percentile(times, 95)), 2),
    }


def cgroup(name: str, quota: float) -> Path:
    """A cgroup with ``quota`` CPUs; its ``cgroup.procs`` file."""
    v2 = Path("/sys/fs/cgroup/cgroup.controllers")
    if v2.exists():
        group = Path("/sys/fs/cgroup") / name
        group.mkdir(exist_ok=True)
        (group / "cpu.max").write_text(f"{int(quota * PERIOD_US)} {PERIOD_US}")
    else:
        group = Path("/sys/fs/cgroup/cpu") / name
        group.mkdir(exist_ok=True)
        (group / "cpu.cfs_period_us").write_text(str(PERIOD_US))
        (group / "cpu.cfs_quota_us").write_text(str(int(quota * PERIOD_US)))
    return group / "cgroup.procs"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quota", type=float, action="append")
    parser.add_argument("--child", type=int)
    parser.add_argument("--model-dir", type=Path)
    parser.add_argument("--gap", type=float, default=0.01)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child, args.model_dir, args.gap)))
        return
    from face_recognition_service.provision import provision

    out: dict[str, Any] = {
        "command": ".venv/bin/python -m bench.cpu_quota",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    name = f"face-bench-{os.getpid()}"
    with tempfile.TemporaryDirectory() as tmp:
        provision("buffalo_sc", Path(tmp))
        for quota in args.quota or [1.16, 1.5, 2.0]:
            procs = cgroup(name, quota)
            row: dict[str, Any] = {}
            for gap in GAPS:
                for case, threads in CASES.items():
                    joined = (
                        f"echo $$ > {procs} && exec {sys.executable} -m bench.cpu_quota "
                        f"--child {threads} --model-dir {tmp} --gap {gap}"
                    )
                    done = subprocess.run(
                        ["sh", "-c", joined], cwd=ROOT, capture_output=True, text=True, check=False
                    )
                    if done.returncode != 0:
                        raise SystemExit(done.stderr[-2000:])
                    row[f"{case}_gap_{gap:g}s"] = json.loads(done.stdout.strip().splitlines()[-1])
            out[f"{quota:g}_cpus"] = row
            print(json.dumps({f"{quota:g}_cpus": row}), flush=True)
        procs.parent.rmdir()  # its processes have exited
    RESULTS.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()

"""Start-up: fixed malloc thresholds, so that a request's buffers are reused
by the next request instead of being returned to the kernel and faulted in again."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from .dry_build import ROOT
from .test_large_photos import big_jpeg


def faults_per_request(model_dir: Path, image: Path, **env: str) -> tuple[bool, float]:
    child = subprocess.run(
        [sys.executable, "-m", "tests.malloc_child", str(image)],
        cwd=ROOT,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")},
            "MODEL_DIR": str(model_dir),
            "MODEL_NAME": "buffalo_sc",
            "MAX_IMAGE_SIZE": str(40 * 1024 * 1024),
            "LOG_LEVEL": "warning",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert child.returncode == 0, child.stderr[-2000:]
    out = json.loads(child.stdout.strip().splitlines()[-1])
    return out["tuned"], statistics.median(out["faults"])


def test_fixed_malloc_thresholds_spare_each_request_its_page_faults(model_dir: Path, tmp_path: Path) -> None:
    image = tmp_path / "phone.jpg"
    image.write_bytes(big_jpeg("obama_1.jpg", 12))
    tuned, tuned_faults = faults_per_request(model_dir, image)
    # An operator's own malloc settings are left alone (here glibc's default
    # arena count, which leaves its adaptive thresholds in place).
    adaptive, adaptive_faults = faults_per_request(
        model_dir, image, MALLOC_ARENA_MAX=str(8 * (os.cpu_count() or 1))
    )
    assert tuned and not adaptive
    # Measured here: 0-6 faults per 12 MP request with fixed thresholds, ~3,200
    # (12.5 MB taken from the kernel again, every request) with glibc's adaptive ones.
    assert tuned_faults * 20 < adaptive_faults, (tuned_faults, adaptive_faults)

"""A child process for the in-place rewrite test (tests/contract/test_reliability_iv.py):
a service answering /identify over HTTP (TestClient) while its gallery file is
rewritten where it lies, the ways a caller may do it. A SIGBUS would end this
process, not the test session; the report is the last line of output.

    python -m tests.support.rewrite_child FOLDER KIND PROBE_FILE

FOLDER holds KIND-a.frg and KIND-b.frg (the same people, rows in opposite orders).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from face_recognition_service.api import create_app
from face_recognition_service.config import Settings
from face_recognition_service.engine import ModelState


def rewrite_keeping_times(path: Path, data: bytes) -> None:
    """Write ``data`` over the file's bytes (same inode), then put back its
    modification time: only its ctime says that it changed."""
    before = path.stat()
    with path.open("r+b") as out:
        out.write(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def main(folder: Path, kind: str, probe: str) -> dict[str, Any]:
    first, second = (folder / f"{kind}-a.frg").read_bytes(), (folder / f"{kind}-b.frg").read_bytes()
    live_dir = Path(tempfile.mkdtemp(prefix="live-"))
    live = live_dir / "live.frg"
    live.write_bytes(first)
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        gallery_dir=live_dir,
        gallery_refresh_seconds=0,
        gallery_cache_dir=live_dir / "cache",
    )
    answers: list[dict[str, Any]] = []
    marks: dict[str, int] = {}
    stop = threading.Event()
    with TestClient(
        create_app(settings, ModelState(None, "not needed")), raise_server_exceptions=False
    ) as client:

        def ask() -> None:
            while not stop.is_set():
                response = client.post("/api/v1/identify", json={"gallery": "live.frg", "embedding": probe})
                body = response.json()
                gallery = body.get("gallery", {})
                answers.append(
                    {
                        "status": response.status_code,
                        "identity": body.get("identity"),
                        "hash": gallery.get("hash"),
                        "stale": gallery.get("stale"),
                        "error_code": body.get("error_code"),
                    }
                )

        asker = threading.Thread(target=ask)
        asker.start()
        time.sleep(0.5)
        marks["same_size_rewrite"] = len(answers)
        rewrite_keeping_times(live, second)  # inode, size and mtime kept
        time.sleep(1.5)
        marks["cp"] = len(answers)
        with live.open("wb") as out:  # what cp does: truncate, then write
            out.write(first[: len(first) // 3])
            time.sleep(0.3)
            out.write(first[len(first) // 3 :])
        time.sleep(1.5)
        marks["truncated"] = len(answers)
        with live.open("wb"):
            pass  # left empty
        time.sleep(1.5)
        stop.set()
        asker.join(30)
    shutil.rmtree(live_dir, ignore_errors=True)
    return {"answers": answers, "marks": marks}


if __name__ == "__main__":
    report = main(Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]).read_text())
    print(json.dumps(report))

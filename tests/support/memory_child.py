"""Child process for tests/integration/server/test_memory_budget.py: load the engine, embed one image
file through the service's path (find_faces), print the process's peak RSS in MiB as JSON. A process of its own, so the
peak is this request's and nothing else's.

    python -m tests.support.memory_child MODEL_DIR IMAGE [DECODE_BUDGET_MB]
"""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path

from face_recognition_service.config import Settings
from face_recognition_service.engine import load_model
from face_recognition_service.errors import ServiceError
from face_recognition_service.faces import EmbedOptions, find_faces
from face_recognition_service.startup import tune_malloc


def peak_mb() -> float:
    # VmHWM, not ru_maxrss: ru_maxrss survives execve, so a child of a large
    # parent (pytest with models loaded) would report the parent's size.
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def main(argv: list[str]) -> int:
    tune_malloc()  # as the server and the Lambda function start
    values: dict[str, object] = {"model_dir": Path(argv[0]), "model_name": "buffalo_sc", "ort_threads": 2}
    if len(argv) > 2:
        values["decode_budget_mb"] = int(argv[2])
    settings = Settings(_env_file=None, **values)  # type: ignore[arg-type,call-arg]
    state = load_model(settings.engine)
    assert state.engine is not None, state.error
    loaded = peak_mb()
    data = Path(argv[1]).read_bytes()
    outcome = "embedded"
    try:
        # The request's own path: decode (reduced where it can be), detect, embed.
        find_faces(data, state.engine, settings.images, EmbedOptions())
    except ServiceError as exc:
        outcome = exc.code.value
    print(json.dumps({"loaded_mb": loaded, "peak_mb": peak_mb(), "outcome": outcome}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Child process for tests/test_startup.py: the server's app (built as
``python -m face_recognition_service.server`` builds it), a few /embed requests
of one large photo, and the page faults each request cost, as JSON.

    python -m tests.malloc_child IMAGE
"""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path

from fastapi.testclient import TestClient

from face_recognition_service.server.main import get_app
from face_recognition_service.startup import tune_malloc
from face_recognition_service.testing import embed_body


def main(argv: list[str]) -> int:
    body = embed_body(Path(argv[0]).read_bytes())
    faults = []
    # One event loop thread for all requests, as in a server (a TestClient
    # outside `with` starts a thread per request).
    with TestClient(get_app()) as client:
        for _ in range(12):
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            response = client.post(
                "/api/v1/embed", content=body, headers={"content-type": "application/json"}
            )
            faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
            assert response.status_code == 200, response.text
    # tune_malloc answers the same again: whether this process's thresholds are fixed.
    print(json.dumps({"tuned": tune_malloc(), "faults": faults[3:]}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

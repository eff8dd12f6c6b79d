"""Child process for tests/integration/server/test_startup.py: the server's app, built as
``python -m face_recognition_service.server`` builds it, then what the tests
check about that start-up: whether FastAPI's own models and ours were left
unbuilt (ours are built by the first request that needs them), the page faults each /embed of one large photo costs, and the
OpenAPI document (which builds FastAPI's models on first use), as JSON.

    python -m tests.support.startup_child IMAGE
"""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path

from face_recognition_service.server.main import get_app
from face_recognition_service.startup import tune_malloc
from face_recognition_service.testing import embed_body


def main(argv: list[str]) -> int:
    app = get_app()  # first: nothing before it may import FastAPI
    from fastapi.openapi.models import OpenAPI
    from fastapi.testclient import TestClient

    from face_recognition_service.api.schemas import EmbedRequest

    out: dict[str, object] = {
        "fastapi_models_deferred": not OpenAPI.__pydantic_complete__,
        "our_models_deferred": not EmbedRequest.__pydantic_complete__,
    }
    body = embed_body(Path(argv[0]).read_bytes())
    faults = []
    # One event loop thread for all requests, as in a server (a TestClient
    # outside `with` starts a thread per request).
    with TestClient(app) as client:
        for _ in range(12):
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            response = client.post(
                "/api/v1/embed", content=body, headers={"content-type": "application/json"}
            )
            faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
            assert response.status_code == 200, response.text
        out["our_model_built_by_its_request"] = EmbedRequest.__pydantic_complete__
        document = client.get("/openapi.json")
        assert document.status_code == 200, document.text
    # tune_malloc answers the same again: whether this process's thresholds are fixed.
    out.update(tuned=tune_malloc(), faults=faults[3:], openapi=document.json())
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""The images, checked without a Docker engine (none here, none in CI): each
Dockerfile replayed in a temporary root with Python 3.12 (tests/support/dry_build.py),
then the image's CMD started from that root. For Dockerfile.lambda: the handler
under awslambdaric against a local Runtime API, a real photo embedded, nothing
written outside the replay root and /tmp. For Dockerfile: uvicorn from the
replayed /app, and its HEALTHCHECK command answering."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from face_recognition_service.testing import free_port
from tests.support.dry_build import ROOT, Replay, python312
from tests.support.lambda_support import check_response, load_event
from tests.support.runtime_api_support import RuntimeApi

PYTHON312 = python312()
pytestmark = pytest.mark.skipif(
    PYTHON312 is None,
    reason="needs a Python 3.12 with pip (the images' Python); test_container_images checks the Dockerfiles' "
    "shape and hadolint lints them",
)


@pytest.fixture(scope="module")
def lambda_image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replay]:
    assert PYTHON312 is not None
    root = tmp_path_factory.mktemp("lambda-image")
    replay = Replay(root, PYTHON312, build_args={"MODEL_NAME": "buffalo_sc"})
    replay.run(ROOT / "Dockerfile.lambda")
    yield replay


def test_lambda_dockerfile_replays(lambda_image: Replay) -> None:
    task = Path(lambda_image.env["LAMBDA_TASK_ROOT"])
    assert (task / "face_recognition_service" / "aws_lambda" / "handler.py").is_file()
    # The task root is read-only in Lambda: the package ships compiled.
    compiled = {
        p.name.split(".")[0]
        for p in (task / "face_recognition_service" / "api" / "__pycache__").glob("*.pyc")
    }
    assert {"routes", "schemas", "docs"} <= compiled
    pack = lambda_image.root / "opt/models/buffalo_sc"
    assert sorted(p.name for p in pack.glob("[!.]*.onnx")) == ["det_500m.onnx", "w600k_mbf.onnx"]
    # Both networks' rewritten graphs (engine/graph.py) are baked beside them by
    # the image's check, so a read-only task never rebuilds them at start.
    assert len(list(pack.glob(".w600k_mbf.onnx.*.cpu3.onnx"))) == 1
    assert len(list(pack.glob(".det_500m.onnx.*.cpu3.onnx"))) == 1
    assert not (lambda_image.root / "tmp/build").exists(), "the build folder is removed"
    assert lambda_image.cmd == ["face_recognition_service.aws_lambda.handler.handler"]


def test_lambda_image_serves_through_awslambdaric(
    lambda_image: Replay,
    runtime_api: tuple[RuntimeApi, str],
    tmp_path: Path,
) -> None:
    assert PYTHON312 is not None
    api, address = runtime_api
    ric = tmp_path / "ric"  # the base image ships the runtime interface client; the replay brings it
    subprocess.run(
        [PYTHON312, "-m", "pip", "install", "-q", "--target", str(ric), "awslambdaric"],
        check=True,
        capture_output=True,
        timeout=300,
    )
    home = tmp_path / "home"
    home.mkdir()
    task = Path(lambda_image.env["LAMBDA_TASK_ROOT"])
    before = sorted(str(p) for p in lambda_image.root.rglob("*"))
    env = {
        **lambda_image.env,
        "PYTHONPATH": f"{task}:{ric}",
        "HOME": str(home),
        "AWS_LAMBDA_RUNTIME_API": address,
        "AWS_LAMBDA_FUNCTION_NAME": "face-recognition",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "2048",
        "AWS_REGION": "us-east-1",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    log = tmp_path / "runtime.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [PYTHON312, "-m", "awslambdaric", *lambda_image.cmd],
            env=env,
            cwd=task,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        kind, result = api.invoke(load_event("embed-face.json"), timeout=120)
        assert kind == "response", (result, log.read_text()[-2000:])
        body = check_response("embed-face.json", result)
        assert len(body["embedding"]) == 512
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert list(home.rglob("*")) == []
    assert sorted(str(p) for p in lambda_image.root.rglob("*")) == before, (
        "the image's filesystem was written to"
    )


def test_server_dockerfile_replays_and_its_healthcheck_answers(tmp_path: Path) -> None:
    assert PYTHON312 is not None
    root = tmp_path / "image"
    root.mkdir()
    site = root / "site"  # the replay's stand-in for the base image's site-packages
    replay = Replay(root, PYTHON312, build_args={"MODEL_NAME": "buffalo_sc"})
    replay.env["PYTHONPATH"] = f"{site}:{root}/app"
    replay.run(ROOT / "Dockerfile", plain_pip_target=site)
    assert replay.cmd == ["python", "-m", "face_recognition_service.server"] and replay.healthcheck
    compiled = (root / "app" / "face_recognition_service" / "server" / "__pycache__").glob("main.*.pyc")
    assert list(compiled), "the package is compiled at build time (the app user cannot write /app)"
    port = free_port()
    env = {**replay.env, "PORT": str(port), "HOME": str(tmp_path / "home")}
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [PYTHON312, *replay.cmd[1:]],
            env=env,
            cwd=replay.cwd or root / "app",
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    check = [PYTHON312 if a == "python" else a for a in replay.healthcheck]
    check = [a.replace("localhost:8000", f"localhost:{port}") for a in check]
    try:
        deadline = time.monotonic() + 90
        while True:
            result = subprocess.run(check, env=env, capture_output=True, timeout=30)
            if result.returncode == 0:
                break
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the HEALTHCHECK never passed"
            time.sleep(0.5)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert os.path.exists(root / "opt/models/buffalo_sc/w600k_mbf.onnx")

"""What goes into the container images: the model-baking script (run here) and,
where a Docker engine exists, a real build of Dockerfile.lambda invoked through
the base image's runtime interface emulator."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from face_recognition_service.provision import verify
from tests.support.lambda_support import check_response, load_event

ROOT = Path(__file__).resolve().parents[3]
BAKE = ROOT / "infra" / "bake_models.py"


def bake(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(BAKE), *args], capture_output=True, text=True, timeout=120)


def test_bake_buffalo_sc_from_the_installed_wheel(tmp_path: Path) -> None:
    result = bake("buffalo_sc", str(tmp_path))
    assert result.returncode == 0, result.stderr
    verify(tmp_path / "buffalo_sc")


def test_bake_from_a_provisioned_folder_skips_extra_models(tmp_path: Path, model_dir: Path) -> None:
    local = tmp_path / "local" / "buffalo_sc"
    shutil.copytree(model_dir / "buffalo_sc", local)
    (local / "genderage.onnx").write_bytes(b"attribute model we never load")
    result = bake("buffalo_sc", str(tmp_path / "out"), str(tmp_path / "local"))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "out" / "buffalo_sc").iterdir()) == [
        "det_500m.onnx",
        "w600k_mbf.onnx",
    ]


def test_requirements_for_images_have_no_gui_opencv() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "infra" / "requirements.py"), str(ROOT / "pyproject.toml")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert any(r.startswith("opencv-python-headless") for r in out)
    assert not any(r.startswith("opencv-python>") or r == "opencv-python" for r in out)
    assert any(r.startswith("mangum") for r in out) and not any(r.startswith("insightface>") for r in out)


def test_model_folder_for_docker_builds_is_in_the_repo() -> None:
    # Both Dockerfiles COPY infra/models/; a clone must have the folder even when empty.
    tracked = subprocess.run(["git", "ls-files", "infra/models"], cwd=ROOT, capture_output=True, text=True)
    if tracked.returncode != 0:
        pytest.skip("not a git checkout")
    assert "infra/models/.gitkeep" in tracked.stdout.split()


def test_lambda_dockerfile_shape() -> None:
    text = (ROOT / "Dockerfile.lambda").read_text()
    assert "public.ecr.aws/lambda/python:3.12" in text
    order = [text.index(marker) for marker in ("pip install", "bake_models.py", "COPY function/", "CMD [")]
    assert order == sorted(order), "layers must go dependencies -> models -> code"
    assert 'CMD ["face_recognition_service.aws_lambda.handler.handler"]' in text
    server = (ROOT / "Dockerfile").read_text()
    assert "USER 10001" in server and "HEALTHCHECK" in server and "/api/v1/health" in server


def docker_available() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0


@pytest.mark.docker
@pytest.mark.skipif(not docker_available(), reason="no Docker engine on this machine (docker info fails)")
def test_lambda_image_builds_and_serves(tmp_path: Path) -> None:
    tag = f"face-recognition-test:{uuid.uuid4().hex[:8]}"
    subprocess.run(
        [
            "docker",
            "build",
            "-f",
            "Dockerfile.lambda",
            "--build-arg",
            "MODEL_NAME=buffalo_sc",
            "-t",
            tag,
            ".",
        ],
        cwd=ROOT,
        check=True,
        timeout=1800,
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    container = subprocess.run(
        ["docker", "run", "-d", "--rm", "-p", f"127.0.0.1:{port}:8080", tag],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    try:
        url = f"http://127.0.0.1:{port}/2015-03-31/functions/function/invocations"
        deadline = time.monotonic() + 120
        while True:
            try:
                data = json.dumps(load_event("embed-face.json")).encode()
                with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=60) as resp:
                    result = json.loads(resp.read())
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(1)
        check_response("embed-face.json", result)
    finally:
        subprocess.run(["docker", "rm", "-f", container], capture_output=True)
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)


def test_bake_in_the_image_layout_uses_the_models_package_beside_it(tmp_path: Path) -> None:
    """In the image's model layer only bake_models.py and the models package
    exist (the Dockerfiles copy both): the script must find the package beside
    itself, and run without the rest of the service."""
    build = tmp_path / "build"
    build.mkdir()
    shutil.copy(BAKE, build / "bake_models.py")
    shutil.copytree(ROOT / "function" / "face_recognition_service" / "models", build / "model_packs")
    result = subprocess.run(
        [sys.executable, "-I", str(build / "bake_models.py"), "buffalo_sc", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    verify(tmp_path / "out" / "buffalo_sc")


def test_dockerfiles_copy_the_pack_catalogue_with_the_bake_script() -> None:
    for name in ("Dockerfile", "Dockerfile.lambda"):
        text = (ROOT / name).read_text()
        assert "COPY infra/bake_models.py /tmp/build/" in text, name
        assert "COPY function/face_recognition_service/models/ /tmp/build/model_packs/" in text, name


def test_template_command_matches_the_lambda_dockerfile() -> None:
    cmd = (ROOT / "Dockerfile.lambda").read_text().rsplit("CMD", 1)[1].strip()
    assert cmd == '["face_recognition_service.aws_lambda.handler.handler"]'
    assert (
        'Command: ["face_recognition_service.aws_lambda.handler.handler"]'
        in (ROOT / "template.yaml").read_text()
    )


def test_dockerfiles_pass_hadolint() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run(
        [str(hadolint), "Dockerfile", "Dockerfile.lambda"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_file_shape() -> None:
    import yaml

    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    service = compose["services"]["face-recognition"]
    assert service["build"]["dockerfile"] == "Dockerfile"
    assert "api/v1/health" in " ".join(service["healthcheck"]["test"])
    assert service["deploy"]["resources"]["limits"]["memory"]
    assert service["env_file"][0] == {"path": ".env", "required": False}
    assert "models:/opt/models" in service["volumes"] and "models" in compose["volumes"]
    assert service["read_only"] is True and "/tmp" in service["tmpfs"]


def compose_plugin() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30).returncode == 0


@pytest.mark.skipif(
    not compose_plugin(), reason="no docker compose plugin here; test_compose_file_shape checks the file"
)
def test_docker_compose_config_validates() -> None:
    result = subprocess.run(
        ["docker", "compose", "config", "--quiet"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr

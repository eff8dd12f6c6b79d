"""Every seed setting is read from the environment and from .env."""

from __future__ import annotations

from pathlib import Path

import pytest

from face_recognition_service.config import Device, Settings

SEED_ENV = {
    "APP_NAME": "Faces",
    "DEBUG": "true",
    "LOG_LEVEL": "warning",
    "HOST": "127.0.0.1",
    "PORT": "9000",
    "WORKERS": "2",
    "MODEL_NAME": "buffalo_l",
    "DETECTION_THRESHOLD": "0.6",
    "DEVICE": "CUDA",
    "MAX_IMAGE_SIZE": "5242880",
    "CORS_ENABLED": "false",
    "CORS_ORIGINS": '["https://a.example"]',
    "MODEL_DIR": "/opt/models",
}


def test_seed_variables_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in SEED_ENV.items():
        monkeypatch.setenv(key, value)
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert (s.app_name, s.debug, s.log_level, s.host, s.port, s.workers) == (
        "Faces",
        True,
        "WARNING",
        "127.0.0.1",
        9000,
        2,
    )
    assert (s.model_name, s.detection_threshold, s.device, s.max_image_size) == (
        "buffalo_l",
        0.6,
        Device.CUDA,
        5242880,
    )
    assert (s.cors_enabled, s.cors_origins) == (False, ["https://a.example"])
    assert s.model_path == Path("/opt/models/buffalo_l")


def test_dotenv_file(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("MODEL_NAME=buffalo_l\nCORS_ORIGINS=https://a.example, https://b.example\nPORT=8123\n")
    s = Settings(_env_file=env)  # type: ignore[call-arg]
    assert s.model_name == "buffalo_l" and s.port == 8123
    assert s.cors_origins == ["https://a.example", "https://b.example"]


def test_defaults_are_the_embedded_model_on_cpu() -> None:
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert s.model_name == "buffalo_sc" and s.device is Device.CPU and s.max_image_size == 10 * 1024 * 1024
    assert s.threads >= 1


@pytest.mark.parametrize(
    "key,value",
    [
        ("LOG_LEVEL", "loud"),
        ("DEVICE", "tpu"),
        ("DETECTION_THRESHOLD", "1.5"),
        ("MODEL_S3_URI", "/models/buffalo_l.zip"),
        ("MODEL_S3_URI", "s3://"),
    ],
)
def test_bad_values_are_refused(monkeypatch: pytest.MonkeyPatch, key: str, value: str) -> None:
    monkeypatch.setenv(key, value)
    with pytest.raises(ValueError):
        Settings(_env_file=None)  # type: ignore[call-arg]


def test_an_s3_model_uri_is_kept_and_empty_is_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_S3_URI", "s3://face-models/packs")
    assert Settings(_env_file=None).model_s3_uri == "s3://face-models/packs"  # type: ignore[call-arg]
    monkeypatch.setenv("MODEL_S3_URI", "")
    assert Settings(_env_file=None).model_s3_uri is None  # type: ignore[call-arg]


@pytest.mark.parametrize(
    "command",
    [
        ["-m", "face_recognition_service.server"],
        ["-m", "uvicorn", "face_recognition_service.server.main:app"],
        ["-m", "face_recognition_service.provision"],
    ],
    ids=["server", "uvicorn", "provision"],
)
@pytest.mark.slow
def test_a_bad_setting_is_one_line_and_a_non_zero_exit(command: list[str], tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "LOG_LEVEL": "verbose", "DETECTION_THRESHOLD": "abc", "API_KEY": "s3cret-value"}
    result = subprocess.run(
        [sys.executable, *command], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    text = result.stdout + result.stderr
    assert "Traceback" not in text and "s3cret-value" not in text
    lines = [line for line in text.splitlines() if line.startswith("configuration error:")]
    assert any("LOG_LEVEL=verbose" in line and "debug, info" in line for line in lines), text
    assert any("DETECTION_THRESHOLD=abc" in line for line in lines), text
    assert len(text.strip().splitlines()) <= 4, text  # no wall of validation output

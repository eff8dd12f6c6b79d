"""What the function reads from AWS (aws_lambda/sources.py), against moto: the API
key from SSM Parameter Store or Secrets Manager, and a model pack from S3."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest

from face_recognition_service.aws_lambda.observability import span
from face_recognition_service.aws_lambda.sources import load_function_model
from face_recognition_service.engine import ModelState
from tests.support.helpers import make_settings
from tests.support.lambda_support import FakeLambdaContext, check_response, load_event


def _with_key(event: dict[str, Any], key: str | None) -> dict[str, Any]:
    event = json.loads(json.dumps(event))
    if key is not None:
        event["headers"]["x-api-key"] = key
    return event


def test_api_key_from_parameter_store(
    aws_mock: None, lambda_module: ModuleType, model_dir: Path, model: ModelState
) -> None:
    ssm = boto3.client("ssm")
    ssm.put_parameter(Name="/face/api-key", Value="k-123", Type="SecureString")
    handler = lambda_module.build_handler(make_settings(model_dir, api_key_parameter="/face/api-key"), model)
    event = load_event("compare-cosine.json")
    denied = handler(_with_key(event, None), FakeLambdaContext())
    assert denied["statusCode"] == 401 and json.loads(denied["body"])["error_code"] == "UNAUTHORIZED"
    assert handler(_with_key(event, "wrong"), FakeLambdaContext())["statusCode"] == 401
    assert handler(_with_key(event, "k-123"), FakeLambdaContext())["statusCode"] == 200
    # Health stays open for load balancers and probes.
    assert handler(load_event("health.json"), FakeLambdaContext())["statusCode"] == 200
    # Rotation: the cached key serves until max_age runs out.
    ssm.put_parameter(Name="/face/api-key", Value="k-456", Type="SecureString", Overwrite=True)
    assert handler(_with_key(event, "k-123"), FakeLambdaContext())["statusCode"] == 200


def test_api_key_cache_age_is_configurable(
    aws_mock: None, lambda_module: ModuleType, model_dir: Path, model: ModelState
) -> None:
    ssm = boto3.client("ssm")
    ssm.put_parameter(Name="/face/api-key", Value="k-1", Type="SecureString")
    settings = make_settings(model_dir, api_key_parameter="/face/api-key", api_key_cache_seconds=0)
    handler = lambda_module.build_handler(settings, model)
    event = load_event("compare-cosine.json")
    assert handler(_with_key(event, "k-1"), FakeLambdaContext())["statusCode"] == 200
    ssm.put_parameter(Name="/face/api-key", Value="k-2", Type="SecureString", Overwrite=True)
    assert handler(_with_key(event, "k-1"), FakeLambdaContext())["statusCode"] == 401
    assert handler(_with_key(event, "k-2"), FakeLambdaContext())["statusCode"] == 200


def test_api_key_from_secrets_manager(
    aws_mock: None, lambda_module: ModuleType, model_dir: Path, model: ModelState
) -> None:
    boto3.client("secretsmanager").create_secret(Name="face-api-key", SecretString="s-789")
    handler = lambda_module.build_handler(make_settings(model_dir, api_key_secret="face-api-key"), model)
    event = load_event("embed-face.json")
    assert handler(_with_key(event, None), FakeLambdaContext())["statusCode"] == 401
    assert handler(_with_key(event, "s-789"), FakeLambdaContext())["statusCode"] == 200


def _bucket_with(files: dict[str, bytes]) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="face-models")
    for key, data in files.items():
        s3.put_object(Bucket="face-models", Key=key, Body=data)


def _pack(model_dir: Path) -> dict[str, bytes]:
    return {
        name: (model_dir / "buffalo_sc" / name).read_bytes() for name in ("det_500m.onnx", "w600k_mbf.onnx")
    }


def test_model_from_s3_files(
    aws_mock: None,
    lambda_module: ModuleType,
    model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    from face_recognition_service.models.install import install

    _bucket_with({f"packs/buffalo_sc/{k}": v for k, v in _pack(model_dir).items()})
    target, installed = install("buffalo_sc", tmp_path, source="s3://face-models/packs")
    assert installed and target == tmp_path / "buffalo_sc"
    assert sorted(p.name for p in target.iterdir() if not p.name.startswith(".")) == [
        "det_500m.onnx",
        "w600k_mbf.onnx",
    ]


def test_model_from_s3_zip_serves_embeddings(
    aws_mock: None,
    lambda_module: ModuleType,
    model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in _pack(model_dir).items():
            zf.writestr(f"buffalo_sc/{name}", data)
    _bucket_with({"packs/buffalo_sc.zip": buf.getvalue()})
    monkeypatch.setattr(Path, "home", lambda: tmp_path)  # not the baked folder
    settings = make_settings(tmp_path / "empty", model_s3_uri="s3://face-models/packs")
    loaded = load_function_model(settings, span)
    assert loaded.engine is not None, loaded.error
    handler = lambda_module.build_handler(settings, loaded)
    check_response("embed-face.json", handler(load_event("embed-face.json"), FakeLambdaContext()))


def test_model_from_s3_missing_is_model_not_loaded(
    aws_mock: None, lambda_module: ModuleType, tmp_path: Path
) -> None:
    _bucket_with({"other/readme.txt": b"nothing here"})
    settings = make_settings(tmp_path, model_s3_uri="s3://face-models/packs")
    state = load_function_model(settings, span)
    assert state.engine is None and "s3://face-models/packs" in (state.error or "")
    handler = lambda_module.build_handler(settings, state)
    result = handler(load_event("embed-face.json"), FakeLambdaContext())
    assert result["statusCode"] == 503 and json.loads(result["body"])["error_code"] == "MODEL_NOT_LOADED"

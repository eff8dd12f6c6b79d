"""Every sample event in events/ through the real handler (Mangum + Powertools)
on the real model, plus what the function reads from AWS, against moto."""

from __future__ import annotations

import io
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from face_recognition_service.config import Settings
from face_recognition_service.engine import ModelState
from face_recognition_service.gallery.format import write_snapshot
from tests.support.helpers import make_settings
from tests.support.lambda_support import MANIFEST, FakeLambdaContext, check_response, event_env, load_event


def handler_for(module: ModuleType, env: dict[str, str], model_dir: Path, model: ModelState) -> Any:
    if not env:
        return module.handler
    overrides = {key.lower(): value for key, value in env.items()}
    return module.build_handler(make_settings(model_dir, **overrides), model)


# Events that need AWS (S3, SQS) run in their own tests against moto (tests/integration/aws_lambda/test_queue.py).
@pytest.mark.parametrize("name", sorted(n for n, e in MANIFEST.items() if not e.get("needs_aws")))
def test_every_sample_event(name: str, lambda_module: ModuleType, model_dir: Path, model: ModelState) -> None:
    handler = handler_for(lambda_module, event_env(name), model_dir, model)
    check_response(name, handler(load_event(name), FakeLambdaContext()))


def test_every_event_file_is_in_the_manifest() -> None:
    files = {p.name for p in (Path(__file__).resolve().parents[3] / "events").glob("*.json")}
    assert files - {"manifest.json"} == set(MANIFEST)


def test_model_loaded_at_import(lambda_module: ModuleType) -> None:
    result = lambda_module.handler(load_event("health.json"), FakeLambdaContext())
    assert json.loads(result["body"])["model_loaded"] is True


def test_logs_and_metrics(lambda_module: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    log_stream = io.StringIO()
    previous = lambda_module.logger.registered_handler.setStream(log_stream)
    try:
        lambda_module.handler(load_event("embed-face.json"), FakeLambdaContext())
        lambda_module.handler(load_event("embed-multiple-faces.json"), FakeLambdaContext())
    finally:
        lambda_module.logger.registered_handler.setStream(previous)
    out = log_stream.getvalue() + capsys.readouterr().out  # logs + EMF metrics (printed)
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    logs = [line for line in lines if "level" in line]
    emf = [line for line in lines if "_aws" in line]
    requests = [line for line in logs if line.get("message") == "request"]
    assert len(requests) == 2
    assert all("cold_start" in line and line["correlation_id"] == "Tq3lbgNSIAMEVJw=" for line in requests)
    names = {m["Name"] for doc in emf for m in doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert {"RequestLatency", "FacesDetected", "Errors"} <= names
    errors = [doc for doc in emf if "Errors" in doc]
    assert errors and errors[0]["error_code"] == "MULTIPLE_FACES_DETECTED"
    assert [doc["FacesDetected"] for doc in emf if "FacesDetected" in doc] == [[1.0], [2.0]]
    # Nothing from the request bodies: no base64, no embedding values.
    body = json.loads(load_event("embed-face.json")["body"])["image"]
    text = json.dumps(lines)
    assert body[100:160] not in text and "embedding" not in text


def test_settings_type_is_shared(lambda_module: ModuleType) -> None:
    assert isinstance(lambda_module._settings, Settings)


@pytest.mark.parametrize(
    ("init_type", "warmed_at_init"),
    [("on-demand", False), ("provisioned-concurrency", True), ("snap-start", True), (None, True)],
)
def test_warm_up_requests_run_where_no_caller_waits(
    init_type: str | None,
    warmed_at_init: bool,
    lambda_module: ModuleType,
    model_dir: Path,
    model: ModelState,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An on-demand init is on the first caller's path, so it skips the warm-up
    requests (they cost more than they save that caller); provisioned and
    SnapStart inits, and runs outside Lambda, warm up. A scheduled ping warms an
    environment that has not been warmed, once."""
    if init_type is None:
        monkeypatch.delenv("AWS_LAMBDA_INITIALIZATION_TYPE", raising=False)
    else:
        monkeypatch.setenv("AWS_LAMBDA_INITIALIZATION_TYPE", init_type)
    function = lambda_module.LambdaFunction(make_settings(model_dir), model)
    handler = function.handler()
    assert function.init_timings["warm_up_requests"] == (3 if warmed_at_init else 0)
    # The first caller's request is answered the same either way.
    check_response("embed-face.json", handler(load_event("embed-face.json"), FakeLambdaContext()))

    log_stream = io.StringIO()
    previous = lambda_module.logger.registered_handler.setStream(log_stream)
    try:
        for _ in range(2):
            check_response(
                "scheduled-warmup.json", handler(load_event("scheduled-warmup.json"), FakeLambdaContext())
            )
    finally:
        lambda_module.logger.registered_handler.setStream(previous)
    pings = [json.loads(line) for line in log_stream.getvalue().splitlines() if "non-HTTP event" in line]
    assert [p["warm_up_requests"] for p in pings] == ([0, 0] if warmed_at_init else [3, 0])


@pytest.mark.parametrize(
    ("init_type", "loaded_at_init"),
    [("on-demand", False), ("provisioned-concurrency", True), ("snap-start", True), (None, True)],
)
def test_gallery_uri_is_loaded_where_no_caller_waits_for_it(
    init_type: str | None,
    loaded_at_init: bool,
    lambda_module: ModuleType,
    model_dir: Path,
    model: ModelState,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An on-demand init would make every route's first caller wait for the
    gallery (and Lambda stops such an init at 10 s): there the first scheduled
    ping loads it, once; provisioned and SnapStart inits load it at init."""
    if init_type is None:
        monkeypatch.delenv("AWS_LAMBDA_INITIALIZATION_TYPE", raising=False)
    else:
        monkeypatch.setenv("AWS_LAMBDA_INITIALIZATION_TYPE", init_type)
    write_snapshot(
        tmp_path / "staff.frg",
        model="buffalo_sc/w600k_mbf@00000000",
        ids=["a", "b"],
        vectors=np.eye(2, 512, dtype=np.float32),
        built_at="t",
    )
    settings = make_settings(model_dir, gallery_dir=tmp_path, gallery_uri="staff.frg")
    function = lambda_module.LambdaFunction(settings, model)
    handler = function.handler()
    assert ("staff.frg" in function.galleries._open) is loaded_at_init
    check_response("embed-face.json", handler(load_event("embed-face.json"), FakeLambdaContext()))
    assert ("staff.frg" in function.galleries._open) is loaded_at_init  # an embed does not wait for it
    log_stream = io.StringIO()
    previous = lambda_module.logger.registered_handler.setStream(log_stream)
    try:
        for _ in range(2):
            handler(load_event("scheduled-warmup.json"), FakeLambdaContext())
    finally:
        lambda_module.logger.registered_handler.setStream(previous)
    pings = [json.loads(line) for line in log_stream.getvalue().splitlines() if "non-HTTP event" in line]
    assert [p["gallery_loaded"] for p in pings] == ([False, False] if loaded_at_init else [True, False])
    assert "staff.frg" in function.galleries._open

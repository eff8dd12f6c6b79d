"""Fixtures on the real embedded model (buffalo_sc), provisioned once per run
into a temporary folder by the same code a user runs."""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import Phase
from hypothesis import settings as hypothesis_settings

# `make mutate` (--hypothesis-profile=mutate): one failing example kills a
# mutant; shrinking it (the default) took minutes a mutant in imaging.py.
hypothesis_settings.register_profile("mutate", phases=[Phase.explicit, Phase.reuse, Phase.generate])

# Tests must not read a developer's .env or send traces anywhere.
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "FaceRecognitionTests")
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "face-recognition")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

from face_recognition_service.config import Settings  # noqa: E402
from face_recognition_service.engine import FaceEngine, ModelState, load_model  # noqa: E402
from face_recognition_service.provision import provision  # noqa: E402
from tests.support.helpers import make_settings  # noqa: E402


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    provision("buffalo_sc", root)
    return root


@pytest.fixture(scope="session")
def settings(model_dir: Path) -> Settings:
    return make_settings(model_dir)


@pytest.fixture(scope="session")
def model(settings: Settings) -> ModelState:
    state = load_model(settings.engine)
    assert state.engine is not None, state.error
    return state


@pytest.fixture(scope="session")
def engine(model: ModelState) -> FaceEngine:
    assert model.engine is not None
    return model.engine


@pytest.fixture(scope="session")
def client(settings: Settings, model: ModelState) -> Iterator[object]:
    from fastapi.testclient import TestClient

    from face_recognition_service.api import create_app

    with TestClient(create_app(settings, model), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="module")
def lambda_module(model_dir: Path) -> Iterator[ModuleType]:
    """The handler module imported the way Lambda imports it: settings from the
    environment, model loaded and warmed at import."""
    from face_recognition_service import config

    saved = dict(os.environ)
    os.environ.update({"MODEL_DIR": str(model_dir), "MODEL_NAME": "buffalo_sc", "ORT_THREADS": "2"})
    config.get_settings.cache_clear()
    try:
        import face_recognition_service.aws_lambda.handler as module

        yield importlib.reload(module)
    finally:
        os.environ.clear()
        os.environ.update(saved)
        config.get_settings.cache_clear()


# The local Lambda Runtime API (a fixture shared by the runtime-client tests).
from tests.support.runtime_api_support import runtime_api  # noqa: E402, F401


@pytest.fixture()
def aws_mock(aws_credentials: None) -> Iterator[None]:
    """moto for every AWS service, with Powertools' parameter caches (the API key
    from SSM or Secrets Manager) empty before and after."""
    from aws_lambda_powertools.utilities import parameters
    from moto import mock_aws

    parameters.clear_caches()  # type: ignore[no-untyped-call]
    with mock_aws():
        yield
    parameters.clear_caches()  # type: ignore[no-untyped-call]


@pytest.fixture()
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fake credentials for moto, and the service's cached boto3 clients dropped
    before and after, so no test reaches a real account or another test's mock."""
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    from face_recognition_service import aws_clients

    aws_clients.client.cache_clear()
    yield
    aws_clients.client.cache_clear()


# Modules whose every test starts a server, a child process, a browser or a
# linter: marked slow as a whole (single slow tests elsewhere carry the mark).
SLOW_MODULES = frozenset(
    {
        "test_container_images",
        "test_docs",
        "test_docs_site",
        "test_dry_build",
        "test_memory_budget",
        "test_pgvector_recipe",
        "test_runtime_api",
        "test_client",
        "test_schemathesis",
        "test_server",
        "test_server_logs",
        "test_server_reliability",
        "test_startup",
        "test_template",
    }
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.stem in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)

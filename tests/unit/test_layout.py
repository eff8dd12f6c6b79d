"""The shape the code keeps: short functions, each route path and error message
written once, and the route table agreeing with the app's routes."""

from __future__ import annotations

import ast

import pytest

from face_recognition_service import paths
from face_recognition_service.api import create_app
from face_recognition_service.config import Settings
from face_recognition_service.engine import ModelState
from tests.support.helpers import ROOT

PACKAGE = ROOT / "function" / "face_recognition_service"
MAX_FUNCTION_LINES = 60

# `make mutate` runs the tests in a copy holding mutmut's rewritten sources,
# not function/: there is no source tree of ours to check.
pytestmark = pytest.mark.skipif(not PACKAGE.is_dir(), reason="no function/ tree (a mutmut copy)")


def test_no_function_is_longer_than_sixty_lines() -> None:
    long = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({length} lines)")
    assert long == []


def test_route_paths_are_written_once() -> None:
    """Only paths.py (and testing.py's event builders for tests) name a path."""
    offenders = [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if path.name not in ("paths.py", "testing.py") and '"/api/v1' in path.read_text()
    ]
    assert offenders == []


def test_each_error_message_is_written_once() -> None:
    """An error's summary (the message of a ServiceError) is built in one place:
    the same wording in two modules would drift apart."""
    seen: dict[str, list[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", None) == "ServiceError"
                and len(node.args) > 1
            ):
                if isinstance(node.args[1], ast.Name):
                    continue  # a small constructor passing its own argument on
                message = ast.unparse(node.args[1])
                seen.setdefault(message, []).append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert len(seen) > 30  # the walk found the service's errors
    assert {message: where for message, where in seen.items() if len(where) > 1} == {}


def test_the_route_table_is_the_app_s(settings: Settings, model: ModelState) -> None:
    app = create_app(settings, model)
    # Swagger UI's redirect page and the offline docs' assets are not API routes.
    served = {getattr(route, "path", "") for route in app.routes} - {
        "/docs/oauth2-redirect",
        "/static-offline-docs",
    }
    assert {r.path for r in paths.ROUTES} == {p for p in served if p.startswith(paths.PREFIX)}
    assert served <= paths.KNOWN
    assert {r.path for r in paths.ROUTES} - {paths.HEALTH, paths.MODEL_INFO} == paths.HEAVY


def test_the_client_imports_nothing_of_the_server() -> None:
    """The client is an optional extra: httpx and the error vocabulary, no FastAPI or models."""
    import subprocess
    import sys

    code = (
        "import sys, face_recognition_service.client; "
        "print(sorted(m for m in ('fastapi', 'numpy', 'cv2', 'onnxruntime', 'pydantic') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"

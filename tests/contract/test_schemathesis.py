"""schemathesis against the app's own OpenAPI document: every operation, every
check (no server errors, responses and errors conform to the schema, status
codes and content types are documented, Allow on 405, ...), with a fixed seed
so that CI is repeatable. `make fuzz` runs many more examples (FUZZ_EXAMPLES).

The operations are driven through Hypothesis directly (one test per operation)
rather than through schemathesis' pytest plugin, which does not load under the
pytest this project pins."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from face_recognition_service.api import create_app
from face_recognition_service.engine import ModelState
from tests.support.helpers import make_settings

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
# The one check left out: "schema-valid data is accepted". No schema can say "a
# decodable photo with exactly one face" or "vectors of equal length", so most
# schema-valid bodies are rightly refused (400/422, in the error shape, which the
# other checks verify). What a schema can say, it says: non-empty images,
# embeddings that are not all zero, strict numbers.
EXCLUDED = [schemathesis.checks.positive_data_acceptance]
OPERATIONS = [
    ("GET", "/api/v1/health"),
    ("GET", "/api/v1/model-info"),
    ("POST", "/api/v1/embed"),
    ("POST", "/api/v1/compare"),
    ("POST", "/api/v1/verify"),
    ("POST", "/api/v1/embed/batch"),
    ("POST", "/api/v1/identify"),
]


@pytest.fixture(scope="module")
def api_schema(model_dir: Path, model: ModelState, tmp_path_factory: pytest.TempPathFactory) -> Any:
    # A gallery folder (empty): /identify answers GALLERY_NOT_FOUND or refuses the name.
    settings = make_settings(model_dir, gallery_dir=tmp_path_factory.mktemp("galleries"))
    return schemathesis.openapi.from_asgi("/openapi.json", create_app(settings, model))


def test_every_operation_is_covered(api_schema: Any) -> None:
    found = {(r.ok().method.upper(), r.ok().path) for r in api_schema.get_all_operations()}
    assert found == set(OPERATIONS)


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_operation_conforms_to_its_schema(api_schema: Any, method: str, path: str) -> None:
    operation = api_schema[path][method]

    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def run(case: Any) -> None:
        case.call_and_validate(excluded_checks=EXCLUDED)

    run()

"""The client's retry policy against a mock transport (no server): every code
the service can answer, retried only when another try can succeed, and each
raised as its own exception."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from face_recognition_service.client import ERRORS, FaceClient, FaceServiceError, Unreachable
from face_recognition_service.errors import HTTP_STATUS, ErrorCode

# What a caller may send again as it is: the service is busy, still loading its
# model, or its storage failed. Everything else is the request's or a bug.
RETRIED = {ErrorCode.SERVICE_BUSY, ErrorCode.MODEL_NOT_LOADED, ErrorCode.STORAGE_UNAVAILABLE}


def _client(handler: Any, retries: int = 2) -> FaceClient:
    return FaceClient("http://service", transport=httpx.MockTransport(handler), retries=retries, backoff=0.0)


@pytest.mark.parametrize("code", list(ErrorCode), ids=lambda c: c.value)
def test_each_error_is_retried_only_when_worth_it_and_raised_as_its_type(code: ErrorCode) -> None:
    calls: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        body = {"error": "e", "error_code": code.value, "detail": None}
        return httpx.Response(HTTP_STATUS[code], json=body, headers={"retry-after": "0"})

    with _client(answer) as faces, pytest.raises(ERRORS[code.value]) as raised:
        faces.model_info()
    assert raised.value.status == HTTP_STATUS[code]
    assert len(calls) == (3 if code in RETRIED else 1)


def test_a_success_after_a_busy_answer_is_returned() -> None:
    answers = iter(
        [
            httpx.Response(
                503, json={"error": "busy", "error_code": "SERVICE_BUSY"}, headers={"retry-after": "0"}
            ),
            httpx.Response(200, json={"status": "healthy"}),
        ]
    )
    retried: list[tuple[int, str]] = []
    client = FaceClient(
        "http://service",
        transport=httpx.MockTransport(lambda _: next(answers)),
        backoff=0.0,
        on_retry=lambda n, why: retried.append((n, why)),
    )
    with client as faces:
        assert faces.health() == {"status": "healthy"}
    assert retried == [(1, "HTTP 503")]


@pytest.mark.parametrize(("status", "tries"), [(500, 1), (502, 3), (504, 3), (429, 3), (400, 1)])
def test_an_answer_without_the_error_shape_is_retried_by_its_status(status: int, tries: int) -> None:
    calls: list[int] = []

    def answer(_: httpx.Request) -> httpx.Response:
        calls.append(status)
        return httpx.Response(status, text="<html>bad gateway</html>")

    with _client(answer) as faces, pytest.raises(FaceServiceError) as raised:
        faces.health()
    assert raised.value.status == status and len(calls) == tries


def test_no_answer_at_all_is_unreachable_after_the_retries() -> None:
    calls: list[int] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        raise httpx.ConnectError("refused", request=request)

    with _client(refuse) as faces, pytest.raises(Unreachable):
        faces.health()
    assert len(calls) == 3

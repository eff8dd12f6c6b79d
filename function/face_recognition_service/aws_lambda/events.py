"""API Gateway event builders (standard library only).

The Lambda init phase uses them for its warm-up requests; ``infra/make_events.py``
writes the sample events in ``events/`` with them, and the tests and benchmarks
build their ad-hoc events with them, so there is one idea of what API Gateway sends.
"""

from __future__ import annotations

import base64
import json
from typing import Any

HOST = "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com"
SOURCE_IP = "203.0.113.10"


def _body_text(body: Any) -> str | None:
    if body is None or isinstance(body, str):
        return body
    return json.dumps(body)


def http_api_event(
    method: str,
    path: str,
    body: Any = None,
    *,
    b64_body: bool = False,
    stage: str = "$default",
    request_id: str = "Tq3lbgNSIAMEVJw=",
    headers: dict[str, str] | None = None,
    query: str = "",
) -> dict[str, Any]:
    """An HTTP API (payload format 2.0) event; a dict/list ``body`` is sent as JSON,
    bytes as a base64 body (what API Gateway does with binary payloads)."""
    raw_path = path if stage == "$default" else f"/{stage}{path}"
    if isinstance(body, bytes):
        text: str | None = base64.b64encode(body).decode()
        b64_body = True
    else:
        text = _body_text(body)
        if text is not None and b64_body:
            text = base64.b64encode(text.encode()).decode()
    all_headers = {
        "accept": "application/json",
        "content-type": "application/json",
        "host": HOST,
        "user-agent": "curl/8.5.0",
        "x-forwarded-for": SOURCE_IP,
        "x-forwarded-port": "443",
        "x-forwarded-proto": "https",
    }
    all_headers.update(headers or {})
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": raw_path,
        "rawQueryString": query,
        "headers": all_headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "a1b2c3d4e5",
            "domainName": HOST,
            "domainPrefix": "a1b2c3d4e5",
            "http": {
                "method": method,
                "path": raw_path,
                "protocol": "HTTP/1.1",
                "sourceIp": SOURCE_IP,
                "userAgent": "curl/8.5.0",
            },
            "requestId": request_id,
            "routeKey": "$default",
            "stage": stage,
            "time": "28/Nov/2026:00:00:00 +0000",
            "timeEpoch": 1795824000000,
        },
        "body": text,
        "isBase64Encoded": b64_body,
    }


def rest_api_event(method: str, path: str, body: Any = None, stage: str = "Prod") -> dict[str, Any]:
    """A REST API (payload format 1.0) proxy event."""
    headers = {
        "Accept": "application/json",
        "Content-Type": "application/json",
        "Host": HOST,
        "User-Agent": "curl/8.5.0",
        "X-Forwarded-For": SOURCE_IP,
        "X-Forwarded-Port": "443",
        "X-Forwarded-Proto": "https",
    }
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": {"proxy": path.lstrip("/")},
        "stageVariables": None,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "a1b2c3d4e5",
            "resourceId": "abc123",
            "resourcePath": "/{proxy+}",
            "httpMethod": method,
            "path": f"/{stage}{path}",
            "stage": stage,
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "protocol": "HTTP/1.1",
            "identity": {"sourceIp": SOURCE_IP, "userAgent": "curl/8.5.0"},
            "requestTimeEpoch": 1795824000000,
        },
        "body": _body_text(body),
        "isBase64Encoded": False,
    }


def alb_event(
    method: str, path: str, body: str | bytes | None = None, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """An Application Load Balancer target event (Lambda behind an ALB)."""
    all_headers = {"host": "face.example.com", "content-type": "application/json", **(headers or {})}
    text: str | None
    if isinstance(body, bytes):
        text, encoded = base64.b64encode(body).decode(), True
    else:
        text, encoded = body, False
    return {
        "requestContext": {
            "elb": {
                "targetGroupArn": "arn:aws:elasticloadbalancing:us-east-1:123456789012:"
                "targetgroup/face/0123456789abcdef"
            }
        },
        "httpMethod": method,
        "path": path,
        "queryStringParameters": {},
        "headers": all_headers,
        "body": text or "",
        "isBase64Encoded": encoded,
    }


def is_sqs_event(event: Any) -> bool:
    records = event.get("Records") if isinstance(event, dict) else None
    return (
        bool(records)
        and isinstance(records, list)
        and all(isinstance(r, dict) and r.get("eventSource") == "aws:sqs" for r in records)
    )

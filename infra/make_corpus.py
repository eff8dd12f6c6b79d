"""Regenerate tests/corpus/: the bad-input corpus, each case with the status
and error code it must get.

    .venv/bin/python infra/make_corpus.py

bad_inputs.json: HTTP requests (method, path, headers, body as base64) that the
test suite sends through the app over HTTP and through the Lambda handler as
HTTP API 2.0, REST 1.0 and ALB events. malformed_events.json: Lambda events that
are not readable requests at all; each must get 400 INVALID_REQUEST.
"""

from __future__ import annotations

import base64
import copy
import json
import struct
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from face_recognition_service.testing import http_api_event, no_face_image, png_header_only, rest_api_event

ROOT = Path(__file__).resolve().parents[1]
FACES = ROOT / "tests" / "data" / "faces"
OUT = ROOT / "tests" / "corpus"
JSON = {"content-type": "application/json"}


def jpeg(image: np.ndarray, quality: int = 85) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


def uri(data: bytes, mime: str = "image/jpeg") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def case(
    name: str,
    path: str,
    body: Any,
    status: int,
    code: str,
    *,
    method: str = "POST",
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    raw = body if isinstance(body, bytes) else (json.dumps(body).encode() if body is not None else b"")
    return {
        "name": name,
        "method": method,
        "path": path,
        "headers": headers if headers is not None else JSON,
        "body_b64": base64.b64encode(raw).decode(),
        "status": status,
        "error_code": code,
    }


def bad_inputs() -> list[dict[str, Any]]:
    small = (FACES / "obama_small.jpg").read_bytes()
    corrupt = bytearray(small)
    corrupt[len(corrupt) // 2 : len(corrupt) // 2 + 1024] = (
        np.random.default_rng(1).integers(0, 255, 1024, dtype=np.uint8).tobytes()
    )
    huge_jpeg_head = jpeg(np.full((6000, 6000, 3), 120, np.uint8), 50)[:629]
    rgba16 = bytearray(png_header_only(8, 8))
    rgba16[24:26] = bytes([16, 6])  # 16-bit RGBA ...
    rgba16[16:24] = struct.pack(">II", 6320, 6320)  # ... at 40 MP: over the decode budget
    e, c, v = "/api/v1/embed", "/api/v1/compare", "/api/v1/verify"
    # An embedding of the models' length (512): a case that must reach the check
    # it names (model tags, the face) sends vectors that pass the length check.
    unit = [1.0] + [0.0] * 511
    ref = {"id": "a", "embedding": unit}
    cases = [
        # /embed: what is sent as the image
        case("embed-missing-image", e, {"picture": "x"}, 422, "INVALID_IMAGE"),
        case("embed-image-null", e, {"image": None}, 422, "INVALID_IMAGE"),
        case("embed-image-number", e, {"image": 5}, 422, "INVALID_IMAGE"),
        case("embed-image-list", e, {"image": ["a"]}, 422, "INVALID_IMAGE"),
        case("embed-image-empty", e, {"image": ""}, 422, "INVALID_IMAGE"),
        case("embed-not-base64", e, {"image": "this is not base64!"}, 400, "INVALID_IMAGE"),
        case("embed-url", e, {"image": "https://example.com/face.jpg"}, 400, "INVALID_IMAGE"),
        case("embed-data-uri-not-base64", e, {"image": "data:image/jpeg,abc"}, 400, "INVALID_IMAGE"),
        case(
            "embed-random-bytes",
            e,
            {"image": uri(np.random.default_rng(2).bytes(3000))},
            400,
            "INVALID_IMAGE",
        ),
        case(
            "embed-gif",
            e,
            {"image": "data:image/gif;base64,R0lGODlhAQABAIAAAP///wAAACH5BAAAAAAALAAAAAABAAEAAAICRAEAOw=="},
            415,
            "UNSUPPORTED_FORMAT",
        ),
        case("embed-tiff", e, {"image": uri(b"II*\x00" + b"\x00" * 64)}, 415, "UNSUPPORTED_FORMAT"),
        case(
            "embed-heic",
            e,
            {"image": uri(b"\x00\x00\x00\x18ftypheic" + b"\x00" * 64)},
            415,
            "UNSUPPORTED_FORMAT",
        ),
        case("embed-pdf", e, {"image": uri(b"%PDF-1.7\n" + b"\x00" * 64)}, 415, "UNSUPPORTED_FORMAT"),
        case("embed-truncated-jpeg", e, {"image": uri(small[: len(small) // 2])}, 400, "INVALID_IMAGE"),
        case("embed-corrupt-jpeg", e, {"image": uri(bytes(corrupt))}, 400, "INVALID_IMAGE"),
        case("embed-jpeg-declares-6000px", e, {"image": uri(huge_jpeg_head)}, 400, "INVALID_IMAGE"),
        case(
            "embed-png-bomb-header",
            e,
            {"image": uri(png_header_only(60_000, 60_000), "image/png")},
            413,
            "IMAGE_TOO_LARGE",
        ),
        case(
            "embed-rgba16-over-budget", e, {"image": uri(bytes(rgba16), "image/png")}, 413, "IMAGE_TOO_LARGE"
        ),
        case(
            "embed-png-header-only",
            e,
            {"image": uri(png_header_only(64, 64), "image/png")},
            400,
            "INVALID_IMAGE",
        ),
        case(
            "embed-s3-not-enabled", e, {"image_s3_uri": "s3://photos/u1.jpg"}, 403, "IMAGE_SOURCE_FORBIDDEN"
        ),
        case("embed-s3-bad-uri", e, {"image_s3_uri": "https://photos/u1.jpg"}, 400, "INVALID_IMAGE"),
        case("embed-no-face", e, {"image": uri(jpeg(no_face_image()))}, 422, "NO_FACE_DETECTED"),
        case(
            "embed-two-faces",
            e,
            {"image": uri((FACES / "kit_with_rose.jpg").read_bytes())},
            422,
            "MULTIPLE_FACES_DETECTED",
        ),
        # /embed: the request around it
        case(
            "embed-text-plain",
            e,
            {"image": uri(small)},
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            headers={"content-type": "text/plain"},
        ),
        case(
            "embed-form-encoded",
            e,
            b"image=abc",
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            headers={"content-type": "application/x-www-form-urlencoded"},
        ),
        case("embed-invalid-json", e, b'{"image": ', 422, "INVALID_IMAGE"),
        case("embed-json-array", e, [1, 2], 422, "INVALID_IMAGE"),
        case("embed-duplicate-key", e, b'{"image": "a", "image": "b"}', 422, "INVALID_IMAGE"),
        case(
            "embed-bad-face-selection",
            e,
            {"image": uri(small), "face_selection": "some"},
            422,
            "INVALID_IMAGE",
        ),
        case("embed-bad-max-faces", e, {"image": uri(small), "max_faces": 0}, 422, "INVALID_IMAGE"),
        case(
            "embed-bad-detection-threshold",
            e,
            {"image": uri(small), "detection_threshold": 2},
            422,
            "INVALID_IMAGE",
        ),
        case("embed-bad-include", e, {"image": uri(small), "include": ["everything"]}, 422, "INVALID_IMAGE"),
        case("embed-bad-min-quality", e, {"image": uri(small), "min_quality": "great"}, 422, "INVALID_IMAGE"),
        # /compare
        case(
            "compare-string-number",
            c,
            {"query_embedding": ["0.5", "0.1"], "reference_embeddings": [ref]},
            422,
            "INVALID_EMBEDDING",
        ),
        case(
            "compare-boolean-number",
            c,
            {"query_embedding": [True, False], "reference_embeddings": [ref]},
            422,
            "INVALID_EMBEDDING",
        ),
        case(
            "compare-ref-boolean",
            c,
            {"query_embedding": unit, "reference_embeddings": [{"id": "a", "embedding": [True, 0.5]}]},
            422,
            "INVALID_EMBEDDING",
        ),
        case(
            "compare-no-refs",
            c,
            {"query_embedding": [1.0], "reference_embeddings": []},
            422,
            "INVALID_EMBEDDING",
        ),
        case(
            "compare-length-mismatch",
            c,
            {"query_embedding": [1.0, 0.0, 0.0], "reference_embeddings": [ref]},
            422,
            "INVALID_EMBEDDING",
        ),
        case(
            "compare-zero-query",
            c,
            {"query_embedding": [0.0, 0.0], "reference_embeddings": [ref]},
            422,
            "INVALID_EMBEDDING",
        ),
        case(
            "compare-infinite",
            c,
            b'{"query_embedding": [1e999, 0.0], "reference_embeddings": '
            b'[{"id": "a", "embedding": [1.0, 0.0]}]}',
            422,
            "INVALID_EMBEDDING",
        ),
        case(
            "compare-nan-literal",
            c,
            b'{"query_embedding": [NaN, 0.0], "reference_embeddings": '
            b'[{"id": "a", "embedding": [1.0, 0.0]}]}',
            422,
            "INVALID_EMBEDDING",
        ),
        case(
            "compare-empty-id",
            c,
            {"query_embedding": unit, "reference_embeddings": [{**ref, "id": ""}]},
            422,
            "INVALID_EMBEDDING",
        ),
        case(
            "compare-long-id",
            c,
            {"query_embedding": unit, "reference_embeddings": [{**ref, "id": "x" * 257}]},
            422,
            "INVALID_EMBEDDING",
        ),
        case(
            "compare-duplicate-key",
            c,
            b'{"query_embedding": unit, "query_embedding": "x", '
            b'"reference_embeddings": [{"id": "a", "embedding": [1.0, 0.0]}]}',
            422,
            "INVALID_EMBEDDING",
        ),
        case(
            "compare-duplicate-key-in-ref",
            c,
            b'{"query_embedding": unit, "reference_embeddings": '
            b'[{"id": "a", "id": "b", "embedding": [1.0, 0.0]}]}',
            422,
            "INVALID_EMBEDDING",
        ),
        case(
            "compare-bad-metric",
            c,
            {"query_embedding": unit, "reference_embeddings": [ref], "distance_metric": "manhattan"},
            422,
            "INVALID_EMBEDDING",
        ),
        case(
            "compare-bad-base64",
            c,
            {"query_embedding": "!!!", "reference_embeddings": [ref]},
            422,
            "INVALID_EMBEDDING",
        ),
        case(
            "compare-model-mismatch",
            c,
            {
                "query_embedding": unit,
                "query_model": "buffalo_sc/w600k_mbf@1",
                "reference_embeddings": [{**ref, "model": "buffalo_l/w600k_r50@2"}],
            },
            409,
            "MODEL_MISMATCH",
        ),
        case(
            "compare-text-plain",
            c,
            {"query_embedding": unit, "reference_embeddings": [ref]},
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            headers={"content-type": "text/plain;charset=UTF-8"},
        ),
        # /verify
        case("verify-no-probe", v, {"references": [ref]}, 422, "INVALID_EMBEDDING"),
        case(
            "verify-two-probes",
            v,
            {"image": uri(small), "embedding": unit, "references": [ref]},
            422,
            "INVALID_EMBEDDING",
        ),
        case(
            "verify-bad-threshold",
            v,
            {"embedding": unit, "references": [ref], "threshold": 3},
            422,
            "INVALID_EMBEDDING",
        ),
        case(
            "verify-bad-operating-point",
            v,
            {"embedding": unit, "references": [ref], "operating_point": "paranoid"},
            422,
            "INVALID_EMBEDDING",
        ),
        case(
            "verify-model-mismatch",
            v,
            {
                "embedding": unit,
                "model": "buffalo_sc/w600k_mbf@1",
                "references": [{**ref, "model": "buffalo_l/w600k_r50@2"}],
            },
            409,
            "MODEL_MISMATCH",
        ),
        case(
            "verify-no-face",
            v,
            {"image": uri(jpeg(no_face_image())), "references": [ref]},
            422,
            "NO_FACE_DETECTED",
        ),
        # Routing
        case("get-embed", e, None, 405, "METHOD_NOT_ALLOWED", method="GET", headers={}),
        case("delete-health", "/api/v1/health", None, 405, "METHOD_NOT_ALLOWED", method="DELETE", headers={}),
        case("unknown-route", "/api/v1/users", {"x": 1}, 404, "NOT_FOUND"),
    ]
    return cases


def malformed_events() -> list[dict[str, Any]]:
    base = http_api_event("GET", "/api/v1/health")
    out: list[dict[str, Any]] = []

    def variant(name: str, change: Any) -> None:
        event = copy.deepcopy(base)
        change(event)
        out.append({"name": name, "event": event})

    variant("headers-null", lambda ev: ev.__setitem__("headers", None))
    variant("header-int", lambda ev: ev["headers"].__setitem__("x-a", 5))
    variant("header-list", lambda ev: ev["headers"].__setitem__("x-a", ["a"]))
    variant("version-3", lambda ev: ev.__setitem__("version", "3.0"))
    variant("version-missing", lambda ev: ev.pop("version"))
    variant("method-missing", lambda ev: ev["requestContext"]["http"].pop("method"))
    variant("source-ip-missing", lambda ev: ev["requestContext"]["http"].pop("sourceIp"))
    variant("raw-query-null", lambda ev: ev.__setitem__("rawQueryString", None))
    variant("cookies-not-strings", lambda ev: ev.__setitem__("cookies", [1, 2]))
    variant("body-not-base64", lambda ev: ev.update({"isBase64Encoded": True, "body": "!!!not base64"}))
    variant("body-dict", lambda ev: ev.__setitem__("body", {"a": 1}))
    variant("body-int", lambda ev: ev.__setitem__("body", 5))
    variant("body-list", lambda ev: ev.__setitem__("body", [1]))
    variant("http-empty", lambda ev: ev["requestContext"].__setitem__("http", {}))
    variant("http-null", lambda ev: ev["requestContext"].__setitem__("http", None))
    rest = rest_api_event("GET", "/api/v1/health")
    rest.pop("path")
    out.append({"name": "rest-path-missing", "event": rest})
    out.append(
        {
            "name": "alb-method-missing",
            "event": {
                "requestContext": {"elb": {"targetGroupArn": "x"}},
                "path": "/api/v1/health",
                "headers": {},
                "body": "",
                "isBase64Encoded": False,
            },
        }
    )
    return out


def main() -> None:
    OUT.mkdir(exist_ok=True)
    cases = bad_inputs()
    (OUT / "bad_inputs.json").write_text(json.dumps(cases, indent=1) + "\n")
    events = malformed_events()
    (OUT / "malformed_events.json").write_text(json.dumps(events, indent=1) + "\n")
    print(f"wrote {len(cases)} bad inputs and {len(events)} malformed events to {OUT}")


if __name__ == "__main__":
    main()

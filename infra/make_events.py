"""Regenerate events/: API Gateway sample events for `sam local invoke -e` and
for the test suite, which runs every one through the real handler.

    .venv/bin/python infra/make_events.py

events/manifest.json holds what each event must produce (one source of truth
for the tests); events/env/*.json are `sam local invoke --env-vars` files for
the events that need a setting changed.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from face_recognition_service.testing import (
    data_uri,
    http_api_event,
    no_face_image,
    png_header_only,
    rest_api_event,
    sqs_record,
)

ROOT = Path(__file__).resolve().parents[1]
EVENTS = ROOT / "events"
FACES = ROOT / "tests" / "data" / "faces"

EMBED_KEYS = ["embedding", "face_detected", "detection_score", "model"]
VERIFY_KEYS = [
    "match",
    "similarity",
    "threshold",
    "operating_point",
    "best_match",
    "runner_up",
    "margin",
    "ambiguous",
    "model",
]
ERROR_KEYS = ["error", "error_code", "detail"]
COMPARE_KEYS = ["matches", "best_match", "distance_metric"]


def photo(name: str, mime: str = "image/jpeg") -> str:
    return data_uri((FACES / name).read_bytes(), mime)


def no_face_jpeg() -> str:
    import cv2

    ok, buf = cv2.imencode(".jpg", no_face_image(), [cv2.IMWRITE_JPEG_QUALITY, 80])
    assert ok
    return data_uri(buf.tobytes())


def png_bomb_header() -> str:
    return data_uri(png_header_only(60_000, 60_000), "image/png")


def compare_body(metric: str) -> dict[str, Any]:
    import numpy as np

    rng = np.random.default_rng(3)
    query = rng.normal(size=512)
    query /= np.linalg.norm(query)
    refs = {
        "user_001": rng.normal(size=512),
        "user_002": query + rng.normal(scale=0.05, size=512),
        "user_003": rng.normal(size=512),
    }
    return {
        "query_embedding": [round(float(v), 6) for v in query],
        "reference_embeddings": [
            {"id": k, "embedding": [round(float(v), 6) for v in r / np.linalg.norm(r)]}
            for k, r in refs.items()
        ],
        "distance_metric": metric,
    }


def enrolled() -> tuple[dict[str, list[float]], str]:
    """Real buffalo_sc embeddings of labelled photos (verify and identify
    events), and their model tag."""
    import tempfile

    from face_recognition_service.engine import FaceEngine
    from face_recognition_service.imaging import decode_image
    from face_recognition_service.provision import provision

    with tempfile.TemporaryDirectory() as tmp:
        engine = FaceEngine.load(provision("buffalo_sc", Path(tmp)), threads=2)
        out = {}
        for name in ("obama_1.jpg", "obama_3.jpg", "biden_1.jpg", "biden_2.jpg", "rose_leslie_1.jpg"):
            face = engine.embed_single(decode_image((FACES / name).read_bytes(), 40_000_000))
            out[name] = [round(float(v), 6) for v in face.embedding]
        return out, engine.model_tag


IDENTIFY_KEYS = [
    "candidates",
    "match",
    "identity",
    "best_match",
    "margin",
    "ambiguous",
    "threshold",
    "operating_point",
    "expected_fpir",
    "gallery",
    "model",
]
# The S3 gallery the identify events name: tests/integration/server/test_identify.py builds it from
# events/galleries/staff.jsonl and puts it in (moto's) S3; `sam local invoke`
# needs it built and uploaded the same way (README "Identify").
STAFF_GALLERY = "s3://galleries/staff.frg"


def main() -> None:
    gallery, tag = enrolled()
    references = [
        {"id": "obama", "embedding": gallery["obama_1.jpg"]},
        {"id": "obama", "embedding": gallery["obama_3.jpg"]},
        {"id": "biden", "embedding": gallery["biden_1.jpg"]},
        {"id": "rose", "embedding": gallery["rose_leslie_1.jpg"]},
    ]
    gif = "data:image/gif;base64,R0lGODlhAQABAIAAAP///wAAACH5BAAAAAAALAAAAAABAAEAAAICRAEAOw=="
    events: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
        "health.json": (
            http_api_event("GET", "/api/v1/health"),
            {"status": 200, "keys": ["status", "model_loaded", "model_name"]},
        ),
        "model-info.json": (
            http_api_event("GET", "/api/v1/model-info"),
            {
                "status": 200,
                "keys": [
                    "name",
                    "embedding_size",
                    "backend",
                    "device",
                    "model",
                    "thresholds",
                    "identification",
                    "default_operating_point",
                    "ambiguity_margin",
                ],
            },
        ),
        "embed-face.json": (
            http_api_event("POST", "/api/v1/embed", {"image": photo("obama_small.jpg")}),
            {"status": 200, "keys": EMBED_KEYS},
        ),
        "embed-face-base64-body.json": (
            http_api_event("POST", "/api/v1/embed", {"image": photo("rose_leslie_1.jpg")}, b64_body=True),
            {"status": 200, "keys": EMBED_KEYS},
        ),
        "embed-no-face.json": (
            http_api_event("POST", "/api/v1/embed", {"image": no_face_jpeg()}),
            {"status": 422, "keys": ERROR_KEYS, "error_code": "NO_FACE_DETECTED"},
        ),
        "embed-multiple-faces.json": (
            http_api_event("POST", "/api/v1/embed", {"image": photo("kit_with_rose.jpg")}),
            {"status": 422, "keys": ERROR_KEYS, "error_code": "MULTIPLE_FACES_DETECTED"},
        ),
        "embed-invalid-base64.json": (
            http_api_event("POST", "/api/v1/embed", {"image": "data:image/jpeg;base64,this is not base64!"}),
            {"status": 400, "keys": ERROR_KEYS, "error_code": "INVALID_IMAGE"},
        ),
        "embed-unsupported-format.json": (
            http_api_event("POST", "/api/v1/embed", {"image": gif}),
            {"status": 415, "keys": ERROR_KEYS, "error_code": "UNSUPPORTED_FORMAT"},
        ),
        "embed-too-many-pixels.json": (
            http_api_event("POST", "/api/v1/embed", {"image": png_bomb_header()}),
            {"status": 413, "keys": ERROR_KEYS, "error_code": "IMAGE_TOO_LARGE"},
        ),
        "embed-oversized.json": (
            http_api_event("POST", "/api/v1/embed", {"image": photo("obama_4.jpg")}),
            {
                "status": 413,
                "keys": ERROR_KEYS,
                "error_code": "IMAGE_TOO_LARGE",
                "env": "env/small-image-limit.json",
            },
        ),
        "embed-missing-field.json": (
            http_api_event("POST", "/api/v1/embed", {"picture": "..."}),
            {"status": 422, "keys": ERROR_KEYS, "error_code": "INVALID_IMAGE"},
        ),
        "compare-cosine.json": (
            http_api_event("POST", "/api/v1/compare", compare_body("cosine")),
            {"status": 200, "keys": COMPARE_KEYS, "best_match": "user_002"},
        ),
        "compare-euclidean.json": (
            http_api_event("POST", "/api/v1/compare", compare_body("euclidean")),
            {"status": 200, "keys": COMPARE_KEYS, "best_match": "user_002"},
        ),
        "compare-invalid.json": (
            http_api_event(
                "POST",
                "/api/v1/compare",
                {"query_embedding": [0.1, 0.2], "reference_embeddings": [{"id": "u1", "embedding": [0.1]}]},
            ),
            {"status": 422, "keys": ERROR_KEYS, "error_code": "INVALID_EMBEDDING"},
        ),
        "verify-image-match.json": (
            http_api_event(
                "POST",
                "/api/v1/verify",
                {"image": photo("obama_small.jpg"), "references": references, "include": ["quality"]},
            ),
            {
                "status": 200,
                "keys": [*VERIFY_KEYS, "detection_score", "quality"],
                "best_match": "obama",
                "match": True,
            },
        ),
        "verify-embedding-no-match.json": (
            http_api_event(
                "POST",
                "/api/v1/verify",
                {
                    "embedding": gallery["biden_2.jpg"],
                    "references": [r for r in references if r["id"] != "biden"],
                    "operating_point": "strict",
                },
            ),
            {"status": 200, "keys": VERIFY_KEYS, "match": False},
        ),
        "verify-model-mismatch.json": (
            http_api_event(
                "POST",
                "/api/v1/verify",
                {
                    "image": photo("obama_small.jpg"),
                    "references": [{**references[0], "model": "buffalo_l/w600k_r50@00000000"}],
                },
            ),
            {"status": 409, "keys": ERROR_KEYS, "error_code": "MODEL_MISMATCH"},
        ),
        "embed-low-quality.json": (
            http_api_event(
                "POST", "/api/v1/embed", {"image": photo("obama_240p.jpg"), "min_quality": "good"}
            ),
            {"status": 422, "keys": ERROR_KEYS, "error_code": "LOW_QUALITY"},
        ),
        "not-found.json": (
            http_api_event("GET", "/api/v1/users"),
            {"status": 404, "keys": ERROR_KEYS, "error_code": "NOT_FOUND"},
        ),
        "rest-v1-health.json": (
            rest_api_event("GET", "/api/v1/health"),
            {"status": 200, "keys": ["status", "model_loaded", "model_name"]},
        ),
        "rest-v1-embed-face.json": (
            rest_api_event("POST", "/api/v1/embed", {"image": photo("obama_small.jpg")}),
            {"status": 200, "keys": EMBED_KEYS},
        ),
        "health-stage-path.json": (
            http_api_event("GET", "/api/v1/health", stage="prod"),
            {"status": 200, "keys": ["status", "model_loaded", "model_name"], "env": "env/stage-prod.json"},
        ),
        "embed-all-faces.json": (
            http_api_event(
                "POST", "/api/v1/embed", {"image": photo("obama_and_biden.jpg"), "face_selection": "all"}
            ),
            {"status": 200, "keys": ["faces", "face_count", "model"], "face_count": 3},
        ),
        "embed-binary-body.json": (
            http_api_event(
                "POST",
                "/api/v1/embed",
                (FACES / "obama_small.jpg").read_bytes(),
                headers={"content-type": "image/jpeg"},
                query="include=quality",
            ),
            {"status": 200, "keys": [*EMBED_KEYS, "quality"]},
        ),
        "embed-batch.json": (
            http_api_event(
                "POST",
                "/api/v1/embed/batch",
                {
                    "images": [
                        {"id": "u1", "image": photo("obama_small.jpg")},
                        {"id": "broken", "image": "data:image/jpeg;base64,bm90IGFuIGltYWdl"},
                        {"id": "u2", "image": photo("rose_leslie_1.jpg")},
                    ]
                },
            ),
            {"status": 200, "keys": ["results", "model"], "batch_errors": {"broken": "INVALID_IMAGE"}},
        ),
        "sqs-embed.json": (
            {
                "Records": [
                    sqs_record({"id": "u1", "image_s3_uri": "s3://photos/u1.jpg"}, "s3-message"),
                    sqs_record(
                        {
                            "id": "u2",
                            "image": base64.b64encode((FACES / "obama_small.jpg").read_bytes()).decode(),
                            "include": ["quality"],
                        },
                        "inline-message",
                    ),
                    sqs_record("{not json", "poison-message"),
                ]
            },
            # Needs S3 for the photo and the results: tests/integration/aws_lambda/test_queue.py runs it against moto.
            {"direct": {}, "needs_aws": True},
        ),
        "identify-image.json": (
            http_api_event(
                "POST",
                "/api/v1/identify",
                {"image": photo("biden_2.jpg"), "gallery": STAFF_GALLERY, "top_k": 3},
            ),
            {
                "status": 200,
                "keys": [*IDENTIFY_KEYS, "detection_score"],
                "best_match": "biden",
                "match": True,
                "env": "env/galleries.json",
                "needs_aws": True,
            },
        ),
        "identify-class-photo.json": (
            http_api_event(
                "POST",
                "/api/v1/identify",
                {"image": photo("obama_and_biden.jpg"), "gallery": STAFF_GALLERY, "face_selection": "all"},
            ),
            {
                "status": 200,
                "keys": ["faces", "face_count", *IDENTIFY_KEYS[6:]],
                "face_count": 3,
                "identities": ["biden", "obama"],
                "env": "env/galleries.json",
                "needs_aws": True,
            },
        ),
        "identify-forbidden-gallery.json": (
            http_api_event(
                "POST",
                "/api/v1/identify",
                {"embedding": gallery["biden_2.jpg"], "gallery": "s3://elsewhere/g.frg"},
            ),
            {"status": 403, "keys": ERROR_KEYS, "error_code": "GALLERY_FORBIDDEN"},
        ),
        "scheduled-warmup.json": (
            {
                "version": "0",
                "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
                "detail-type": "Scheduled Event",
                "source": "aws.events",
                "account": "123456789012",
                "time": "2026-11-28T00:00:00Z",
                "region": "us-east-1",
                "resources": ["arn:aws:events:us-east-1:123456789012:rule/face-warmup"],
                "detail": {},
            },
            {"direct": {"status": "warm", "model_loaded": True}},
        ),
    }
    manifest = {}
    for name, (event, expected) in events.items():
        (EVENTS / name).write_text(json.dumps(event, indent=1) + "\n")
        manifest[name] = expected
    (EVENTS / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    (EVENTS / "env").mkdir(exist_ok=True)
    (EVENTS / "env" / "small-image-limit.json").write_text(
        json.dumps({"FaceFunction": {"MAX_IMAGE_SIZE": "65536"}}, indent=2) + "\n"
    )
    (EVENTS / "env" / "galleries.json").write_text(
        json.dumps({"FaceFunction": {"GALLERY_S3_BUCKETS": "galleries"}}, indent=2) + "\n"
    )
    (EVENTS / "galleries").mkdir(exist_ok=True)
    staff = [
        ("obama", "obama_1.jpg"),
        ("obama", "obama_3.jpg"),
        ("biden", "biden_1.jpg"),
        ("rose", "rose_leslie_1.jpg"),
    ]
    (EVENTS / "galleries" / "staff.jsonl").write_text(
        "".join(json.dumps({"id": i, "embedding": gallery[f], "model": tag}) + "\n" for i, f in staff)
    )
    (EVENTS / "env" / "stage-prod.json").write_text(
        json.dumps({"FaceFunction": {"API_BASE_PATH": "/prod"}}, indent=2) + "\n"
    )
    print(f"wrote {len(events)} events to {EVENTS}")


if __name__ == "__main__":
    main()

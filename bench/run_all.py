"""The benchmark suite: prints every figure of the benchmarks document.

    .venv/bin/python -m bench.run_all                       # buffalo_sc, the repo's photos
    .venv/bin/python -m bench.run_all --model buffalo_l     # where that pack is provisioned
    .venv/bin/python -m bench.run_all --photos ~/my-photos --rounds 10

Everything is measured in one run on this machine, so the ratios compare like
with like: the service against the model floor and against the straightforward
peer (bench/peer_app.py), at concurrency 1 unless a section says otherwise.
Results also go to bench/results/<model>.json.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from face_recognition_service.testing import embed_body

from .common import (
    DEFAULT_PHOTOS,
    ROOT,
    Client,
    Photo,
    first_embed_after_start,
    free_port,
    load_photos,
    machine,
    our_server,
    peer_server,
    summary,
)
from .lambda_probe import TEMPLATE_MEMORY_MB

# AWS list prices (us-east-1): Lambda per GB-second and per request; Rekognition
# DetectFaces/IndexFaces, first million images a month.
LAMBDA_GB_S = {"x86_64": 0.0000166667, "arm64": 0.0000133334}
LAMBDA_REQUEST = 0.20 / 1_000_000
REKOGNITION_PER_IMAGE = 1.0 / 1000


def section(title: str) -> None:
    print(f"\n## {title}", flush=True)


def bench_embed(
    port_ours: int, port_peer: int, photos: list[Photo], model_path: Path, rounds: int
) -> dict[str, Any]:
    """The model floor and both servers, interleaved round by round, so that
    drift on a shared machine lands on all three alike.

    Floor: decode + detect + align + embed in this process, no HTTP, no JSON, at
    the service's own settings (same thread count, same session options).
    Old floor: the same with the pack's recogniser graph as it is
    (GRAPH_REWRITE=false): round three's floor less the rewrites (the
    detector's in-place input, bit for bit the old one, is in both).
    Servers: sequential requests over one keep-alive connection each.
    """
    from face_recognition_service.config import Settings
    from face_recognition_service.engine import FaceEngine
    from face_recognition_service.imaging import decode_image

    threads = Settings(_env_file=None).threads  # type: ignore[call-arg]
    engine = FaceEngine.load(model_path, threads=threads)
    engine.warm_up()
    old_engine = FaceEngine.load(model_path, threads=threads, rewrite=False)
    old_engine.warm_up()
    bodies = [embed_body(p.data) for p in photos]
    ours, peer = Client(port_ours), Client(port_peer)
    for client in (ours, peer):  # warm connections and caches
        for body in bodies[:3]:
            client.request("POST", "/api/v1/embed", body)
    samples: dict[str, list[float]] = {"floor": [], "old_floor": [], "ours": [], "peer": []}
    for _ in range(rounds):
        for name, in_process in (("floor", engine), ("old_floor", old_engine)):
            for photo in photos:
                start = time.perf_counter()
                in_process.embed_single(decode_image(photo.data, 40_000_000))
                samples[name].append(time.perf_counter() - start)
        for name, client in (("ours", ours), ("peer", peer)):
            for body in bodies:
                start = time.perf_counter()
                status, _ = client.request("POST", "/api/v1/embed", body)
                samples[name].append(time.perf_counter() - start)
                assert status == 200, (name, status)
    ours.close()
    peer.close()
    out: dict[str, Any] = {name: summary(s) for name, s in samples.items()}
    out["ours_over_peer"] = round(out["ours"]["median_ms"] / out["peer"]["median_ms"], 3)
    out["ours_over_floor"] = round(out["ours"]["median_ms"] / out["floor"]["median_ms"], 3)
    out["ours_over_old_floor"] = round(out["ours"]["median_ms"] / out["old_floor"]["median_ms"], 3)
    out["floor_over_old_floor"] = round(out["floor"]["median_ms"] / out["old_floor"]["median_ms"], 3)
    # The same faces either way: every photo's embedding against the old floor's.
    out["min_cosine_to_old_floor"] = round(
        min(
            float(
                engine.embed_single(decode_image(p.data, 40_000_000)).embedding
                @ old_engine.embed_single(decode_image(p.data, 40_000_000)).embedding
            )
            for p in photos
        ),
        6,
    )
    return out


def _probe(
    args: list[str],
    model_dir: Path,
    model: str,
    threads: int,
    extra_env: dict[str, str] | None = None,
    cpus: set[int] | None = None,
) -> Any:
    """Run bench.lambda_probe in a fresh process with Lambda-like settings;
    ``cpus``: the CPUs it may run on (a 1,769 MB function has one vCPU)."""
    env = {
        **(extra_env or {}),
        "MODEL_DIR": str(model_dir),
        "MODEL_NAME": model,
        "ORT_THREADS": str(threads),
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "Bench",
        "LOG_LEVEL": "ERROR",
        "PATH": "/usr/bin:/bin",
    }
    out = subprocess.run(
        [sys.executable, "-m", "bench.lambda_probe", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        preexec_fn=None if cpus is None else lambda: os.sched_setaffinity(0, cpus),
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_lambda_in_process(
    photos_dir: Path,
    model_dir: Path,
    model: str,
    rounds: int,
    threads: int,
    peer: bool = False,
    cpus: set[int] | None = None,
) -> dict[str, Any]:
    """The Lambda handler in a fresh process, invoked with API Gateway events
    (``peer``: the peer's app behind Mangum; ``cpus``: the CPUs it may use)."""
    result: dict[str, Any] = _probe(
        ["warm-peer" if peer else "warm", "--photos", str(photos_dir), "--rounds", str(rounds)],
        model_dir,
        model,
        threads,
        {"PEER_MODEL_DIR": str(model_dir / model)} if peer else None,
        cpus,
    )
    return result


def bench_lambda_cold(
    photo: Photo, model_dir: Path, model: str, threads: int, runs: int = 5, cpus: set[int] | None = None
) -> dict[str, Any]:
    """Interpreter start -> handler import (libraries, model load, warm-up) -> first
    invoke; ours and the peer behind Mangum alternate, ``runs`` times each.

    Ours runs as both kinds of init Lambda names in AWS_LAMBDA_INITIALIZATION_TYPE:
    ``ours`` an on-demand init (the cold start a caller waits for: no warm-up
    requests) and ``ours_provisioned`` a provisioned-concurrency one (warm-up
    requests at init, which no caller waits for). The ratio is of init + first
    invoke, on demand; ``provisioned_init_ratio`` compares that init alone."""
    peer_env = {"PEER_MODEL_DIR": str(model_dir / model)}
    kinds = {"ours": "on-demand", "ours_provisioned": "provisioned-concurrency"}
    samples: dict[str, list[dict[str, Any]]] = {"ours": [], "ours_provisioned": [], "peer": []}
    for _ in range(runs):
        for name, kind in kinds.items():
            env = {"AWS_LAMBDA_INITIALIZATION_TYPE": kind}
            samples[name].append(
                _probe(["cold", "--photo", str(photo.path)], model_dir, model, threads, env, cpus)
            )
        samples["peer"].append(
            _probe(["cold-peer", "--photo", str(photo.path)], model_dir, model, threads, peer_env, cpus)
        )
    # What a caller waits for on a cold start: Lambda's init (the handler
    # import) and the first invoke. The runtime's own start before the import
    # is the same for both; here the probe's interpreter start and imports
    # stand in for it, and the second ratio includes them.
    for rows in samples.values():
        for r in rows:
            r["init_and_first_invoke_ms"] = round(r["init_ms"] + r["first_invoke_ms"], 1)
    out: dict[str, Any] = {
        name: {key: round(float(np.median([r[key] for r in rows])), 1) for key in rows[0]}
        for name, rows in samples.items()
    }
    key = "init_and_first_invoke_ms"
    out["runs"] = {name: [r[key] for r in rows] for name, rows in samples.items()}
    out["ratio"] = round(out["ours"][key] / out["peer"][key], 3)
    out["ratio_per_run"] = [
        round(o[key] / p[key], 3) for o, p in zip(samples["ours"], samples["peer"], strict=True)
    ]
    whole = "import_to_first_response_ms"
    out["ratio_from_interpreter_start"] = round(out["ours"][whole] / out["peer"][whole], 3)
    out["provisioned_ratio"] = round(out["ours_provisioned"][key] / out["peer"][key], 3)
    out["provisioned_init_ratio"] = round(out["ours_provisioned"]["init_ms"] / out["peer"]["init_ms"], 3)
    return out


def bench_server_cold(photo: Photo, model_dir: Path, model: str, runs: int = 5) -> dict[str, Any]:
    """Process start to first successful embed, and peak RSS after a few
    requests; ours and the peer alternate, ``runs`` times each."""
    starts: dict[str, list[float]] = {"ours": [], "peer": []}
    rss: dict[str, list[float]] = {"ours": [], "peer": []}
    for _ in range(runs):
        for name, factory in (("ours", our_server), ("peer", peer_server)):
            port = free_port()
            server = factory(model_dir, model, port)
            try:
                starts[name].append(first_embed_after_start(server, embed_body(photo.data)))
                client = Client(port)
                for _ in range(5):
                    client.request("POST", "/api/v1/embed", embed_body(photo.data))
                client.close()
                rss[name].append(server.peak_rss_mb())
            finally:
                server.stop()
    return {
        name: {
            "start_to_first_embed_ms": round(float(np.median(starts[name])) * 1000, 1),
            "peak_rss_mb": round(float(np.median(rss[name])), 1),
        }
        for name in starts
    }


def bench_compare(port_ours: int, port_peer: int, sizes: tuple[int, ...], rounds: int) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    out: dict[str, Any] = {}
    for n in sizes:
        refs = rng.normal(size=(n, 512))
        refs /= np.linalg.norm(refs, axis=1, keepdims=True)
        body = json.dumps(
            {
                "query_embedding": refs[0].tolist(),
                "reference_embeddings": [
                    {"id": f"user_{i:05d}", "embedding": r.tolist()} for i, r in enumerate(refs)
                ],
                "distance_metric": "cosine",
            }
        ).encode()
        row: dict[str, Any] = {"body_mb": round(len(body) / 1e6, 2)}
        for name, port in (("ours", port_ours), ("peer", port_peer)):
            client = Client(port)
            client.request("POST", "/api/v1/compare", body)
            samples = []
            for _ in range(rounds):
                start = time.perf_counter()
                status, _ = client.request("POST", "/api/v1/compare", body)
                samples.append(time.perf_counter() - start)
                assert status == 200
            client.close()
            row[name] = summary(samples)
        row["ratio"] = round(row["ours"]["median_ms"] / row["peer"]["median_ms"], 3)
        out[str(n)] = row
    return out


def _drive(port: int, bodies: list[bytes], seconds: float, concurrency: int) -> tuple[int, float]:
    """Closed-loop load: ``concurrency`` clients, each sending its next request as
    soon as the last is answered, for ``seconds``. Returns (requests, elapsed)."""
    done = [0]
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def worker(seed: int) -> None:
        client = Client(port)
        order = random.Random(seed)
        while time.perf_counter() < stop_at:
            status, _ = client.request("POST", "/api/v1/embed", order.choice(bodies))
            assert status == 200
            with lock:
                done[0] += 1
        client.close()

    start = time.perf_counter()
    pool = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return done[0], time.perf_counter() - start


def bench_throughput(photos: list[Photo], model_dir: Path, model: str, seconds: float) -> dict[str, Any]:
    bodies = [embed_body(p.data) for p in photos]
    out: dict[str, Any] = {}
    for workers, threads, concurrency in ((1, 0, 1), (1, 0, 4), (2, 1, 4)):
        port = free_port()
        server = our_server(model_dir, model, port, workers=workers, threads=threads)
        try:
            server.wait_ready()
            _drive(port, bodies, 1.0, concurrency)  # warm every worker
            requests, elapsed = _drive(port, bodies, seconds, concurrency)
            key = f"workers={workers},ort_threads={threads or 'all'},concurrency={concurrency}"
            out[key] = {"requests_per_s": round(requests / elapsed, 1), "requests": requests}
        finally:
            server.stop()
    return out


def accuracy(photos_folder: Path, model_path: Path) -> dict[str, Any]:
    """Same/different-person separation on the labelled photos, and agreement with
    the unoptimised path (InsightFace's FaceAnalysis)."""
    import csv
    import itertools

    from insightface.app import FaceAnalysis

    from face_recognition_service.engine import FaceEngine, session_options
    from face_recognition_service.imaging import decode_image

    labels = photos_folder / "labels.csv"
    if not labels.is_file():
        return {}
    with open(labels, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["faces"] == "1"]
    engine = FaceEngine.load(model_path, threads=2)
    ref = FaceAnalysis(
        name=str(model_path), providers=["CPUExecutionProvider"], sess_options=session_options(2)
    )
    ref.prepare(ctx_id=-1, det_size=(640, 640))
    ours, theirs = {}, {}
    for row in rows:
        image = decode_image((photos_folder / row["file"]).read_bytes(), 40_000_000)
        ours[row["file"]] = (row["person"], engine.embed_single(image).embedding)
        theirs[row["file"]] = ref.get(image)[0].normed_embedding
    same_photo = {frozenset({"obama_1.jpg", "obama_240p.jpg"}), frozenset({"obama_2.jpg", "rgba_32bit.png"})}

    def separation(vectors: dict[str, tuple[str, np.ndarray]]) -> tuple[float, float]:
        same: list[float] = []
        diff: list[float] = []
        for (a, (pa, va)), (b, (pb, vb)) in itertools.combinations(vectors.items(), 2):
            if frozenset({a, b}) in same_photo:
                continue
            (same if pa == pb else diff).append(float(va @ vb))
        return min(same), max(diff)

    ours_sep = separation(ours)
    peer_sep = separation({k: (p, theirs[k]) for k, (p, _) in ours.items()})
    return {
        "min_cos_vs_faceanalysis": round(min(float(v @ theirs[k]) for k, (_, v) in ours.items()), 5),
        "ours_min_same_max_different": [round(x, 4) for x in ours_sep],
        "faceanalysis_min_same_max_different": [round(x, 4) for x in peer_sep],
    }


def cost(latency_ms_1vcpu: float) -> dict[str, Any]:
    gb = TEMPLATE_MEMORY_MB / 1024
    out: dict[str, Any] = {"memory_mb": TEMPLATE_MEMORY_MB, "billed_ms": int(np.ceil(latency_ms_1vcpu))}
    for arch, price in LAMBDA_GB_S.items():
        per_request = out["billed_ms"] / 1000 * gb * price + LAMBDA_REQUEST
        out[f"usd_per_million_{arch}"] = round(per_request * 1_000_000, 2)
    out["rekognition_usd_per_million"] = REKOGNITION_PER_IMAGE * 1_000_000
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--model", default="buffalo_sc")
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=None,
        help="default: a temporary folder provisioned now (buffalo_sc), else MODEL_DIR",
    )
    parser.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--skip", nargs="*", default=[], help="sections to skip: throughput cold compare large"
    )
    args = parser.parse_args(argv)
    photos = load_photos(args.photos)
    # Both apps' code as the images ship it, compiled (the Dockerfiles run
    # compileall): with PYTHONDONTWRITEBYTECODE set, or a read-only tree, each
    # cold start would otherwise compile the sources again.
    for folder in (ROOT / "function", ROOT / "bench"):
        compileall.compile_dir(folder, quiet=1)
    from face_recognition_service.config import Settings
    from face_recognition_service.provision import provision

    tmp = tempfile.TemporaryDirectory()
    model_dir = args.model_dir
    if model_dir is None:
        model_dir = Path(tmp.name) if args.model == "buffalo_sc" else Settings().model_dir.expanduser()
        if args.model == "buffalo_sc":
            provision("buffalo_sc", model_dir)
    model_path = model_dir / args.model
    results: dict[str, Any] = {
        "machine": machine(),
        "model": args.model,
        "photos": len(photos),
        "rounds": args.rounds,
        "command": "python -m bench.run_all " + " ".join(argv or sys.argv[1:]),
    }
    print(json.dumps(results["machine"]))
    print(f"model {args.model}, {len(photos)} single-face photos from {args.photos}, {args.rounds} rounds")

    section("Warm embed, concurrency 1: model floor, ours over HTTP, the peer over HTTP (interleaved)")
    port_ours, port_peer = free_port(), free_port()
    ours, peer = our_server(model_dir, args.model, port_ours), peer_server(model_dir, args.model, port_peer)
    try:
        ours.wait_ready()
        peer.wait_ready()
        results["embed"] = bench_embed(port_ours, port_peer, photos, model_path, args.rounds)
        print(json.dumps(results["embed"], indent=1))
        if "compare" not in args.skip:
            section("Compare over HTTP (cosine), ours vs the peer's per-reference loop")
            results["compare"] = bench_compare(port_ours, port_peer, (10, 100, 500), max(5, args.rounds))
            print(json.dumps(results["compare"], indent=1))
    finally:
        ours.stop()
        peer.stop()

    section("Lambda handler in-process, API Gateway v2 events")
    # One CPU (about a 1,769 MB function): ours with one ORT thread, as
    # ORT_THREADS=0 gives there, against the peer's handler on the same CPU.
    one = {0}
    lam = {
        "threads_all": bench_lambda_in_process(args.photos, model_dir, args.model, args.rounds, 0),
        "threads_1": bench_lambda_in_process(args.photos, model_dir, args.model, args.rounds, 1),
        "one_cpu": bench_lambda_in_process(args.photos, model_dir, args.model, args.rounds, 1, cpus=one),
        "peer_one_cpu": bench_lambda_in_process(
            args.photos, model_dir, args.model, args.rounds, 1, peer=True, cpus=one
        ),
    }
    lam["ours_over_floor"] = round(
        lam["threads_all"]["median_ms"] / results["embed"]["floor"]["median_ms"], 3
    )
    lam["one_cpu_ours_over_peer"] = round(lam["one_cpu"]["median_ms"] / lam["peer_one_cpu"]["median_ms"], 3)
    results["lambda"] = lam
    print(json.dumps(lam, indent=1))

    if "cold" not in args.skip:
        section("Cold start")
        cold = {
            "server": bench_server_cold(photos[0], model_dir, args.model),
            "lambda": bench_lambda_cold(photos[0], model_dir, args.model, 0),
            # One CPU and one ORT thread: about a 1,769 MB function (the
            # template's 2,048 MB has ~1.16 vCPUs), where the model loader's
            # thread no longer has a core of its own beside the imports.
            "lambda_one_cpu": bench_lambda_cold(photos[0], model_dir, args.model, 1, cpus={0}),
        }
        srv = cold["server"]
        srv["start_ratio"] = round(
            srv["ours"]["start_to_first_embed_ms"] / srv["peer"]["start_to_first_embed_ms"], 3
        )
        srv["rss_ratio"] = round(srv["ours"]["peak_rss_mb"] / srv["peer"]["peak_rss_mb"], 3)
        results["cold"] = cold
        print(json.dumps(cold, indent=1))

    if "throughput" not in args.skip:
        section("Throughput, server mode, 8 s per configuration")
        results["throughput"] = bench_throughput(photos, model_dir, args.model, 8.0)
        print(json.dumps(results["throughput"], indent=1))

    if "large" not in args.skip:
        section("Large photos (phone cameras): ours vs the peer over HTTP, accuracy against full decode")
        from .large_photos import measure

        large = measure(max(2, args.rounds // 2))
        results["large_photos"] = {k: v for k, v in large.items() if k != "in_process"}
        for group, row in large["http"].items():
            print(
                f"  {group:10s} ours {row['ours']['median_ms']:7.1f} ms  peer {row['peer']['median_ms']:7.1f} ms  "
                f"ratio {row['ratio']:.3f}"
            )
        print(f"  per-photo ratio (ours / peer): {json.dumps(large['per_photo_ratio'])}")
        print(f"  in process, whole pipeline (median ms): {json.dumps(large['in_process_median_ms'])}")
        print(f"  a phone photo as a PNG, in process (median ms): {json.dumps(large['png_ms'])}")
        for group, stages in large["stages_ms"].items():
            print(f"  stages, {group:9s} (median ms): {json.dumps(stages)}")
        print(
            "  min cosine (faces >= 112 px) to the full-decode pipeline (the pixels as a PNG): "
            f"{large['min_cosine_to_full_decode_png_where_face_ge_112px']}; "
            f"to the full-size crop (REDUCED_DECODE=false): {large['min_cosine_to_full_where_face_ge_112px']}; "
            f"decision errors at balanced: {large['decision_errors_at_balanced']} of {large['pairs_checked']} pairs"
        )
        for who, value in large["separation"].items():
            print(f"  separation, {who:14s} {json.dumps(value)}")
        for key, value in large["reference_stability"].items():
            print(f"  {key:34s} min {value['min']:.4f}  median {value['median']:.4f}")
        print(f"  50 MP photo, process peak: {json.dumps(large['fifty_megapixel'])}")

    section("Cost per million embeddings (Lambda at the template's memory, 1-vCPU latency)")
    results["cost"] = cost(results["lambda"]["threads_1"]["median_ms"])
    print(json.dumps(results["cost"], indent=1))

    section("Accuracy (labelled photos)")
    results["accuracy"] = accuracy(args.photos, model_path)
    print(json.dumps(results["accuracy"], indent=1))

    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / f"{args.model}.json").write_text(json.dumps(results, indent=1) + "\n")
    print(f"\nwrote bench/results/{args.model}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())

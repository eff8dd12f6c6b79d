"""The Lambda handler measured in a fresh process (run by bench.run_all).

    python -m bench.lambda_probe warm --photos tests/data/faces --rounds 5
    PEER_MODEL_DIR=~/.insightface/models/buffalo_sc python -m bench.lambda_probe warm-peer --photos ...
    python -m bench.lambda_probe cold --photo tests/data/faces/obama_1.jpg
    PEER_MODEL_DIR=~/.insightface/models/buffalo_sc python -m bench.lambda_probe cold-peer --photo ...

MODEL_DIR, MODEL_NAME and ORT_THREADS come from the environment, as in Lambda.
Prints one JSON line: warm latency summary, or the cold-start breakdown.
"""

from __future__ import annotations

import time

T0 = time.perf_counter()

import argparse  # noqa: E402
import contextlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from face_recognition_service.testing import FakeLambdaContext, embed_body, http_api_event  # noqa: E402

from .common import load_photos, summary  # noqa: E402

TEMPLATE_MEMORY_MB = 2048


def embed_event(data: bytes) -> dict[str, Any]:
    return http_api_event("POST", "/api/v1/embed", json.loads(embed_body(data)))


def context() -> FakeLambdaContext:
    return FakeLambdaContext(memory_limit_in_mb=TEMPLATE_MEMORY_MB, aws_request_id="bench")


def warm(photos_dir: Path, rounds: int, peer: bool = False) -> dict[str, Any]:
    """Warm invokes of the handler (``peer``: the peer's app behind Mangum)."""
    events = [embed_event(p.data) for p in load_photos(photos_dir)]
    with contextlib.redirect_stdout(io.StringIO()):
        handler = _peer()[0] if peer else _ours()[0]
        for event in events[:3]:  # the peer's first invokes pay its lazy initialisation
            handler(event, context())
        samples = []
        for _ in range(rounds):
            for event in events:
                start = time.perf_counter()
                result = handler(event, context())
                samples.append(time.perf_counter() - start)
                assert result["statusCode"] == 200, result
    return summary(samples)


def _ours() -> tuple[Any, dict[str, float]]:
    from face_recognition_service.aws_lambda import handler as module

    return module.handler, {f"init_{k}": v for k, v in module.function.init_timings.items()}


def _peer() -> tuple[Any, dict[str, float]]:
    from mangum import Mangum

    from . import peer_app

    return Mangum(peer_app.app, lifespan="off"), {}


def cold(photo: Path, peer: bool = False) -> dict[str, Any]:
    """Interpreter start -> handler import (what Lambda's init does: libraries,
    model load, warm-up) -> first invoke. With ``peer``: the same for the peer
    in the Lambda shape the seed describes, its FastAPI app (FaceAnalysis loaded
    at import) behind Mangum."""
    event = embed_event(photo.read_bytes())
    with contextlib.redirect_stdout(io.StringIO()):
        t_init0 = time.perf_counter()
        handler, breakdown = _peer() if peer else _ours()
        t_init = time.perf_counter()
        result = handler(event, context())
        t_first = time.perf_counter()
    assert result["statusCode"] == 200, result
    return {
        "init_ms": round((t_init - t_init0) * 1000, 1),
        **breakdown,
        "first_invoke_ms": round((t_first - t_init) * 1000, 1),
        "import_to_first_response_ms": round((t_first - T0) * 1000, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="mode", required=True)
    for mode in ("warm", "warm-peer"):
        warm_args = sub.add_parser(mode)
        warm_args.add_argument("--photos", type=Path, required=True)
        warm_args.add_argument("--rounds", type=int, default=5)
    for mode in ("cold", "cold-peer"):
        sub.add_parser(mode).add_argument("--photo", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.mode in ("warm", "warm-peer"):
        out = warm(args.photos, args.rounds, peer=args.mode == "warm-peer")
    else:
        out = cold(args.photo, peer=args.mode == "cold-peer")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

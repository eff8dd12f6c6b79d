"""Loading a pack into a FaceEngine, and the state the service keeps: a ready
engine, or the reason there is none (the service starts either way)."""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass

from ..config import ModelConfig
from ..errors import ErrorCode, ServiceError
from .pipeline import FaceEngine
from .runtime import ModelLoadError
from .types import Span, no_span

logger = logging.getLogger(__name__)


def _last_part(match: re.Match[str]) -> str:
    parts = [p for p in re.split(r"[/\\]", match.group(0)) if p]
    return f".../{parts[-1]}" if parts else match.group(0)


@dataclass(frozen=True)
class ModelState:
    """What the service has: a ready engine, or the reason it has none."""

    engine: FaceEngine | None
    error: str | None = None
    load_seconds: float | None = None  # model load (and warm-up), for metrics

    def require(self) -> FaceEngine:
        """The engine, or MODEL_NOT_LOADED: how every transport gets it."""
        if self.engine is None:
            raise ServiceError(ErrorCode.MODEL_NOT_LOADED, "The face model is not loaded.", self.error)
        return self.engine

    @property
    def public_error(self) -> str | None:
        """The reason without the server's folder names (for unauthenticated callers)."""
        if self.error is None:
            return None
        return re.sub(r"(?:[A-Za-z]:)?(?:[/\\][^\s'\"(),/\\]+)+[/\\]?", _last_part, self.error)


def load_model(config: ModelConfig, span: Span = no_span, warm_up: bool = True) -> ModelState:
    """Load the configured pack; a missing or broken pack is a state, not a crash,
    so the service can still start, answer health checks and say what is wrong."""
    started = time.perf_counter()
    try:
        engine = FaceEngine.load(
            config.path,
            device=config.device,
            threads=config.threads,
            det_size=config.det_size,
            det_retry_size=config.det_retry_size,
            threshold=config.detection_threshold,
            span=span,
            rewrite=config.graph_rewrite,
        )
        engine.min_face_size = config.min_face_size
        engine.coarse_detection = config.coarse_detection
        if warm_up:
            engine.warm_up()
    except ModelLoadError as exc:
        logger.error("model not loaded: %s", exc)
        return ModelState(None, str(exc))
    return ModelState(engine, load_seconds=time.perf_counter() - started)

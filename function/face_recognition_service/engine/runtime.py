"""ONNX Runtime sessions: execution providers, the process's one thread pool,
and session options tuned for a small number of cores."""

from __future__ import annotations

import logging
from pathlib import Path

import onnxruntime as ort

logger = logging.getLogger(__name__)


class ModelLoadError(RuntimeError):
    """The model pack is missing, incomplete or cannot run on this device."""


def providers_for(device: str) -> list[str]:
    available = ort.get_available_providers()
    if device == "cuda":
        if "CUDAExecutionProvider" not in available:
            raise ModelLoadError(
                "DEVICE=cuda, but this onnxruntime has no CUDAExecutionProvider "
                f"(available: {', '.join(available)}). Install onnxruntime-gpu with "
                "CUDA and cuDNN libraries, or set DEVICE=cpu."
            )
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


# One intra-op thread pool for the process, shared by the detector and the
# recogniser. With a pool per session, the idle pool's threads spin while the
# other session runs, and on a 2-vCPU function both fight for the same cores.
# Measured here (det + rec, one request): 48 ms with spinning per-session pools,
# 22 ms without spinning, 19.6 ms with one shared pool; see BENCHMARKS.md.
# ONNX Runtime allows it once per process, and once it exists every session in
# the process must use it, so session_options() joins it whenever it is there.
_shared_pool_threads = 0


def create_shared_pool(threads: int) -> int:
    """Create the process-wide pool (first call only); returns its size, 0 if none."""
    global _shared_pool_threads
    if not _shared_pool_threads:
        try:
            from onnxruntime.capi import _pybind_state

            _pybind_state.set_global_thread_pool_sizes(threads, 1)
            _shared_pool_threads = threads
        except (ImportError, AttributeError, RuntimeError):  # an ORT build without it
            logger.warning("no shared ONNX Runtime thread pool; using one per session")
    elif _shared_pool_threads != threads:
        logger.warning(
            "ONNX Runtime pool already has %d threads; %d asked for", _shared_pool_threads, threads
        )
    return _shared_pool_threads


def session_options(threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    if _shared_pool_threads:
        options.use_per_session_threads = False
    else:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    # Spinning keeps cores busy after a run; the next thing to run on them is
    # this request's own Python work (or the other network), so do not spin.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return options


def open_session(
    path: Path, providers: list[str], threads: int, graph: Path | bytes | None = None
) -> ort.InferenceSession:
    """A session for the model file ``path``; ``graph``: what to load in its
    place (an equivalent rewritten graph, engine.graph), named by ``path``."""
    source = str(path) if graph is None else graph if isinstance(graph, bytes) else str(graph)
    try:
        session = ort.InferenceSession(source, session_options(threads), providers=providers)
    except Exception as exc:  # onnxruntime raises several unrelated types
        raise ModelLoadError(f"{path.name} could not be loaded by ONNX Runtime: {exc}") from exc
    # ONNX Runtime falls back to the CPU on its own when a GPU provider fails to
    # start (missing CUDA or cuDNN libraries); DEVICE=cuda must not do so silently.
    if providers[0] != "CPUExecutionProvider" and session.get_providers()[0] != providers[0]:
        raise ModelLoadError(
            f"{providers[0]} is installed but did not start for {path.name} (check the CUDA and "
            "cuDNN libraries that onnxruntime-gpu needs), or set DEVICE=cpu."
        )
    return session

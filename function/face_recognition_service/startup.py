"""Process start-up: the server's and the Lambda function's init share this."""

from __future__ import annotations

import ctypes
import gc
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# Buffers of one request (the body, the decoded image, the detector's 4-5 MB
# input) come from the heap and are reused by the next request; larger ones
# (a big PNG's full decode) are mapped and returned as soon as they are freed.
MMAP_THRESHOLD = 16 << 20
TRIM_THRESHOLD = 32 << 20


def tune_malloc() -> bool:
    """Fixed glibc malloc thresholds instead of its adaptive ones.

    With the adaptive thresholds, the worker threads that serve requests hand
    their freed buffers back to the kernel and take them again on the next
    request: ~3,200 page faults (12.5 MB) per 12 MP request, detection 11.0 ms
    against ~9 with fixed thresholds (docs/benchmarks.md#large-photos). Leaves an operator's own
    MALLOC_*/GLIBC_TUNABLES settings alone; does nothing off glibc."""
    if not sys.platform.startswith("linux") or any(
        k.startswith("MALLOC_") or k == "GLIBC_TUNABLES" for k in os.environ
    ):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # musl, or no glibc by that name
        return False
    return bool(
        libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) and libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )


def import_fastapi() -> None:
    """Import FastAPI with the pydantic build of its own models left to their
    first use.

    FastAPI defines ~37 pydantic models as it is imported, nearly all of them
    the OpenAPI document's, and pydantic builds each one's validator and
    serializer right then: ~80 ms of every cold start (docs/benchmarks.md#cold-start-and-memory),
    for models only /openapi.json uses. pydantic's ``defer_build``, set on
    ``BaseModel``'s config for the length of this import (a model takes its
    bases' config), builds them when first used instead. Models defined later
    (ours, the settings) are built as usual. The setting is process-wide while
    it lasts: call this where no other thread defines pydantic models (the model
    loader that runs beside it imports no pydantic code)."""
    if "fastapi" in sys.modules:
        return
    from pydantic import BaseModel

    config = BaseModel.model_config
    already = "defer_build" in config
    config["defer_build"] = True
    try:
        import fastapi  # noqa: F401
    finally:
        if not already:
            del config["defer_build"]


@contextmanager
def start_up() -> Iterator[None]:
    """Start-up without the cyclic garbage collector, then frozen.

    Start-up builds ~75,000 objects that live as long as the process (libraries,
    pydantic schemas, the app, the model's sessions) and almost no garbage
    (~1,300 objects): the collector's passes over them are ~35 ms of a ~450 ms
    start (docs/benchmarks.md#cold-start-and-memory). At the end everything built so far moves to
    the permanent generation (``gc.freeze``), so later full collections do not
    walk it again, a pause that shows in health p99. Nested uses leave it to the
    outermost. Also fixes malloc's thresholds (``tune_malloc``)."""
    if not gc.isenabled():
        yield
        return
    tune_malloc()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()

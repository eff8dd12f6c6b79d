"""Process start-up: the server's and the Lambda function's init share this."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def start_up() -> Iterator[None]:
    """Start-up without the cyclic garbage collector, then frozen.

    Start-up builds ~75,000 objects that live as long as the process (libraries,
    pydantic schemas, the app, the model's sessions) and almost no garbage
    (~1,300 objects): the collector's passes over them are ~35 ms of a ~450 ms
    start (BENCHMARKS.md section 4). At the end everything built so far moves to
    the permanent generation (``gc.freeze``), so later full collections do not
    walk it again, a pause that shows in health p99. Nested uses leave it to the
    outermost."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()

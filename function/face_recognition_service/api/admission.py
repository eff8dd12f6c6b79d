"""Admission control for the routes that run the model: a bounded number in
flight, a short bounded queue, and a fast refusal beyond it, so that memory
stays bounded under any load and cheap routes (health) are never starved."""

from __future__ import annotations

import asyncio
import time

from ..config import AdmissionConfig


class Busy(Exception):
    """No turn: the queue is full or the wait ran out."""

    def __init__(self, retry_after: int) -> None:
        super().__init__("busy")
        self.retry_after = retry_after


class Admission:
    @classmethod
    def of(cls, config: AdmissionConfig) -> Admission:
        return cls(config.in_flight, config.max_queued, config.queue_timeout_seconds)

    def __init__(self, in_flight: int, queued: int, timeout_s: float) -> None:
        self.limit = in_flight
        self.max_queued = queued
        self.timeout_s = timeout_s
        self.running = 0
        self.waiting = 0
        self._turn: asyncio.Condition | None = None
        # Recent service time, for Retry-After: how long a turn takes to free up.
        self._recent_s = 0.05

    def _condition(self) -> asyncio.Condition:
        # Created on first use, inside the event loop that serves the requests.
        if self._turn is None:
            self._turn = asyncio.Condition()
        return self._turn

    def retry_after(self) -> int:
        backlog = (self.waiting + self.running) / max(self.limit, 1)
        return max(1, round(backlog * self._recent_s + 0.5))

    async def acquire(self) -> float:
        """Wait for a turn; returns when it started (for the service-time estimate)."""
        if self.running < self.limit and not self.waiting:
            self.running += 1
            return time.perf_counter()
        if self.waiting >= self.max_queued:
            raise Busy(self.retry_after())
        turn = self._condition()
        self.waiting += 1
        try:
            async with turn:
                await asyncio.wait_for(turn.wait_for(lambda: self.running < self.limit), self.timeout_s)
                self.running += 1
        except TimeoutError:
            raise Busy(self.retry_after()) from None
        finally:
            self.waiting -= 1
        return time.perf_counter()

    async def release(self, started: float) -> None:
        self._recent_s = 0.8 * self._recent_s + 0.2 * (time.perf_counter() - started)
        self.running -= 1
        if self._turn is not None:
            async with self._turn:
                self._turn.notify(1)

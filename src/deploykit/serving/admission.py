"""Admission by expected completion: refuse at once what the queue cannot serve in time.

Why: without it, under overload every request waits in arrival order until its deadline and is then
refused — the queue holds only requests that will fail, each answered late, and the few that could be
served in time wait behind them (measured at 4× capacity: ~1 answer/s of 200, a third of the answers
after deadline + 100 ms; docs/serving.md, "Deadlines"). Predicting each request's completion from the
work ahead of it and the measured drain rate lets the server answer 503 at arrival, in microseconds,
and keep the queue to what it can finish before the deadlines.

Hand-written: BentoML's dispatcher cancels only at max_latency after the wait has happened, and its
cost model times the model call alone, not the loop time between batches that bounds the drain rate.
"""

from __future__ import annotations

import math
from typing import Optional

__all__ = ["ServiceTime", "EWMA_ALPHA"]

EWMA_ALPHA = 0.2  # weight of the newest batch: follows a change within ~10 batches, smooths one outlier


class ServiceTime:
    """An EWMA of how long one batch holds the queue, and the completion time it predicts.

    A batch's time runs from the later of the previous batch's end and the moment the queue last
    became non-empty (`waiting_since`): under load requests wait across batches, so the event loop's
    time between batches counts (that is what drains the queue); after an idle spell only the time
    since work arrived counts, not the idle gap (a burst after a pause once read as a batch of
    seconds and refused the burst: 31 images "expected in 607 ms")."""

    __slots__ = ("max_batch_size", "batch_s", "_last_end")

    def __init__(self, max_batch_size: int):
        self.max_batch_size = max_batch_size
        self.batch_s: Optional[float] = None  # unknown until the first batch: admit everything
        self._last_end: Optional[float] = None

    def observe(self, start: float, end: float, waiting_since: Optional[float] = None) -> None:
        """A batch ran from `start` to `end` (perf_counter seconds); `waiting_since`: when the queue
        last went from empty to non-empty (None: the batch's own start)."""
        begun = start if waiting_since is None else min(waiting_since, start)
        if self._last_end is not None:
            begun = max(begun, min(self._last_end, start))
        self._last_end = end
        seconds = max(end - begun, 0.0)
        self.batch_s = seconds if self.batch_s is None else self.batch_s + EWMA_ALPHA * (seconds - self.batch_s)

    def completion(self, now: float, ahead: int, n: int) -> float:
        """When a request of `n` images, with `ahead` images admitted before it (queued or running),
        is expected to be answered: its own batch and every batch ahead of it, at the measured rate."""
        if self.batch_s is None:
            return now
        return now + math.ceil((ahead + n) / self.max_batch_size) * self.batch_s

    def late(self, now: float, deadline: float, ahead: int, n: int) -> bool:
        """Expected past `deadline`. A request with nothing ahead is never late: it runs at once and
        measures the service time again (else one slow batch could refuse everything, for ever)."""
        return ahead > 0 and self.completion(now, ahead, n) > deadline

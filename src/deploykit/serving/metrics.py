"""Prometheus metrics of the prediction endpoints, exported through BentoML's /metrics.

- ``deploykit_request_duration_seconds{endpoint, format, status}``  server time of every answered
  request; its ``_count`` is the request count by status (one metric, not a counter beside it: each
  update is a locked write to a shared file in BentoML's multiprocess mode, a few µs per request)
- ``deploykit_batch_images{format}``                            images per model call (adaptive batching)

Created on first use inside a worker: BentoML sets PROMETHEUS_MULTIPROC_DIR in the worker after the
service module is imported, and prometheus_client must see it when a metric is created.
"""

from __future__ import annotations

from typing import Callable

__all__ = ["ServingMetrics", "LATENCY_BUCKETS_S"]

# Sub-millisecond resolution: an MLP answers in a few hundred microseconds end to end.
LATENCY_BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class ServingMetrics:
    def __init__(self):
        self._made = False
        self._children: dict[tuple, object] = {}  # labelled children, cached: .labels() costs a few µs

    def _make(self) -> None:
        import prometheus_client as prom

        self.duration = prom.Histogram("deploykit_request_duration_seconds",
                                       "Server time of prediction requests (body read to answer), by HTTP status",
                                       ["endpoint", "format", "status"], buckets=LATENCY_BUCKETS_S)
        self.batch = prom.Histogram("deploykit_batch_images", "Images per model call (adaptive batching)",
                                    ["format"], buckets=BATCH_BUCKETS)
        self._made = True

    def _child(self, metric, *labels):
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def observe(self, endpoint: str, fmt: str, status: int, server_us: float) -> None:
        if not self._made:
            self._make()
        self._child(self.duration, endpoint, fmt, str(status)).observe(server_us / 1e6)

    def batch_observer(self, fmt: str) -> Callable[[int, float], None]:
        if not self._made:
            self._make()
        batch = self._child(self.batch, fmt)

        def observe(images: int, compute_us: float) -> None:
            # Compute time per request goes out in X-Inference-Time-Us; every metric update costs
            # microseconds in multiprocess mode (a locked mmap write), so only the batch size is kept.
            batch.observe(images)

        return observe

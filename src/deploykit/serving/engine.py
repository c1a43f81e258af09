"""The inference engine of one server worker: one Runtime predictor behind BentoML's adaptive batching.

Requests are queued into BentoML's CorkDispatcher (the adaptive batching engine behind
``@bentoml.api(batchable=True)``), which merges waiting requests into one model call of at most
``max_batch_size`` images and cancels a request that would wait past ``max_latency_ms``.
The hot path is a mounted Starlette app rather than a ``@bentoml.api`` method, so requests reach
the dispatcher directly rather than through BentoML's pydantic IO layer (the biggest per-request
cost measured here); see docs/serving.md.

Admission control bounds the queue: a worker admits at most ``max_queue`` images (queued + running);
beyond that, and for requests cancelled at the deadline, the answer is 503 with Retry-After. A request
expected to finish past its deadline (or past ``max_latency_ms`` without one), from the images ahead of
it and the measured time per batch (admission.py), is refused at arrival, and again when its batch is
formed, instead of waiting to be refused late.

Where the model runs: a call that takes microseconds (ONNX Runtime, LiteRT, TorchScript on an MLP)
runs inline on the event loop, since handing it to a thread costs more than the call; a slow one
(SavedModel through Python TensorFlow: milliseconds) runs in one worker thread so the loop keeps
accepting and validating requests meanwhile. The choice is made from the warm-up timings
(``INLINE_MAX_MS``). Only one batch runs at a time (the dispatcher's rule), so a predictor that is
not thread-safe is safe here.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from deploykit.serving.admission import ServiceTime
from deploykit.serving.errors import DeadlineExceeded, NotReady, Overloaded
from deploykit.serving.model_input import ServedInput

__all__ = ["Engine", "ModelInfo", "INLINE_MAX_MS", "RESULT_DTYPE"]

# A child of BentoML's logger, so that its server log configuration shows these lines with its own.
logger = logging.getLogger("bentoml.deploykit")

INLINE_MAX_MS = 1.0  # warm-up p50 per call below this: run inline on the event loop
WARMUP_MIN_CALLS = 20
WARMUP_MAX_S = 60.0  # a bound on the warm-up loop, whatever warmup_s says
GC_THRESHOLDS = (10_000, 20, 50)  # Python's default is (700, 10, 10)
DEADLINE_SLACK_S = 0.002


def _result_dtype(classes: int) -> np.dtype:
    # Each output row carries its probabilities, the compute time and the size of the batch it rode in,
    # so the dispatcher's split/merge of large requests (np.split / np.concatenate) keeps them together.
    return np.dtype([("probs", np.float32, (classes,)), ("compute_us", np.float64), ("batch", np.int32)])


RESULT_DTYPE = _result_dtype(10)


@dataclass(frozen=True)
class ModelInfo:
    model: str
    format: str
    runtime: str
    classes: tuple[str, ...]
    model_dir: Path
    artifact: Path
    served: ServedInput  # the input tensor every route hands the engine (from the manifest)


class Engine:
    """Owns the predictor, the batching dispatcher and the ready state of one worker."""

    def __init__(self, info: ModelInfo, *, max_batch_size: int, max_latency_ms: int, max_queue: int,
                 warmup_s: float, retry_after_s: int):
        self.info = info
        self.max_batch_size = max_batch_size
        self.max_latency_ms = max_latency_ms
        self.max_queue = max_queue
        self.warmup_s = warmup_s
        self.retry_after_s = retry_after_s
        self.stage = "loading"  # loading → warming-up → ready | failed
        self.error: Optional[str] = None
        self.inline: Optional[bool] = None
        self.warmup_p50_ms: Optional[float] = None
        self.load_s: Optional[float] = None
        self._predictor = None
        self._dispatch = None
        self._pending = 0
        self._waiting_since: Optional[float] = None  # when _pending last went from 0 to more (admission.py)
        self._service = ServiceTime(max_batch_size)
        self._deadlines: dict[int, float] = {}  # id(input) → deadline of a queued request that has one
        self._dtype = RESULT_DTYPE  # replaced after warm-up by the model's own output width
        self.on_batch = None  # optional callback(images, compute_us), e.g. metrics

    # -- state ------------------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return self.stage == "ready"

    @property
    def alive(self) -> bool:
        return self.stage != "failed"

    def check_ready(self) -> None:
        if self.stage != "ready":
            message = f"model failed to load: {self.error}" if self.stage == "failed" else f"model is {self.stage}; retry later"
            raise NotReady(message, self.retry_after_s)

    # -- start-up ---------------------------------------------------------------------------------
    async def start(self, load) -> None:
        """Load (in a thread: imports and file reads block), warm up, then report ready.

        `load()` returns the predictor. A failure leaves the engine `failed`: readiness and liveness
        report it, and the orchestrator restarts the worker.
        """
        try:
            t0 = time.perf_counter()
            self._predictor = await asyncio.to_thread(load)
            self.load_s = time.perf_counter() - t0
            self.stage = "warming-up"
            await self._warm_up()
            # Everything loaded so far (BentoML, the runtime, the model) lives as long as the process:
            # frozen, it is out of the collector's reach and a full collection scans only what requests
            # create. Serving allocates many short-lived objects per request, so collections also run
            # less often (GC_THRESHOLDS). Measured at c=32 (benchmarks/serve_bench.py): full
            # collections of up to 130 ms and a p99 of ~100 ms before; ~12 ms p99 and ~1/5 of the GC
            # time after.
            gc.freeze()
            gc.set_threshold(*GC_THRESHOLDS)
            self.stage = "ready"
            logger.info("deploykit: %s %s (%s) ready: load %.2f s, warm-up p50 %.3f ms, %s",
                        self.info.model, self.info.format, self.info.runtime, self.load_s,
                        self.warmup_p50_ms, "inline" if self.inline else "in a worker thread")
        except Exception as exc:  # noqa: BLE001 - any load failure must become a failed state, not a dead task
            self.stage = "failed"
            self.error = f"{type(exc).__name__}: {exc}"
            logger.error("deploykit: loading %s %s failed: %s", self.info.model, self.info.format, self.error)

    async def _warm_up(self) -> None:
        """Time the predictor alone (decides inline vs thread), then train the dispatcher's latency
        model with real batched calls, so the first user requests meet a warm, tuned server."""
        served = self.info.served
        one = served.warmup_batch(1)
        times = []
        deadline = time.perf_counter() + min(WARMUP_MAX_S, max(self.warmup_s, 0.0))
        while len(times) < WARMUP_MIN_CALLS or time.perf_counter() < deadline:
            t = time.perf_counter()
            if self.inline is False:
                await asyncio.to_thread(self._predictor.predict, one)
            else:
                self._predictor.predict(one)
            times.append(time.perf_counter() - t)
            if len(times) == 3 and np.median(times) * 1e3 > INLINE_MAX_MS * 20:
                self.inline = False  # clearly slow: warm up through the thread it will run in
            if len(times) >= 10_000:
                break
            if self.inline is False or len(times) % 50 == 0:
                await asyncio.sleep(0)  # let liveness/readiness probes through meanwhile
        # The answer's width is the model's, whatever the manifest lists as classes (it may list none).
        self._dtype = _result_dtype(int(np.shape(self._predictor.predict(one))[1]))
        self.warmup_p50_ms = float(np.median(times[len(times) // 2:]) * 1e3)
        self.inline = self.warmup_p50_ms < INLINE_MAX_MS
        self._make_dispatcher()
        # The dispatcher learns its cost model from its first ~11 calls, waiting for batches of 2
        # and 3 on the way; feed it concurrent requests so that happens now, not on user traffic.
        for i in range(6):
            await asyncio.gather(*(self._dispatch(served.warmup_batch(1, seed=4 * i + k)) for k in range(4)))

    def _make_dispatcher(self) -> None:
        from bentoml._internal.marshal.dispatcher import CorkDispatcher, Optimizer

        class DispatchWhenFree(Optimizer):
            """BentoML's cost model, without its learned deliberate wait.

            The optimizer averages how long requests *happened* to wait and then makes new requests
            wait that long for company. With a model call of microseconds, requests wait only because
            the event loop is busy with other requests, so the learned wait feeds on itself: measured
            here, after a burst at concurrency 32 every request at concurrency 1 was held for
            milliseconds, and it took minutes to decay. With the wait at 0 the dispatcher sends a batch
            as soon as the model is free, made of every request that queued meanwhile (up to
            max_batch_size): batches grow with load by themselves, and a lone request never waits.
            Its deadline (max_latency_ms → 503) and per-image cost estimate are kept.
            """

            def trigger_refresh(self) -> None:
                super().trigger_refresh()
                self.wait = 0.0

        def deadline_passed():
            raise Overloaded(f"request waited over {self.max_latency_ms} ms in the queue; retry later", self.retry_after_s)

        engine = self

        class DropAbandoned(CorkDispatcher):
            """BentoML's dispatcher, but a queued request whose caller stopped waiting (its deadline
            passed), or that would now finish past its deadline, is dropped before batching: BentoML's
            would still compute it."""

            def _get_inputs(self, num_batches=None):
                engine._refuse_late(self._queue)
                if any(job.future.done() for job in self._queue):  # in place: the controller holds the deque
                    keep = [job for job in self._queue if not job.future.done()]
                    self._queue.clear()
                    self._queue.extend(keep)
                return super()._get_inputs(num_batches)

            async def outbound_call(self, inputs_info, training=False):
                if not inputs_info:  # everything queued was abandoned
                    self._sema.release()
                    return
                await super().outbound_call(inputs_info, training)

        dispatcher = DropAbandoned(
            max_latency_in_ms=self.max_latency_ms,
            max_batch_size=self.max_batch_size,
            fallback=deadline_passed,
            get_batch_size=len,
            batch_dim=(0, 0),
        )
        dispatcher.optimizer = DispatchWhenFree(dispatcher.max_latency)
        self._dispatch = dispatcher(self._run_batch)

    async def _run_batch(self, parts: Sequence[np.ndarray]) -> list[np.ndarray]:
        x = parts[0] if len(parts) == 1 else np.concatenate(parts)
        t = time.perf_counter_ns()
        if self.inline:
            probs, run_ns = self._predictor.predict_timed(x)
        else:
            probs, run_ns = await asyncio.to_thread(self._predictor.predict_timed, x)
        end = time.perf_counter_ns()
        # Compute = the runtime call(s) alone (Predictor.predict_timed), as `deploykit bench` times it:
        # not the thread hand-off, input preparation or dequantization around it. Admission's service
        # time is the whole batch, from when it was waited for (admission.py) to its end: what a queued
        # request actually waits for.
        compute_us = run_ns / 1e3
        self._service.observe(t / 1e9, end / 1e9, self._waiting_since)
        if self.on_batch is not None:
            self.on_batch(len(x), compute_us)
        out = np.empty(len(x), self._dtype)
        out["probs"] = probs
        out["compute_us"] = compute_us
        out["batch"] = len(x)
        if len(parts) == 1:
            return [out]
        return np.split(out, np.cumsum([len(p) for p in parts[:-1]]))

    # -- serving ----------------------------------------------------------------------------------
    @property
    def classes(self) -> int:
        """Width of the model's output (known after warm-up)."""
        return int(self._dtype["probs"].shape[0])

    async def infer(self, x: np.ndarray, deadline: Optional[float] = None) -> tuple[np.ndarray, float, int]:
        """N × served.shape → (N×classes probabilities, compute µs of the batch it ran in, that batch's
        images); a request split over several batches gets the largest of each.

        `deadline` (time.perf_counter seconds): past it the request is answered 503 and, if still
        queued, dropped from the queue unrun."""
        self.check_ready()
        now = time.perf_counter()
        if deadline is not None and deadline <= now:
            raise DeadlineExceeded("deadline passed before the request reached the model", self.retry_after_s)
        n = len(x)
        if self._pending + n > self.max_queue:
            raise Overloaded(f"queue full ({self._pending} images waiting, limit {self.max_queue}); retry later",
                             self.retry_after_s)
        self.admit(deadline, n, now)
        if self._pending == 0:
            self._waiting_since = now
        self._pending += n
        if deadline is not None:
            self._deadlines[id(x)] = deadline
        try:
            if self.inline and self._pending == n and n <= self.max_batch_size and await self._alone(n):
                out = (await self._run_batch([x]))[0]
            elif deadline is None:
                out = await self._dispatch(x)
            else:
                out = await asyncio.wait_for(self._dispatch(x), deadline - time.perf_counter())
        except (asyncio.TimeoutError, Overloaded):
            # The loop's timers may fire up to its clock resolution early, and the dispatcher turns the
            # cancellation into its own Overloaded: a deadline within DEADLINE_SLACK_S counts as passed.
            if deadline is not None and time.perf_counter() >= deadline - DEADLINE_SLACK_S:
                raise DeadlineExceeded("deadline passed while the request was queued; dropped", self.retry_after_s) from None
            raise
        finally:
            self._pending -= n
            self._deadlines.pop(id(x), None)
        return out["probs"], float(out["compute_us"].max()), int(out["batch"].max())

    async def _alone(self, n: int) -> bool:
        """Whether a request with nothing queued or running ahead of it is still alone after the loop
        has run every other ready task once: then its batch is itself, and it runs now, inline, rather
        than through the dispatcher's queue, condition, controller task and future (three loop
        iterations; at concurrency 1 that hand-off was a measurable share of each request:
        benchmarks/serve_bench.py). The one yield is what keeps batching under load: requests that
        arrived with it reach the engine meanwhile, find it pending and queue, and then it queues too
        (without the yield, every request ran alone inline at concurrency 32 and batching stopped)."""
        await asyncio.sleep(0)
        return self._pending == n

    def admit(self, deadline: Optional[float], n: int = 1, now: Optional[float] = None) -> None:
        """503 now, rather than late, for a request expected to finish past its deadline (past
        max_latency_ms without one): see admission.py. The app asks before parsing the input too, so
        that a refused request costs no decoding."""
        now = time.perf_counter() if now is None else now
        if self._service.late(now, deadline if deadline is not None else now + self.max_latency_ms / 1e3, self._pending, n):
            wait_ms = (self._service.completion(now, self._pending, n) - now) * 1e3
            message = f"{self._pending} images ahead: expected in {wait_ms:.0f} ms"
            if deadline is not None:
                raise DeadlineExceeded(f"{message}, past the deadline; retry later", self.retry_after_s)
            raise Overloaded(f"{message}, past {self.max_latency_ms} ms; retry later", self.retry_after_s)

    def _refuse_late(self, queue) -> None:
        """When a batch is formed: a queued request that its own batch would now finish past its
        deadline (the measured time per batch grew since it was admitted) is answered 503 at once.
        The head of the queue is kept: it runs now and measures the service time again (dropping it
        too could leave a once-slow estimate refusing everything for ever)."""
        batch_s = self._service.batch_s
        if batch_s is None or not self._deadlines or len(queue) < 2:
            return
        done = time.perf_counter() + batch_s
        for job in itertools.islice(queue, 1, None):
            deadline = self._deadlines.get(id(job.data))
            if deadline is not None and deadline < done and not job.future.done():
                job.future.set_result(DeadlineExceeded("expected to finish past the deadline; dropped from the queue",
                                                       self.retry_after_s))

    def close(self) -> None:
        if self._predictor is not None:
            self._predictor.close()

"""Measuring one artifact in this process: load it, make the first call, time it with
deploykit.bench.protocol, and turn that into a BenchRecord (what each worker process runs).

What is timed: `Predictor.run(tensor)`, the raw runtime call of the same Predictor that validation
and serving load, on a tensor prepared once with `to_input` (reshape, quantize). Input preparation
and output dequantization are outside the timed call, so the figure describes the runtime; each record
says so in `extra["timed"]`.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from deploykit.errors import RuntimeUnavailable
from deploykit.manifest import ArtifactEntry, ModelManifest
from deploykit.results import BenchRecord

from deploykit.bench import protocol
from deploykit.bench.settings import TIMED_CALL, BenchJob

__all__ = ["base_record", "PreparedCall", "prepared_call", "measure_artifact"]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def base_record(manifest: ModelManifest, entry: ArtifactEntry, job: BenchJob, **fields) -> dict:
    """What the manifest already says about the artifact (size, accuracy, parity), for every record."""
    parity = entry.parity
    extra = {"timed": TIMED_CALL, "artifact_status": entry.status, "measured_at": _now()}
    extra.update(fields.pop("extra", {}))
    return dict(
        target=job.device, model=manifest.model, dataset=manifest.dataset.name if manifest.dataset else None,
        format=entry.format, runtime=entry.runtime, device=job.device, threads=job.threads, batch=job.batch,
        artifact_bytes=entry.bytes, accuracy=entry.accuracy,
        max_abs_diff=parity.max_abs_diff if parity else None, top1_agreement=parity.top1_agreement if parity else None,
        extra=extra, **fields,
    )


def _canonical_input(model_dir: Path, manifest: ModelManifest, entry: ArtifactEntry, batch: int):
    """`batch` canonical samples: the model's reference inputs when it has them (real digits), else uniform noise."""
    import numpy as np

    x = None
    if manifest.reference and (model_dir / manifest.reference).is_file():
        with np.load(model_dir / manifest.reference) as ref:
            x = ref["x"]
        x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
        source = manifest.reference
    if x is None or len(x) == 0:
        inner = [d if d is not None else 1 for d in entry.input.shape[1:]]
        x = np.random.default_rng(0).random((batch, *inner), dtype=np.float32)
        source = "uniform noise in [0, 1)"
    reps = -(-batch // len(x))
    return np.concatenate([x] * reps)[:batch] if reps > 1 else x[:batch], source


@dataclass
class PreparedCall:
    """An artifact loaded and ready to time: the call, and the cold-start steps it took to get here."""

    call: object
    sync: Optional[object]
    runtime_version: Optional[str]
    import_ms: float
    load_ms: float
    first_inference_ms: float
    input_source: str
    chunks: Optional[str]
    rss_start_bytes: Optional[int]
    rss_before_load_bytes: Optional[int]


@contextlib.contextmanager
def prepared_call(job: BenchJob):
    """Import the runtime, load the artifact, make the first call: yields a PreparedCall whose `call`
    runs the artifact once on `job.batch` samples (what `bench` and `bench-ab` both time). Raises
    RuntimeUnavailable where the device or runtime is missing here."""
    from deploykit.runtimes import get_runtime, load_artifact
    from deploykit.runtimes.base import to_input

    rss_start = protocol.current_rss_bytes()
    model_dir = Path(job.model_dir)
    manifest = ModelManifest.read(model_dir)
    entry = manifest.artifact(job.format)
    runtime = get_runtime(entry.runtime)
    (ok, why), import_ms = protocol.first_call(lambda: runtime.available(job.device))  # imports the runtime
    if not ok:
        raise RuntimeUnavailable(why)
    rss_before_load = protocol.current_rss_bytes()
    predictor, load_ms = protocol.first_call(
        lambda: load_artifact(model_dir, entry, manifest, device=job.device, threads=job.threads))
    with predictor:
        x, source = _canonical_input(model_dir, manifest, entry, job.batch)
        tensor = to_input(x, entry.input)
        # A fixed-batch artifact is run in chunks of its batch, as Predictor.predict (and serving) does.
        step = predictor.max_batch if predictor.max_batch and job.batch > predictor.max_batch else None
        if step:
            chunks = [tensor[i: i + step] for i in range(0, len(tensor), step)]

            def call():
                for chunk in chunks:
                    predictor.run(chunk)
        else:
            call = functools.partial(predictor.run, tensor)  # C-level binding: no Python frame added to the call
        # GPU runtimes: wait for the device inside the timed region (run() copies to host already; this
        # keeps the figure right for any runtime whose run() returns early). On CPU it is a no-op.
        sync = predictor.synchronize if job.device != "cpu" else None
        _, first_ms = protocol.first_call(call, sync=sync)
        yield PreparedCall(call=call, sync=sync, runtime_version=runtime.version(), import_ms=import_ms,
                           load_ms=load_ms, first_inference_ms=first_ms, input_source=source,
                           chunks=f"{len(chunks)} runs of the artifact's fixed batch {step}" if step else None,
                           rss_start_bytes=rss_start, rss_before_load_bytes=rss_before_load)


def measure_artifact(job: BenchJob, *, isolation: str = "in process",
                     process_start_ms: Optional[float] = None) -> BenchRecord:
    """Load one artifact and measure it (what each worker process runs). Raises DeployKitError for
    an artifact that cannot be measured here (RuntimeUnavailable: the device or runtime is missing).
    `isolation` is recorded: "fresh process" from the worker, "in process" when called directly."""
    with prepared_call(job) as p:
        m = protocol.measure(p.call, warmup_s=job.warmup_s, min_time_s=job.min_time_s, window_s=job.window_s,
                             max_windows=job.max_windows, tolerance=job.tolerance, sync=p.sync,
                             max_time_s=job.max_time_s)
    manifest = ModelManifest.read(job.model_dir)
    entry = manifest.artifact(job.format)
    peak = protocol.peak_rss_bytes()
    extra = {k: m[k] for k in ("calls", "measured_s", "stop_reason", "window_calls", "warmup_calls", "clock",
                               "clock_overhead_us", "tolerance", "min_time_s", "protocol_version")}
    extra.update(input=p.input_source, rss_start_bytes=p.rss_start_bytes,
                 rss_before_load_bytes=p.rss_before_load_bytes, isolation=isolation)
    if p.chunks:
        extra["chunks"] = p.chunks
    cold = (process_start_ms + p.import_ms + p.load_ms + p.first_inference_ms) if process_start_ms is not None else None
    return BenchRecord(**base_record(
        manifest, entry, job, status="ok", runtime_version=p.runtime_version, process_start_ms=process_start_ms,
        import_ms=p.import_ms, load_ms=p.load_ms, first_inference_ms=p.first_inference_ms, cold_start_ms=cold,
        latency=m["latency"], figure_windows=m["figure_windows"], throughput_sps=job.batch * m["calls_per_s"],
        peak_rss_bytes=peak, warmup_s=m["warmup_s"], window_s=m["window_s"], windows=m["windows"],
        window_p50s_us=m["window_p50s_us"], stable=m["stable"], extra=extra))

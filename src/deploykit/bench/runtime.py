"""`deploykit bench`: the in-process runtime benchmark, one record per artifact × batch × threads × device.

What is timed: `Predictor.run(tensor)` — the raw runtime call of the same Predictor that validation
and serving load — on a tensor prepared once with `to_input` (reshape, quantize). Input preparation
and output dequantization are outside the timed call, so the figure describes the runtime; each record
says so in `extra["timed"]`. The timing itself is `deploykit.bench.protocol.measure`.

Isolation: every record is measured in a fresh Python process (`python -m deploykit.bench.runtime`).
- Cold start is only cold once per process: a second SavedModel loaded into a process that already
  imported and initialised TensorFlow loads faster than the first, so `load_ms` and
  `first_inference_ms` would depend on the order of the records.
- The resident-memory high-water mark (VmHWM) never goes down, so a per-record peak needs its own process.
- Thread settings are process-wide and some are fixed once set (TensorFlow's pools after its first op;
  `torch.set_num_threads`): a `--threads` sweep in one process would not do what it says.
- A runtime that crashes (a segfault in native code) takes down its worker, not the benchmark: the
  record says "failed" with the worker's last error line.
The process start per record is not in the latency figures; it is the first step of the cold start,
which a record gives as a user meets it: `process_start_ms` (spawn → deploykit loaded, timed on the
system-wide monotonic clock across the two processes), `import_ms` (the runtime: ~9 s for TensorFlow),
`load_ms`, `first_inference_ms`, and their sum `cold_start_ms`.

Files: `--out` (default `bench-results.json`) holds every record; each model folder also gets
`bench.json` with its own records (merged by (target, format, batch, threads) with earlier runs on
this machine), which `fastest_format` reads — `deploykit serve --format auto` uses it.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from deploykit.errors import DeployKitError, ManifestError, RuntimeUnavailable, UsageError
from deploykit.manifest import MANIFEST_NAME, ArtifactEntry, ModelManifest, find_manifests
from deploykit.results import BenchRecord, ResultsFile, machine_info

from deploykit.bench import protocol

__all__ = [
    "BENCH_FILE",
    "TIMED_CALL",
    "BenchSettings",
    "BenchJob",
    "parse_int_list",
    "resolve_model_dirs",
    "plan_jobs",
    "PreparedCall",
    "prepared_call",
    "measure_artifact",
    "run_bench",
    "write_model_bench_files",
    "fastest_format",
]

BENCH_FILE = "bench.json"
TIMED_CALL = ("Predictor.run on a tensor prepared once with to_input: the raw runtime call; "
              "input preparation and output dequantization are not timed")
DEFAULT_BATCH_SIZES = (1, 8, 32)
DEFAULT_THREADS = (1,)
_WORKER_START_ALLOWANCE_S = 240.0  # import + load + first call before measuring starts (TF on a Pi is slow)


@dataclass
class BenchSettings:
    """The command's settings, recorded in the results file as run."""

    formats: Optional[list[str]] = None  # None: every artifact that passed validation
    batch_sizes: list[int] = field(default_factory=lambda: list(DEFAULT_BATCH_SIZES))
    threads: list[int] = field(default_factory=lambda: list(DEFAULT_THREADS))
    device: str = "cpu"
    min_time_s: float = protocol.DEFAULT_MIN_TIME_S
    warmup_s: float = protocol.DEFAULT_WARMUP_S
    window_s: float = protocol.DEFAULT_WINDOW_S
    max_windows: int = protocol.DEFAULT_MAX_WINDOWS
    tolerance: float = protocol.DEFAULT_TOLERANCE

    def __post_init__(self):
        from deploykit.runtimes import DEVICES

        if self.device not in DEVICES:
            raise UsageError(f"--device {self.device!r}: expected one of {', '.join(DEVICES)}")
        if not self.batch_sizes or any(b < 1 for b in self.batch_sizes):
            raise UsageError(f"batch sizes must be integers ≥ 1, got {self.batch_sizes}")
        if not self.threads or any(t < 1 for t in self.threads):
            raise UsageError(f"thread counts must be integers ≥ 1, got {self.threads}")
        if self.min_time_s <= 0 or self.warmup_s < 0 or self.window_s <= 0:
            raise UsageError("--min-time must be > 0 and --warmup ≥ 0 seconds")
        if self.formats is not None:
            from deploykit.export import EXPORTERS
            from deploykit.errors import unknown_name

            for fmt in self.formats:
                if fmt not in EXPORTERS:
                    raise unknown_name("format", fmt, EXPORTERS)

    @property
    def max_time_s(self) -> float:
        """Bound on one record's measuring time, whatever the windows do."""
        return max(10.0, 20.0 * self.min_time_s)

    def as_dict(self) -> dict:
        d = asdict(self)
        d.update(max_time_s=self.max_time_s, timed=TIMED_CALL, isolation="one fresh process per record",
                 protocol_version=protocol.PROTOCOL_VERSION)
        return d


@dataclass
class BenchJob:
    """One record to measure; plain data so it can be handed to a worker process as JSON."""

    model_dir: str
    format: str
    device: str
    threads: int
    batch: int
    warmup_s: float
    min_time_s: float
    window_s: float
    max_windows: int
    tolerance: float
    max_time_s: float


def parse_int_list(text: str, option: str) -> list[int]:
    """'1,8,32' → [1, 8, 32]; anything else is a usage error naming the option."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or any(v < 1 for v in values):
        raise UsageError(f"{option} {text!r}: expected comma-separated integers ≥ 1, like 1,8,32")
    return list(dict.fromkeys(values))


def resolve_model_dirs(paths: list[str]) -> tuple[list[Path], list[str], set[Path]]:
    """Arguments → model folders (a model folder, a folder of them, a manifest.json, or a BentoML tag).

    Returns (folders, notes, folders from the BentoML store). A regular file that is not a manifest
    (`models/mnist/train-export.json` caught by a shell glob) is skipped with a note; a path that does
    not exist and is not a tag, or a folder without any manifest, is an error.
    """
    from deploykit.store import resolve_model_dir

    dirs: list[Path] = []
    notes: list[str] = []
    stored: set[Path] = set()
    for arg in paths:
        p = Path(arg)
        if p.is_file() and p.name != MANIFEST_NAME:
            notes.append(f"ignored {p}: not a model folder")
        elif p.exists():
            dirs.extend(find_manifests([p]))
        else:
            d = resolve_model_dir(arg)  # a BentoML tag, or a ManifestError naming the argument
            dirs.append(d)
            stored.add(d.resolve())
    unique = list({d.resolve(): d for d in dirs}.values())
    if not unique:
        raise ManifestError(f"no model folder among {', '.join(paths)}")
    return unique, notes, stored


def plan_jobs(model_dirs: list[Path], settings: BenchSettings) -> tuple[list[tuple[ModelManifest, ArtifactEntry, BenchJob]], list[str]]:
    """Every (artifact, threads, batch) to measure, and notes on what was left out and why."""
    jobs, notes = [], []
    for model_dir in model_dirs:
        manifest = ModelManifest.read(model_dir)
        if settings.formats is None:
            entries = manifest.passed
            for a in manifest.artifacts:
                if a.status != "passed":
                    notes.append(f"{manifest.model}/{a.format} not measured: status {a.status}"
                                 f"{' (' + a.error[:120] + ')' if a.error else ''}; name it in --formats to measure it anyway")
        else:
            have = {a.format: a for a in manifest.artifacts}
            entries = [have[f] for f in settings.formats if f in have]
            missing = [f for f in settings.formats if f not in have]
            if missing:
                notes.append(f"{manifest.model} has no {', '.join(missing)} artifact")
        for entry in entries:
            for threads in settings.threads:
                for batch in settings.batch_sizes:
                    jobs.append((manifest, entry, BenchJob(
                        model_dir=str(model_dir), format=entry.format, device=settings.device, threads=threads,
                        batch=batch, warmup_s=settings.warmup_s, min_time_s=settings.min_time_s,
                        window_s=settings.window_s, max_windows=settings.max_windows, tolerance=settings.tolerance,
                        max_time_s=settings.max_time_s)))
    if not jobs:
        asked = ", ".join(settings.formats) if settings.formats else "passed artifacts"
        raise UsageError(f"nothing to measure: no {asked} in {', '.join(map(str, model_dirs))}")
    return jobs, notes


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _base_record(manifest: ModelManifest, entry: ArtifactEntry, job: BenchJob, **fields) -> dict:
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
    return BenchRecord(**_base_record(
        manifest, entry, job, status="ok", runtime_version=p.runtime_version, process_start_ms=process_start_ms,
        import_ms=p.import_ms, load_ms=p.load_ms, first_inference_ms=p.first_inference_ms, cold_start_ms=cold,
        latency=m["latency"], figure_windows=m["figure_windows"], throughput_sps=job.batch * m["calls_per_s"],
        peak_rss_bytes=peak, warmup_s=m["warmup_s"], window_s=m["window_s"], windows=m["windows"],
        window_p50s_us=m["window_p50s_us"], stable=m["stable"], extra=extra))


def _run_worker(job: BenchJob, manifest: ModelManifest, entry: ArtifactEntry) -> BenchRecord:
    """Measure `job` in a fresh process; a crash or a timeout becomes a "failed" record with the reason."""
    timeout = _WORKER_START_ALLOWANCE_S + job.max_time_s + 10 * job.window_s
    with tempfile.TemporaryDirectory(prefix="deploykit-bench-") as tmp:
        out = Path(tmp) / "record.json"
        err = Path(tmp) / "stderr.txt"
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
        cmd = [sys.executable, "-m", "deploykit.bench.runtime", json.dumps(asdict(job)), str(out),
               str(time.monotonic_ns())]
        with open(err, "w") as err_f:
            try:
                proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err_f,
                                      env=env, timeout=timeout)
            except subprocess.TimeoutExpired:
                return BenchRecord(**_base_record(manifest, entry, job, status="failed",
                                                  reason=f"worker timed out after {timeout:.0f} s"))
        if out.is_file():
            return BenchRecord.model_validate_json(out.read_text())
        lines = [ln for ln in err.read_text(errors="replace").splitlines() if ln.strip()]
        last = lines[-1].strip() if lines else "no error output"
        return BenchRecord(**_base_record(manifest, entry, job, status="failed",
                                          reason=f"worker exited with {proc.returncode}: {last[:400]}"))


def _worker_main(argv: list[str]) -> int:
    # argv[2]: the parent's monotonic clock at spawn (CLOCK_MONOTONIC is system-wide, so the two
    # processes' readings subtract): interpreter start + deploykit's own imports.
    started_ms = (time.monotonic_ns() - int(argv[2])) / 1e6 if len(argv) > 2 else None
    job = BenchJob(**json.loads(argv[0]))
    out = Path(argv[1])
    try:
        record = measure_artifact(job, isolation="fresh process", process_start_ms=started_ms)
    except RuntimeUnavailable as exc:
        manifest = ModelManifest.read(job.model_dir)
        record = BenchRecord(**_base_record(manifest, manifest.artifact(job.format), job, status="unavailable",
                                            reason=str(exc)))
    except DeployKitError as exc:  # e.g. a checksum mismatch: the artifact is not what the manifest says
        manifest = ModelManifest.read(job.model_dir)
        record = BenchRecord(**_base_record(manifest, manifest.artifact(job.format), job, status="failed",
                                            reason=str(exc)))
    out.write_text(record.model_dump_json())
    return 0


def _gpu_name() -> Optional[str]:
    """The GPU's name from nvidia-smi, where there is one (recorded with cuda runs)."""
    if not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip().replace("\n", "; ") or None


def run_bench(paths: list[str], settings: BenchSettings, reporter=None) -> tuple[ResultsFile, dict[Path, ResultsFile]]:
    """Measure every planned record; returns (all records, per model folder its own records; model
    folders inside the BentoML store are left out of the second, since store entries are immutable).

    `reporter` has the pipeline's Reporter methods (note, stage, advance, done), or None.
    """
    from deploykit.runtimes import get_runtime

    model_dirs, notes, stored = resolve_model_dirs(paths)
    jobs, plan_notes = plan_jobs(model_dirs, settings)
    notes += plan_notes
    machine = machine_info()
    if settings.device != "cpu":
        machine.gpu = _gpu_name()
    for n in notes:
        if reporter:
            reporter.note(n)
    # Device availability is a property of the runtime: ask once per runtime, in this process, and
    # record "unavailable" with its reason without starting a worker per record.
    availability: dict[str, tuple[bool, str]] = {}
    records: list[BenchRecord] = []
    by_dir: dict[Path, list[BenchRecord]] = {}
    if reporter:
        reporter.stage(f"bench on {settings.device}", total=len(jobs))
    for manifest, entry, job in jobs:
        if settings.device != "cpu" and entry.runtime not in availability:
            availability[entry.runtime] = get_runtime(entry.runtime).available(settings.device)
        ok, why = availability.get(entry.runtime, (True, ""))
        if entry.status == "failed":
            record = BenchRecord(**_base_record(manifest, entry, job, status="failed",
                                                reason=f"artifact failed export or validation: {entry.error or 'see manifest'}"))
        elif not ok:
            record = BenchRecord(**_base_record(manifest, entry, job, status="unavailable", reason=why))
        else:
            record = _run_worker(job, manifest, entry)
        records.append(record)
        by_dir.setdefault(Path(job.model_dir), []).append(record)
        if reporter:
            p50 = f"p50 {record.latency.p50_us:,.1f} µs" if record.latency else record.status
            reporter.advance(f"{manifest.model}/{entry.format} b{job.batch} t{job.threads}: {p50}")
    if reporter:
        reporter.done()
    unavailable = sorted({f"{r.runtime}: {r.reason}" for r in records if r.status == "unavailable"})
    notes += [f"unavailable on {settings.device}: {u}" for u in unavailable]
    unstable = [f"{r.model}/{r.format} b{r.batch} t{r.threads}" for r in records if r.status == "ok" and not r.stable]
    if unstable:
        notes.append(f"windows did not agree within {settings.tolerance:.0%} (figures kept, stable=false): "
                     + ", ".join(unstable))
    if stored:
        notes.append(f"no {BENCH_FILE} written into BentoML store entries (they are immutable): "
                     + ", ".join(sorted(map(str, stored))))
    settings_d = settings.as_dict()
    results = ResultsFile(kind="bench", machine=machine, settings=settings_d, notes=notes, records=records,
                          manifests=[str(d) for d in model_dirs])
    per_model = {}
    for d, recs in by_dir.items():
        if d.resolve() in stored:
            continue
        model = recs[0].model
        per_model[d] = ResultsFile(kind="bench", machine=machine, settings=settings_d, records=recs,
                                   notes=[n for n in notes if model in n], manifests=[str(d)])
    return results, per_model


def _key(r: BenchRecord) -> tuple:
    return (r.target, r.format, r.batch, r.threads)


def write_model_bench_files(per_model: dict[Path, ResultsFile]) -> list[Path]:
    """Write MODEL_DIR/bench.json for each model folder, keeping earlier records from this machine for
    combinations this run did not measure (a `--device cuda` run does not erase the CPU figures)."""
    from deploykit.results import read_results

    written = []
    for model_dir, new in per_model.items():
        path = Path(model_dir) / BENCH_FILE
        records = list(new.records)
        if path.is_file():
            try:
                old = read_results(path)
            except ManifestError:
                old = None  # an unreadable old file is replaced, not merged
            if old is not None and old.machine.hostname == new.machine.hostname:
                fresh = {_key(r) for r in records}
                records = [r for r in old.records if _key(r) not in fresh] + records
        written.append(new.model_copy(update={"records": records}).write(path))
    return written


def fastest_format(model_dir: Path | str, *, target: str = "cpu", batch: int = 1) -> Optional[str]:
    """The passed artifact with the lowest p50 at `batch` on `target` in MODEL_DIR/bench.json, or None
    when there is no such measurement (serving's `--format auto`)."""
    from deploykit.results import read_results

    path = Path(model_dir) / BENCH_FILE
    if not path.is_file():
        return None
    passed = {a.format for a in ModelManifest.read(model_dir).passed}
    candidates = [r for r in read_results(path).records
                  if r.status == "ok" and r.target == target and r.batch == batch and r.format in passed and r.latency]
    from deploykit.fastest import fastest_group

    group = fastest_group(candidates)
    return group[0].format if group else None


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1:]))

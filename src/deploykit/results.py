"""Results files: what `bench`, `loadtest` and `edge bench` write and `report` reads (one schema).

Every figure says how it was measured: the machine, the target (this CPU, a GPU, a device, or an
emulation of one), runtime versions, threads, batch, warm-up and windows. Something that could not
be measured is a record with status "unavailable" and the reason, never an absent row.
"""

from __future__ import annotations

import os
import platform
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from deploykit import __version__
from deploykit.errors import ManifestError
from deploykit.manifest import atomic_write_text

__all__ = [
    "RESULTS_SCHEMA_VERSION",
    "MachineInfo",
    "LatencyStats",
    "BenchRecord",
    "LoadStep",
    "TrainingRun",
    "TrainingRecord",
    "ResultsFile",
    "ABComparison",
    "ABResultsFile",
    "machine_info",
    "read_results",
]

RESULTS_SCHEMA_VERSION = 1


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _FileModel(_Model):
    def write(self, path: Union[str, Path]) -> Path:
        path = Path(path)
        atomic_write_text(path, self.model_dump_json(indent=2) + "\n")
        return path


class MachineInfo(_Model):
    hostname: str
    cpu_model: str
    cores_logical: int
    cores_physical: Optional[int] = None
    memory_bytes: Optional[int] = None
    os: str
    python: str
    board: Optional[str] = Field(None, description="/proc/device-tree/model on boards that have it")
    gpu: Optional[str] = None
    extra: dict = Field(default_factory=dict, description="clock, temperature, throttling… (edge devices)")


class LatencyStats(_Model):
    """Latency in microseconds over `samples` timed calls (or requests).

    A tail percentile is null when too few samples lie behind it (bench: p90 needs 100, p99 1,000,
    p99.9 10,000); `withheld` then names the field and the reason."""

    samples: int
    p50_us: float
    p90_us: Optional[float] = None
    p99_us: Optional[float] = None
    p999_us: Optional[float] = None
    mean_us: float
    std_us: float
    min_us: float
    max_us: float
    withheld: dict[str, str] = Field(default_factory=dict, description="field → why it is null, e.g. 'too few samples: 59 < 1,000'")
    p50_ci_us: Optional[list[float]] = Field(
        None, description="[low, high] 95 % interval of p50: bootstrap over the measurement windows")


class BenchRecord(_Model):
    """One artifact × configuration, measured in process (bench, edge bench)."""

    target: str = Field(description="what ran it: 'cpu', 'cuda', 'edge:<name>', 'emulated:<profile>'")
    emulated: bool = False
    label: Optional[str] = Field(None, description="e.g. 'emulated on <this CPU>, not a device measurement'")
    model: str
    dataset: Optional[str] = None
    format: str
    runtime: str
    runtime_version: Optional[str] = None
    device: str = "cpu"
    threads: Optional[int] = None
    batch: int
    status: Literal["ok", "unavailable", "failed"]
    reason: Optional[str] = None
    process_start_ms: Optional[float] = Field(
        None, description="cold start, step 1: worker process spawned → deploykit loaded, before the runtime import")
    import_ms: Optional[float] = Field(None, description="cold start, step 2: importing the runtime (TensorFlow, torch…)")
    load_ms: Optional[float] = Field(None, description="cold start, step 3: loading the artifact")
    first_inference_ms: Optional[float] = Field(None, description="cold start, step 4: the first call")
    cold_start_ms: Optional[float] = Field(
        None, description="process start + import + load + first call: what a user waits for the first answer")
    latency: Optional[LatencyStats] = None
    throughput_sps: Optional[float] = Field(None, description="samples per second (batch × calls / time)")
    peak_rss_bytes: Optional[int] = None
    warmup_s: Optional[float] = None
    window_s: Optional[float] = None
    windows: Optional[int] = None
    window_p50s_us: list[float] = Field(default_factory=list)
    figure_windows: Optional[int] = Field(
        None, description="latency and throughput come from the last N windows (the steady run); earlier ones settled")
    stable: Optional[bool] = Field(
        None, description="the windows the figures come from (≥ 3) agreed within the tolerance (10 %)")
    artifact_bytes: Optional[int] = None
    accuracy: Optional[float] = None
    max_abs_diff: Optional[float] = None
    top1_agreement: Optional[float] = None
    compat: Optional[dict] = Field(None, description="edge compatibility verdict for this artifact")
    extra: dict = Field(default_factory=dict)


class LoadStep(_Model):
    """One step of an HTTP load test (a concurrency in closed loop, or a rate in open loop)."""

    mode: Literal["closed", "open"]
    concurrency: Optional[int] = None
    rate_rps: Optional[float] = None
    arrival: Optional[Literal["constant", "poisson"]] = None
    duration_s: float
    warmup_s: float
    requests: int
    errors: int
    errors_by_status: dict[str, int] = Field(default_factory=dict)
    throughput_rps: float
    latency: Optional[LatencyStats] = None
    server_time: Optional[LatencyStats] = Field(None, description="from the server's inference-time header")
    answer_time: Optional[LatencyStats] = Field(
        None, description="every answer with an HTTP status, errors included, timed as latency (withheld with it)")
    corrected: bool = Field(False, description="latency measured from each request's scheduled send time")
    send_lag: Optional[LatencyStats] = Field(
        None, description="open loop: sent − max(scheduled, connection free): the load generator's own lateness")
    valid: bool = Field(True, description="false: the load generator could not keep the schedule; latency withheld")
    invalid_reason: Optional[str] = Field(None, description="why the step is invalid, with the figures that decided it")


class TrainingRun(_Model):
    """One repeat of one training variant (compare-training), as its child process measured it."""

    repeat: int
    epoch_s: list[float] = Field(description="wall seconds of each epoch, first one included")
    train_loss: list[float] = Field(default_factory=list, description="mean training loss of each epoch")
    test_accuracy: float
    test_loss: float = Field(description="mean cross-entropy on the test set, from the probabilities")
    peak_rss_bytes: int = Field(description="the process's peak resident memory after training and evaluation")
    import_s: Optional[float] = Field(None, description="importing the framework(s) in the fresh process")
    log_dir: Optional[str] = Field(None, description="this run's TensorBoard folder")


class TrainingRecord(_Model):
    """One training variant × network (compare-training): figures over its repeats, or why there are none."""

    variant: str
    net: str = Field(description="mlp | cnn")
    framework: str
    style: str = Field(description="what this variant varies: model API, loop, execution mode, backend, processes")
    description: str
    status: Literal["ok", "unavailable", "failed"]
    reason: Optional[str] = None
    processes: int = 1
    epochs: int
    batch_size: int
    train_samples: int
    test_samples: int
    threads: int = Field(description="the thread budget every variant got (see thread_settings)")
    thread_settings: dict = Field(default_factory=dict, description="CPUs pinned, environment and framework APIs as set")
    versions: dict[str, str] = Field(default_factory=dict)
    first_epoch_s: Optional[float] = Field(None, description="median over repeats; holds tracing and compilation")
    steady_epoch_s: Optional[float] = Field(
        None, description="median over repeats of each run's median epoch after the first; null with one epoch")
    steady_epoch_s_range: Optional[list[float]] = Field(None, description="[min, max] over repeats")
    samples_per_s: Optional[float] = Field(None, description="train_samples / steady_epoch_s (first epoch without one)")
    peak_rss_bytes: Optional[int] = Field(None, description="largest over repeats")
    test_accuracy: Optional[float] = Field(None, description="median over repeats")
    test_accuracy_range: Optional[list[float]] = None
    test_loss: Optional[float] = Field(None, description="median over repeats")
    scaling: Optional[float] = Field(
        None, description="distributed runs: steady seconds/epoch of the one-process variant ÷ this one's")
    runs: list[TrainingRun] = Field(default_factory=list)
    artifacts: list[dict] = Field(
        default_factory=list, description="exported artifacts (Paddle's ONNX; every format under train-export "
        "--variants): format, status (passed/exported/failed/not exported), error, manifest, accuracy, parity")
    extra: dict = Field(default_factory=dict, description="what the framework resolved, e.g. jit_compile")

    @model_validator(mode="before")
    @classmethod
    def _one_artifact_to_rows(cls, data):
        """Files written before `artifacts` held one `artifact` (Paddle's ONNX): read it as one row."""
        if isinstance(data, dict) and "artifact" in data and "artifacts" not in data:
            data = dict(data)
            one = data.pop("artifact")
            data["artifacts"] = [one] if one else []
        return data


class ResultsFile(_FileModel):
    schema_version: int = RESULTS_SCHEMA_VERSION
    kind: Literal["bench", "loadtest", "edge-bench", "edge-check", "compare-training"]
    created_at: str = Field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    deploykit_version: str = __version__
    machine: MachineInfo
    settings: dict = Field(default_factory=dict, description="the command's settings, as run")
    notes: list[str] = Field(default_factory=list, description="e.g. core pinning, emulation, unavailability")
    records: list[BenchRecord] = Field(default_factory=list)
    steps: list[LoadStep] = Field(default_factory=list)
    training: list[TrainingRecord] = Field(default_factory=list, description="compare-training records")
    url: Optional[str] = None
    manifests: list[str] = Field(default_factory=list, description="model folders the records came from")


class ABComparison(_Model):
    """One configuration measured interleaved: baseline and candidate windows alternately (bench-ab)."""

    format: str
    batch: int
    threads: Optional[int] = None
    device: str = "cpu"
    baseline_model: str
    candidate_model: str
    status: Literal["ok", "failed"]
    reason: Optional[str] = None
    verdict: Optional[Literal["regression", "improvement", "within noise"]] = None
    ratio: Optional[float] = Field(None, description="candidate / baseline p50: median of the paired windows' ratios")
    ratio_ci: Optional[list[float]] = Field(None, description="[low, high] 95 % interval of ratio: bootstrap over pairs")
    rounds: Optional[int] = None
    stop_reason: Optional[Literal["narrow", "max_rounds"]] = Field(
        None, description="'narrow': the interval got within the target width; 'max_rounds': the bound came first")
    window_s: Optional[float] = None
    cpu: Optional[int] = Field(None, description="the one CPU both workers were pinned to (null: not pinned)")
    baseline: dict = Field(default_factory=dict, description="python, runtime_version, window_p50s_us, latency")
    candidate: dict = Field(default_factory=dict, description="python, runtime_version, window_p50s_us, latency")


class ABResultsFile(_FileModel):
    schema_version: int = RESULTS_SCHEMA_VERSION
    kind: Literal["bench-ab"] = "bench-ab"
    created_at: str = Field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    deploykit_version: str = __version__
    machine: MachineInfo
    rule: str = Field(description="how the verdict is decided")
    settings: dict = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)
    comparisons: list[ABComparison] = Field(default_factory=list)


def read_results(path: Union[str, Path]) -> ResultsFile:
    path = Path(path)
    try:
        return ResultsFile.model_validate_json(path.read_text())
    except FileNotFoundError as exc:
        raise ManifestError(f"no results file at {path}") from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ManifestError(f"{path}: not a deploykit results file ({where}: {first['msg']})") from exc
    except ValueError as exc:
        raise ManifestError(f"{path}: unreadable results file: {exc}") from exc


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "processor\t: arm")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> MachineInfo:
    """Facts about this machine, recorded with every figure measured on it."""
    import psutil

    board = None
    model_file = Path("/proc/device-tree/model")
    if model_file.exists():
        board = model_file.read_bytes().rstrip(b"\0").decode(errors="replace")
    return MachineInfo(
        hostname=socket.gethostname(),
        cpu_model=_cpu_model(),
        cores_logical=os.cpu_count() or 1,
        cores_physical=psutil.cpu_count(logical=False),
        memory_bytes=psutil.virtual_memory().total,
        os=f"{platform.system()} {platform.release()} ({platform.platform()})",
        python=platform.python_version(),
        board=board,
    )

"""The merged comparison `deploykit report --out report.json` writes (and the HTML/Markdown render).

One `Report` holds every input the report read (`sources`, each with the machine it describes), one
`LatencyRow` per measured (or unmeasurable) artifact × configuration, one `LoadRow` per HTTP load
step, the training comparison from manifests and train-export runs, and, with `--baseline`, the
verdict for every matching configuration. `docs/results-schema.md` documents it; its JSON Schema is
`Report.model_json_schema()` (refresh the document with `python -m deploykit.report.schema_doc docs/results-schema.md`).
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from deploykit.results import LatencyStats, MachineInfo

__all__ = [
    "REPORT_SCHEMA_VERSION",
    "SourceKind",
    "Source",
    "Compat",
    "LatencyRow",
    "LoadRow",
    "FrameworkRow",
    "ArtifactRow",
    "TrainingRow",
    "TrainRun",
    "BaselineDiff",
    "BaselineSummary",
    "Recommendation",
    "ParetoEntry",
    "ParetoChoices",
    "Decisions",
    "Report",
]

REPORT_SCHEMA_VERSION = 1

SourceKind = Literal["bench", "loadtest", "edge-bench", "edge-check", "compare-training", "train-export", "manifest"]
Verdict = Literal["regression", "improvement", "within noise", "new", "missing", "not comparable"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Source(_Model):
    """One file the report read; every row names its source, so every figure leads to its machine."""

    id: str = Field(description="'S1', 'S2', … for inputs; 'B1', … for baseline files")
    role: Literal["current", "baseline"] = "current"
    path: str
    kind: SourceKind
    created_at: Optional[str] = None
    deploykit_version: Optional[str] = None
    machine: Optional[MachineInfo] = Field(None, description="absent for manifests and train-export runs")
    settings: dict = Field(default_factory=dict, description="the measuring command's settings, as run")
    notes: list[str] = Field(default_factory=list)
    url: Optional[str] = Field(None, description="the endpoint a load test measured")


class Compat(_Model):
    """An edge-check verdict for one artifact on one target runtime, normalised from `BenchRecord.compat`."""

    verdict: str = Field(description="'compatible', 'incompatible', … as the edge check wrote it")
    ok: Optional[bool] = Field(None, description="True when the verdict says the artifact runs there")
    detail: Optional[str] = Field(None, description="why (unsupported ops, runtime version, …)")
    source: str = Field(description="the id of the edge-check source")
    raw: dict = Field(default_factory=dict, description="the record's compat object as written")


class LatencyRow(_Model):
    """One artifact × target × batch × threads: a bench, edge-bench or edge-check record, flattened."""

    source: str = Field(description="Source.id of the results file")
    kind: Literal["bench", "edge-bench", "edge-check"]
    machine: str = Field(description="short machine label: CPU model (hostname)")
    host: str = Field(description="the machine's hostname")
    target: str
    emulated: bool = False
    label: Optional[str] = None
    dataset: Optional[str] = None
    model: str
    format: str
    runtime: str
    runtime_version: Optional[str] = None
    device: str
    threads: Optional[int] = None
    batch: int
    status: Literal["ok", "unavailable", "failed"]
    reason: Optional[str] = None
    latency: Optional[LatencyStats] = None
    throughput_sps: Optional[float] = None
    process_start_ms: Optional[float] = Field(None, description="cold start: process spawn → deploykit loaded")
    import_ms: Optional[float] = Field(None, description="cold start: the runtime's import")
    load_ms: Optional[float] = None
    first_inference_ms: Optional[float] = None
    cold_start_ms: Optional[float] = Field(None, description="process start + import + load + first call")
    peak_rss_bytes: Optional[int] = None
    warmup_s: Optional[float] = None
    window_s: Optional[float] = None
    windows: Optional[int] = None
    figure_windows: Optional[int] = Field(None, description="the figures come from the last N windows")
    window_spread: Optional[float] = Field(None, description="(max − min) / median of the p50s of the windows the "
                                           "figures come from")
    stable: Optional[bool] = None
    artifact_bytes: Optional[int] = None
    accuracy: Optional[float] = None
    max_abs_diff: Optional[float] = None
    top1_agreement: Optional[float] = None
    compat: Optional[Compat] = None
    check_compat: Optional[Compat] = Field(None, description="an edge check's verdict for a row that has its own")
    verdicts_disagree: bool = Field(False, description="the row's own verdict and the edge check's differ")
    extra: dict = Field(default_factory=dict)


class LoadRow(_Model):
    """One HTTP load-test step with the client's and the server's view of latency."""

    source: str
    machine: str
    host: str
    url: Optional[str] = None
    mode: Literal["closed", "open"]
    concurrency: Optional[int] = None
    rate_rps: Optional[float] = None
    arrival: Optional[str] = None
    duration_s: float
    warmup_s: float
    requests: int
    errors: int
    errors_by_status: dict[str, int] = Field(default_factory=dict)
    throughput_rps: float
    latency: Optional[LatencyStats] = None
    server_time: Optional[LatencyStats] = None
    answer_time: Optional[LatencyStats] = Field(None, description="every answer with a status, errors included")
    corrected: bool = False
    send_lag: Optional[LatencyStats] = None
    valid: bool = True
    invalid_reason: Optional[str] = None


class ArtifactRow(_Model):
    """One exported artifact as its manifest records it."""

    format: str
    runtime: str
    status: str
    bytes: int
    accuracy: Optional[float] = None
    max_abs_diff: Optional[float] = None
    top1_agreement: Optional[float] = None
    export_seconds: Optional[float] = None
    validate_seconds: Optional[float] = None
    error: Optional[str] = None


class TrainingRow(_Model):
    """One trained model: how long training took and how accurate it is, per framework and API."""

    source: str
    path: str = Field(description="the model folder")
    dataset: Optional[str] = None
    data_source: Optional[str] = Field(None, description="where the data came from, and how many samples")
    model: str
    framework: str
    architecture: str
    api: Optional[str] = Field(None, description="sequential | functional | subclass | nn.Module")
    epochs: Optional[int] = None
    batch_size: Optional[int] = None
    train_seconds: Optional[float] = None
    seconds_per_epoch: Optional[float] = None
    accuracy: Optional[float] = None
    loss: Optional[float] = None
    artifacts: list[ArtifactRow] = Field(default_factory=list)


class TrainRun(_Model):
    """A `train-export.json`: wall time of one run, broken down by stage."""

    source: str
    dataset: str
    wall_seconds: Optional[float] = None
    stages: dict[str, float] = Field(default_factory=dict, description="'data', 'train:<model>', 'export:<model>:<fmt>', …")
    failed: list[str] = Field(default_factory=list)
    missing_manifests: list[str] = Field(default_factory=list, description="listed by the run but not found")


class BaselineDiff(_Model):
    """One configuration compared with the baseline (p50 decides; p99 and throughput are shown)."""

    key: dict = Field(description="dataset, model, format, target, batch, threads (bench) or url path, mode, concurrency, rate (loadtest)")
    kind: Literal["bench", "loadtest"]
    source: Optional[str] = Field(None, description="current Source.id")
    baseline_source: Optional[str] = None
    old_p50_us: Optional[float] = None
    new_p50_us: Optional[float] = None
    old_p99_us: Optional[float] = None
    new_p99_us: Optional[float] = None
    old_throughput: Optional[float] = None
    new_throughput: Optional[float] = None
    change: Optional[float] = Field(None, description="new p50 / old p50 − 1")
    noise: Optional[float] = Field(None, description="the threshold: the intervals' required separation (10 %) "
                                   "where both records carry p50 intervals, else max(10 %, window spreads) for |change|")
    separation: Optional[float] = Field(None, description="how far the p50 intervals lie apart (+ slower, − faster, "
                                        "0 overlapping); null where a record has no interval")
    verdict: Verdict
    note: Optional[str] = None


class BaselineSummary(_Model):
    rule: str = Field(description="the noise rule, in words")
    counts: dict[str, int] = Field(default_factory=dict, description="verdict → number of configurations")
    diffs: list[BaselineDiff] = Field(default_factory=list)


class Recommendation(_Model):
    """One model on one target: the format to serve and the numbers behind it (report.decide)."""

    dataset: Optional[str] = None
    model: str
    target: str = Field(description="the target as the report titles it (`cpu`, `rpi4 (emulated)`, …)")
    host: str
    emulated: bool = False
    batch: int = Field(description="the smallest batch measured, where every recommendation is made")
    format: str = Field(description="the recommended format")
    p50_us: float
    p50_ci_us: Optional[list[float]] = None
    accuracy: Optional[float] = None
    artifact_bytes: Optional[int] = None
    reference_format: Optional[str] = Field(None, description="what accuracy and size are stated against")
    accuracy_change_pp: Optional[float] = Field(None, description="accuracy − the reference's, percentage points")
    size_ratio: Optional[float] = Field(None, description="size / the reference's size")
    tied_with: list[str] = Field(default_factory=list, description="formats within noise of the fastest")
    reason: str = Field(description="fastest beyond noise | the only format measured | tied (chosen for accuracy, then size)")
    next_format: Optional[str] = Field(None, description="the fastest format not tied with the pick")
    next_p50_us: Optional[float] = None
    text: str = Field(description="the line the HTML and Markdown reports print")


class ParetoEntry(_Model):
    model: str
    format: str
    label: str = Field(description="model/format, as the Pareto plot labels the point")
    p50_us: float
    p50_ci_us: Optional[list[float]] = None
    artifact_bytes: Optional[int] = None
    accuracy: Optional[float] = None
    optimal: bool = Field(description="no other point is at least as fast (or tied), small and accurate, and better in one")
    dominated_by: Optional[str] = Field(None, description="label of a point that dominates this one")


class ParetoChoices(_Model):
    target: str
    host: str
    machine: str
    emulated: bool = False
    batch: int
    points: list[ParetoEntry] = Field(default_factory=list, description="Pareto-optimal first, then by p50")


class Decisions(_Model):
    """The report's "which one" section as data: recommendations and Pareto tables."""

    rule: str = Field(description='the tie rule behind "fastest" and "tied", in words')
    recommendations: list[Recommendation] = Field(default_factory=list)
    pareto: list[ParetoChoices] = Field(default_factory=list)


class FrameworkRow(_Model):
    """One compare-training record, beside the deployment latency of the same network's artifacts."""

    source: str = Field(description="Source.id of the compare-training results file")
    variant: str
    net: str
    framework: str
    style: str
    processes: int = 1
    status: Literal["ok", "unavailable", "failed"]
    reason: Optional[str] = None
    epochs: int
    first_epoch_s: Optional[float] = None
    steady_epoch_s: Optional[float] = None
    steady_epoch_s_range: Optional[list[float]] = None
    samples_per_s: Optional[float] = None
    peak_rss_bytes: Optional[int] = None
    test_accuracy: Optional[float] = None
    test_loss: Optional[float] = None
    scaling: Optional[float] = None
    deploy_model: str = Field(description="the model folder whose artifacts serve this network")
    deploy_p50_us: dict[str, float] = Field(
        default_factory=dict, description="format → batch-1 p50 (µs) of that model's artifacts, from bench results in the report")


class Report(_Model):
    schema_version: int = REPORT_SCHEMA_VERSION
    generated_at: str
    deploykit_version: str
    sources: list[Source] = Field(default_factory=list)
    rows: list[LatencyRow] = Field(default_factory=list)
    load_steps: list[LoadRow] = Field(default_factory=list)
    training: list[TrainingRow] = Field(default_factory=list)
    train_runs: list[TrainRun] = Field(default_factory=list)
    frameworks: list[FrameworkRow] = Field(default_factory=list, description="compare-training records")
    article_figures: list[dict] = Field(
        default_factory=list, description="the source articles' published figures, theirs, shown beside ours")
    baseline: Optional[BaselineSummary] = None
    decisions: Optional[Decisions] = Field(None, description="recommendations and Pareto tables (report.decide)")
    notes: list[str] = Field(default_factory=list, description="what the report could not use, and why")

    def source(self, source_id: str) -> Source:
        return next(s for s in self.sources if s.id == source_id)

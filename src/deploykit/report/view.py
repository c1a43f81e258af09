"""Display helpers shared by the HTML and Markdown templates: number formats, the format × target
pivot per batch, "how it was measured" lines, and the training comparison tables."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from deploykit.console import human_bytes
from deploykit.fastest import fastest_group, speed_marks
from deploykit.report.schema import LatencyRow, Report, Source, TrainingRow, TrainRun

__all__ = [
    "fmt_us", "fmt_tail", "fmt_ci", "cold_start", "fmt_rate", "fmt_bytes", "fmt_pct", "fmt_change", "fmt_diff", "fmt_s", "fmt_mem",
    "Column", "column_of", "Cell", "PivotRow", "Pivot", "pivots", "measured", "machine_lines", "settings_line",
    "ModelSummary", "training_summaries", "StageTable", "stage_tables", "OpProfile", "op_profiles", "FILTERS",
]


def fmt_us(v: Optional[float]) -> str:
    if v is None:
        return "—"
    if v < 10:
        return f"{v:.2f} µs"
    if v < 1000:
        return f"{v:.1f} µs"
    if v < 1_000_000:
        return f"{v / 1000:.2f} ms"
    return f"{v / 1e6:.2f} s"


def fmt_tail(lat, field: str) -> str:
    """A tail percentile, or "too few samples" where the record withheld it (a p99 of 59 calls is their max)."""
    if lat is None:
        return "—"
    v = getattr(lat, field)
    if v is None and field in lat.withheld:
        return "too few samples"
    return fmt_us(v)


def fmt_ci(lat) -> str:
    """p50's 95 % interval as "lo–hi", or "" where the record has none."""
    if lat is None or not lat.p50_ci_us:
        return ""
    lo, hi = lat.p50_ci_us
    return f"{fmt_us(lo)}–{fmt_us(hi)}"


def cold_start(r: LatencyRow) -> str:
    """Process start + runtime import + load + first call, in ms, each step where measured."""
    steps = [(r.process_start_ms, "start"), (r.import_ms, "import"), (r.load_ms, "load"), (r.first_inference_ms, "1st")]
    parts = [f"{v:,.1f} {name}" for v, name in steps if v is not None]
    if not parts:
        return "—"
    total = f" = {r.cold_start_ms:,.0f} ms" if r.cold_start_ms is not None else " ms"
    return " + ".join(parts) + total


@dataclass
class OpProfile:
    """One artifact's per-operator profile (edge bench --op-profile), or why its runtime has none."""
    row: LatencyRow
    top: list = field(default_factory=list)
    not_available: Optional[str] = None
    source: str = ""
    calls: Optional[int] = None
    batch: Optional[int] = None


def op_profiles(report: Report) -> list[OpProfile]:
    """One entry per artifact × target that was profiled: every batch's record carries the same profile."""
    seen, out = set(), []
    for r in report.rows:
        prof = (r.extra or {}).get("op_profile")
        key = (r.dataset, r.model, r.format, r.target, r.host)
        if not isinstance(prof, dict) or key in seen:
            continue
        seen.add(key)
        out.append(OpProfile(row=r, top=list(prof.get("top") or []), not_available=prof.get("not_available"),
                             source=prof.get("source") or ("the runtime" if prof.get("top") else "—"),
                             calls=prof.get("calls"), batch=prof.get("batch")))
    return out


def fmt_rate(v: Optional[float]) -> str:
    if v is None:
        return "—"
    return f"{v:,.0f}/s" if v >= 100 else f"{v:,.1f}/s"


def fmt_bytes(v: Optional[int]) -> str:
    return human_bytes(v) if v else "—"


def fmt_mem(v: Optional[int]) -> str:
    return f"{v / 2**30:.1f} GiB" if v else "—"


def fmt_pct(v: Optional[float]) -> str:
    return "—" if v is None else f"{v * 100:.2f} %"


def fmt_change(v: Optional[float]) -> str:
    return "—" if v is None else f"{v * 100:+.1f} %"


def fmt_diff(v: Optional[float]) -> str:
    return "—" if v is None else ("0" if v == 0 else f"{v:.1e}")


def fmt_s(v: Optional[float]) -> str:
    if v is None:
        return "—"
    return f"{v:.2f} s" if v < 10 else f"{v:.1f} s"


@dataclass(frozen=True)
class Column:
    target: str
    machine: str
    host: str
    emulated: bool
    label: Optional[str]

    @property
    def title(self) -> str:
        return f"{self.target} (emulated)" if self.emulated and "emulated" not in self.target else self.target


@dataclass
class Cell:
    text: str
    status: str  # ok | unstable | checked (verdict only) | unavailable | failed | empty
    best: bool = False  # fastest, or tied with it within noise (deploykit.fastest)
    rank: Optional[str] = None  # "fastest" | "tied"
    p99: Optional[str] = None
    note: Optional[int] = None  # footnote number of the reason
    compat: Optional[str] = None
    compat_ok: Optional[bool] = None


@dataclass
class PivotRow:
    dataset: Optional[str]
    model: str
    format: str
    threads: Optional[int]
    cells: list[Cell] = field(default_factory=list)


@dataclass
class Pivot:
    batch: int
    columns: list[Column]
    column_threads: list[str]  # "1 thr", "4 thr", "1–2 thr" per column
    rows: list[PivotRow]
    reasons: list[str]  # footnotes, numbered from 1
    show_threads: bool


def column_of(r: LatencyRow) -> Column:
    return Column(r.target, r.machine, r.host, r.emulated, r.label)


def _threads_text(values: set) -> str:
    known = sorted(v for v in values if v)
    if not known:
        return "threads: runtime default" if None in values else "nothing measured"
    return f"{known[0]} thr" if len(known) == 1 else f"{known[0]}–{known[-1]} thr"


def pivots(report: Report) -> list[Pivot]:
    """For each batch size: (model, format) × (target on a machine), p50 in each cell, the fastest format
    of each model on each target marked. Rows split by thread count only where one target measured
    the same artifact with several thread counts; otherwise each column's threads are in its header."""
    out = []
    for batch in sorted({r.batch for r in report.rows}):
        rows = [r for r in report.rows if r.batch == batch]
        columns = sorted({column_of(r) for r in rows}, key=lambda c: (c.emulated, c.target, c.host))
        per_cell: dict[tuple, set] = {}
        for r in rows:
            if r.kind != "edge-check":  # a verdict is not a timing: its thread count does not split rows
                per_cell.setdefault((r.dataset or "", r.model, r.format, column_of(r)), set()).add(r.threads or 0)
        show_threads = any(len(v) > 1 for v in per_cell.values())

        def tkey(r: LatencyRow) -> int:
            return (r.threads or 0) if show_threads else 0

        keys = sorted({(r.dataset or "", r.model, r.format, tkey(r)) for r in rows})
        by_key = {}
        for r in rows:
            by_key.setdefault((r.dataset or "", r.model, r.format, tkey(r), column_of(r)), r)
        reasons: list[str] = []
        marks = speed_marks(rows, key=lambda r: (r.dataset or "", r.model, tkey(r), column_of(r)))
        pivot_rows = []
        for ds, model, fmt, threads in keys:
            pr = PivotRow(ds or None, model, fmt, threads or None)
            for col in columns:
                r = by_key.get((ds, model, fmt, threads, col))
                if r is None:
                    pr.cells.append(Cell("", "empty"))
                    continue
                compat = dict(compat=_verdict_text(r), compat_ok=False if r.verdicts_disagree else r.compat.ok) \
                    if r.compat else {}
                if r.status == "ok" and r.latency:
                    pr.cells.append(Cell(fmt_us(r.latency.p50_us), "ok" if r.stable is not False else "unstable",
                                         best=id(r) in marks, rank=marks.get(id(r)),
                                         p99=fmt_tail(r.latency, "p99_us"), **compat))
                elif r.status == "ok":  # an edge check: a verdict, no timing
                    pr.cells.append(Cell("not timed", "checked", **compat))
                else:
                    reason = f"{r.status}: {r.reason or 'no reason recorded'}"
                    if reason not in reasons:
                        reasons.append(reason)
                    pr.cells.append(Cell(r.status, r.status, note=reasons.index(reason) + 1, **compat))
            pivot_rows.append(pr)
        column_threads = [_threads_text({r.threads for r in rows if column_of(r) == c and r.latency}) for c in columns]
        out.append(Pivot(batch, columns, column_threads, pivot_rows, reasons, show_threads))
    return out


def _verdict_text(r: LatencyRow) -> str:
    """The row's verdict; with an edge check's beside it when that check was a different run."""
    if r.check_compat is None:
        return r.compat.verdict
    mark = "DISAGREE: " if r.verdicts_disagree else ""
    return f"{mark}{r.compat.verdict}, check verdict {r.check_compat.verdict}"


def measured(r: LatencyRow) -> str:
    """How a figure was measured, in one line: source, runtime, threads, warm-up, windows, stability."""
    parts = [r.source, f"{r.runtime} {r.runtime_version or ''}".strip(), f"device {r.device}",
             f"{r.threads} thr" if r.threads else "threads: runtime default"]
    if r.warmup_s is not None:
        parts.append(f"warm-up {r.warmup_s:.3g} s")
    if r.windows:
        window = f"{r.windows} windows" + (f" × {r.window_s:.3g} s" if r.window_s else "")
        if r.figure_windows and r.figure_windows < r.windows:
            window += f", figures from the last {r.figure_windows}"
        if r.window_spread is not None:
            window += f", spread {r.window_spread * 100:.0f} %"
        parts.append(window)
    if r.latency:
        parts.append(f"{r.latency.samples:,} calls")
        if r.latency.p50_ci_us:
            parts.append(f"p50 95 % interval {fmt_ci(r.latency)}")
    if r.stable is True:
        parts.append("stable")
    elif r.stable is False:
        parts.append("NOT stable: no three windows agreed within 10 %; figures over every window")
    return " · ".join(parts)


def machine_lines(s: Source) -> list[str]:
    m = s.machine
    if m is None:
        return []
    cores = f"{m.cores_logical} logical" + (f" / {m.cores_physical} physical" if m.cores_physical else "") + " cores"
    lines = [f"{m.cpu_model}, {cores}, {fmt_mem(m.memory_bytes)} memory", f"{m.os}; Python {m.python}"]
    if m.board:
        lines.append(f"board: {m.board}")
    if m.gpu:
        lines.append(f"GPU: {m.gpu}")
    for k, v in m.extra.items():
        lines.append(f"{k}: {v}")
    return lines


def _plain(v) -> str:
    """A setting's value as text a reader reads: lists joined, mappings as "key value", no Python reprs."""
    if isinstance(v, dict):
        return ", ".join(f"{k} {_plain(x)}" for k, x in v.items() if x not in (None, "", [], {})) or "none"
    if isinstance(v, (list, tuple)):
        return ",".join(_plain(x) for x in v)
    if v is None:
        return "—"
    return str(v)


def settings_line(settings: dict, limit: int = 90) -> str:
    parts = []
    for k, v in settings.items():
        text = _plain(v)
        parts.append(f"{k}={text if len(text) <= limit else text[:limit] + '…'}")
    return "; ".join(parts)


@dataclass
class ModelSummary:
    row: TrainingRow
    fastest: list[str]  # one entry per target column: "tflite-int8 4.0 µs"


def training_summaries(report: Report) -> tuple[list[Column], Optional[int], list[ModelSummary]]:
    """Training figures with, per target, the model's fastest artifact at the smallest batch measured."""
    ok = [r for r in report.rows if r.status == "ok" and r.latency]
    batch = min((r.batch for r in ok), default=None)
    ok = [r for r in ok if r.batch == batch]
    columns = sorted({column_of(r) for r in ok}, key=lambda c: (c.emulated, c.target, c.host))
    out = []
    for t in report.training:
        cells = []
        for col in columns:
            mine = [r for r in ok if r.model == t.model and (r.dataset in (None, t.dataset)) and column_of(r) == col]
            group = fastest_group(mine)
            cells.append(f"{group[0].format} {fmt_us(group[0].latency.p50_us)}"
                         + (f" (tied: {', '.join(r.format for r in group[1:])})" if len(group) > 1 else "")
                         if group else "—")
        out.append(ModelSummary(t, cells))
    return columns, batch, out


@dataclass
class StageTable:
    run: TrainRun
    formats: list[str]
    rows: list[tuple[str, str, list[str], str]]  # model, train s, per format "export + validate", total


def stage_tables(report: Report) -> list[StageTable]:
    """train-export stage timings as model × format (export + validate seconds)."""
    tables = []
    for run in report.train_runs:
        models: dict[str, dict] = {}
        formats: list[str] = []
        for key, secs in run.stages.items():
            parts = key.split(":")
            if len(parts) >= 2:
                entry = models.setdefault(parts[1], {"train": None, "other": 0.0, "fmt": {}})
                if parts[0] == "train":
                    entry["train"] = secs
                elif parts[0] in ("export", "validate") and len(parts) == 3:
                    if parts[2] not in formats:
                        formats.append(parts[2])
                    entry["fmt"].setdefault(parts[2], [0.0, 0.0])[parts[0] == "validate"] += secs
                else:
                    entry["other"] += secs
        rows = []
        for model, e in models.items():
            cells = [f"{e['fmt'][f][0]:.2f} + {e['fmt'][f][1]:.2f}" if f in e["fmt"] else "—" for f in formats]
            total = (e["train"] or 0.0) + e["other"] + sum(a + b for a, b in e["fmt"].values())
            rows.append((model, fmt_s(e["train"]), cells, fmt_s(total)))
        tables.append(StageTable(run, formats, rows))
    return tables


FILTERS = {"us": fmt_us, "ci": fmt_ci, "rate": fmt_rate, "bytes": fmt_bytes, "pct": fmt_pct, "change": fmt_change,
           "diff": fmt_diff, "secs": fmt_s, "mem": fmt_mem}

"""The report's answer to "which one, at what cost": a Pareto table per target and one recommendation
line per model and target, both from the smallest batch measured and the one "fastest" rule
(deploykit.fastest: formats within noise of the fastest are tied). `decisions` gives both as data
(`Report.decisions`, in report.json).

- Pareto: over every (model, format) measured on a target, a point is dominated when another is at
  least as fast (faster or tied), at most as large and at least as accurate, and better in one of the
  three. The non-dominated points are the only sensible choices; each is labelled model/format.
- Recommendation: per model and target, the fastest format; among formats tied with it, the most
  accurate, then the smallest (speed cannot tell them apart, so the other costs decide). Accuracy
  and size are stated against the model's `onnx` artifact (plain float32, the exchange format every
  model here exports) or, without one, its largest artifact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from deploykit.fastest import TIE_RULE, fastest_group, tied
from deploykit.report.schema import Decisions, LatencyRow, ParetoChoices, ParetoEntry, Recommendation, Report
from deploykit.report.view import Column, column_of, fmt_bytes, fmt_us

__all__ = ["ParetoPoint", "ParetoTable", "pareto_tables", "recommendations", "decisions", "REFERENCE_FORMAT"]

REFERENCE_FORMAT = "onnx"


@dataclass
class ParetoPoint:
    row: LatencyRow
    label: str  # model/format
    optimal: bool
    dominated_by: Optional[str] = None


@dataclass
class ParetoTable:
    column: Column
    batch: int
    points: list[ParetoPoint]  # optimal first, then by p50


def _smallest_batch_rows(report: Report) -> tuple[Optional[int], list[LatencyRow]]:
    ok = [r for r in report.rows if r.status == "ok" and r.latency]
    batch = min((r.batch for r in ok), default=None)
    return batch, [r for r in ok if r.batch == batch]


def _faster_or_tied(a: LatencyRow, b: LatencyRow) -> bool:
    return a.latency.p50_us <= b.latency.p50_us or tied(a, b)


def _dominates(a: LatencyRow, b: LatencyRow) -> bool:
    if a.artifact_bytes is None or b.artifact_bytes is None or a.accuracy is None or b.accuracy is None:
        return False
    no_worse = _faster_or_tied(a, b) and a.artifact_bytes <= b.artifact_bytes and a.accuracy >= b.accuracy
    better = (a.latency.p50_us < b.latency.p50_us and not tied(a, b)) or a.artifact_bytes < b.artifact_bytes \
        or a.accuracy > b.accuracy
    return no_worse and better


def pareto_tables(report: Report) -> list[ParetoTable]:
    batch, rows = _smallest_batch_rows(report)
    tables = []
    for col in sorted({column_of(r) for r in rows}, key=lambda c: (c.emulated, c.target, c.host)):
        mine = [r for r in rows if column_of(r) == col]
        points = []
        for r in mine:
            by = next((o for o in mine if o is not r and _dominates(o, r)), None)
            points.append(ParetoPoint(r, f"{r.model}/{r.format}", by is None,
                                      f"{by.model}/{by.format}" if by is not None else None))
        points.sort(key=lambda p: (not p.optimal, p.row.latency.p50_us))
        tables.append(ParetoTable(col, batch, points))
    return tables


def _reference(rows: list[LatencyRow]) -> Optional[LatencyRow]:
    ref = next((r for r in rows if r.format == REFERENCE_FORMAT), None)
    if ref is None:
        sized = [r for r in rows if r.artifact_bytes]
        ref = max(sized, key=lambda r: r.artifact_bytes, default=None)
    return ref


def recommendations(report: Report) -> list[Recommendation]:
    """One per (model, target): which format, the numbers behind it, and why (`text`: the line printed)."""
    batch, rows = _smallest_batch_rows(report)
    out = []
    keys = sorted({(r.dataset or "", r.model, column_of(r)) for r in rows},
                  key=lambda k: (k[0], k[1], k[2].emulated, k[2].target, k[2].host))
    for ds, model, col in keys:
        mine = [r for r in rows if (r.dataset or "") == ds and r.model == model and column_of(r) == col]
        group = fastest_group(mine)
        pick = max(group, key=lambda r: (r.accuracy if r.accuracy is not None else -1.0,
                                         -(r.artifact_bytes or 0)))
        ref = _reference(mine)
        against = ref is not None and ref is not pick
        acc_pp = (pick.accuracy - ref.accuracy) * 100 if against and pick.accuracy is not None \
            and ref.accuracy is not None else None
        size_ratio = pick.artifact_bytes / ref.artifact_bytes if against and pick.artifact_bytes \
            and ref.artifact_bytes else None
        costs = []
        if acc_pp is not None:
            costs.append(f"{acc_pp:+.1f} pp accuracy")
        if size_ratio is not None:
            costs.append(f"{size_ratio:.2f}× size ({fmt_bytes(pick.artifact_bytes)})")
        if costs:
            cost = ", ".join(costs) + f" against {ref.format}"
        elif not against and pick.artifact_bytes:
            cost = fmt_bytes(pick.artifact_bytes) + (f", accuracy {pick.accuracy * 100:.2f} %"
                                                    if pick.accuracy is not None else "")
        else:
            cost = None
        tied_with = [r.format for r in group if r is not pick]
        if not tied_with:
            reason = "fastest beyond noise" if len(mine) > 1 else "the only format measured"
            why = reason
        else:
            reason = "tied (chosen for accuracy, then size)"
            why = f"tied within noise with {', '.join(tied_with)}; chosen for accuracy, then size"
        runner = next((r for r in sorted(mine, key=lambda r: r.latency.p50_us) if r not in group), None)
        if runner is not None:
            why += f"; next: {runner.format} {fmt_us(runner.latency.p50_us)}"
        text = (f"serve {model} as {pick.format} on {col.title}: {fmt_us(pick.latency.p50_us)} p50 at batch "
                f"{batch}" + (f", {cost}" if cost else "") + f" ({why})")
        out.append(Recommendation(
            dataset=ds or None, model=model, target=col.title, host=col.host, emulated=col.emulated, batch=batch,
            format=pick.format, p50_us=pick.latency.p50_us, p50_ci_us=pick.latency.p50_ci_us,
            accuracy=pick.accuracy, artifact_bytes=pick.artifact_bytes,
            reference_format=ref.format if against else None, accuracy_change_pp=acc_pp, size_ratio=size_ratio,
            tied_with=tied_with, reason=reason, next_format=runner.format if runner is not None else None,
            next_p50_us=runner.latency.p50_us if runner is not None else None, text=text))
    return out


def decisions(report: Report) -> Decisions:
    """Recommendations and Pareto tables as data: what `report --out report.json` carries."""
    pareto = [ParetoChoices(target=t.column.title, host=t.column.host, machine=t.column.machine,
                            emulated=t.column.emulated, batch=t.batch,
                            points=[ParetoEntry(model=p.row.model, format=p.row.format, label=p.label,
                                                p50_us=p.row.latency.p50_us, p50_ci_us=p.row.latency.p50_ci_us,
                                                artifact_bytes=p.row.artifact_bytes, accuracy=p.row.accuracy,
                                                optimal=p.optimal, dominated_by=p.dominated_by)
                                    for p in t.points])
              for t in pareto_tables(report)]
    return Decisions(rule=TIE_RULE, recommendations=recommendations(report), pareto=pareto)

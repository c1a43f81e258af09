"""Terminal tables for `edge check` and `edge bench` (the report renders the same records in Markdown/HTML)."""

from __future__ import annotations

from rich.table import Table

from deploykit.console import human_bytes
from deploykit.bench.table import tail_text
from deploykit.results import ResultsFile

__all__ = ["check_table", "bench_table", "verdict_text"]

_COLOURS = {"compatible": "green", "incompatible": "red", "parity-failed": "red", "unavailable": "yellow",
            "unknown": "yellow"}


def verdict_text(compat: dict | None) -> str:
    if not compat:
        return "—"
    v = compat.get("verdict", "unknown")
    return f"[{_COLOURS.get(v, 'white')}]{v}[/]"


def _lacking(compat: dict) -> str:
    ops = compat.get("lacking_ops") or []
    if not ops:
        return "—"
    return ", ".join(f"{o['op']} v{o['version']}" + (f" (has ≤ v{o['runtime_max_version']})" if o.get("runtime_max_version") else "")
                     if not o.get("custom") else f"custom {o['op']}" for o in ops)


def check_table(results: ResultsFile) -> Table:
    runtime = results.settings.get("runtime")
    table = Table(title=f"edge check: {runtime}" + (f" ({results.settings['profile']})" if results.settings.get("profile") else ""),
                  title_justify="left")
    for col in ("model", "format", "loads", "ops the runtime lacks", "file needs TFLite", "max |Δp|", "top-1 agree",
                "verdict"):
        table.add_column(col, justify="right" if col in ("max |Δp|", "top-1 agree") else "left")
    last = None
    for r in results.records:
        c = r.compat or {}
        loads = c.get("loads")
        table.add_row(r.model if r.model != last else "", r.format,
                      "yes" if loads else "no" if loads is False else "not tried", _lacking(c),
                      c.get("min_runtime_version") or "—",
                      f"{r.max_abs_diff:.1e}" if r.max_abs_diff is not None else "—",
                      f"{r.top1_agreement:.2%}" if r.top1_agreement is not None else "—", verdict_text(c))
        last = r.model
    return table


def bench_table(results: ResultsFile) -> Table:
    m = results.machine
    where = m.board or m.cpu_model
    first = results.records[0] if results.records else None
    title = f"edge bench on {first.target if first else '?'}: {where} ({m.hostname})"
    if first is not None and first.emulated:
        title += f" — {first.label}"
    from deploykit.fastest import TIE_RULE, speed_marks

    table = Table(title=title, title_justify="left", caption=TIE_RULE, caption_justify="left")
    marks = speed_marks(results.records)
    for col in ("model", "format", "runtime", "thr", "batch", "load ms", "1st ms", "p50 µs", "p99 µs", "samples/s",
                "peak RSS", "size", "top-1 agree", "verdict"):
        table.add_column(col, justify="left" if col in ("model", "format", "runtime", "verdict") else "right")
    last = None
    for r in results.records:
        lat = r.latency
        verdict = verdict_text(r.compat)
        if r.status == "ok" and r.stable is False:
            verdict += " [yellow](unstable)[/]"
        if id(r) in marks:
            verdict += f" [bold green]{marks[id(r)]}[/]"
        table.add_row(
            r.model if r.model != last else "", r.format, f"{r.runtime} {r.runtime_version or ''}".strip(),
            str(r.threads or "—"), str(r.batch), f"{r.load_ms:,.1f}" if r.load_ms is not None else "—",
            f"{r.first_inference_ms:,.2f}" if r.first_inference_ms is not None else "—",
            f"{lat.p50_us:,.1f}" if lat else "—", tail_text(lat, "p99_us"),
            f"{r.throughput_sps:,.0f}" if r.throughput_sps else "—",
            human_bytes(r.peak_rss_bytes) if r.peak_rss_bytes else "—",
            human_bytes(r.artifact_bytes) if r.artifact_bytes else "—",
            f"{r.top1_agreement:.2%}" if r.top1_agreement is not None else "—", verdict)
        last = r.model
    return table

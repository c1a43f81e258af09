"""The `deploykit bench` CLI table: one row per record, cold start step by step, tails only where
enough samples back them."""

from __future__ import annotations

from typing import Optional

from deploykit.results import LatencyStats, ResultsFile

__all__ = ["TOO_FEW", "tail_text", "bench_table"]

TOO_FEW = "too few samples"


def _ms(v: Optional[float], digits: int = 1) -> str:
    return f"{v:,.{digits}f}" if v is not None else "—"


def tail_text(lat: Optional[LatencyStats], field: str) -> str:
    """A tail percentile in µs, or "too few samples" where the record withheld it (never a max called p99)."""
    if lat is None:
        return "—"
    v = getattr(lat, field)
    if v is None:
        return TOO_FEW if field in lat.withheld else "—"
    return f"{v:,.1f}"


def _p50_text(lat: LatencyStats) -> str:
    if lat.p50_ci_us:
        lo, hi = lat.p50_ci_us
        return f"{lat.p50_us:,.1f} ({lo:,.0f}–{hi:,.0f})"
    return f"{lat.p50_us:,.1f}"


def bench_table(results: ResultsFile, title: str = "bench"):
    """A rich table: one row per record (the runtime and target are in the results file)."""
    from rich.table import Table

    from deploykit.console import human_bytes

    from deploykit.fastest import TIE_RULE, speed_marks

    table = Table(title=title, title_justify="left",
                  caption="cold start ms = process start + runtime import + load + 1st call; p50 (95 % interval); "
                          f"{TIE_RULE}", caption_justify="left")
    marks = speed_marks(results.records)
    cols = ("model", "format", "batch", "thr", "start ms", "import ms", "load ms", "1st ms", "cold ms",
            "p50 µs (95 % CI)", "p99 µs", "samples/s", "peak RSS", "size", "accuracy", "status")
    for col in cols:
        table.add_column(col, justify="left" if col in ("model", "format", "status") else "right")
    last_model = None
    for r in results.records:
        lat = r.latency
        if r.status == "ok":
            status = "[green]ok[/]" if r.stable else "[yellow]ok, unstable[/]"
        else:
            status = f"[{'yellow' if r.status == 'unavailable' else 'red'}]{r.status}[/]: {(r.reason or '')[:100]}"
        table.add_row(
            r.model if r.model != last_model else "", r.format, str(r.batch), str(r.threads or "—"),
            _ms(r.process_start_ms), _ms(r.import_ms), _ms(r.load_ms), _ms(r.first_inference_ms, 2),
            _ms(r.cold_start_ms),
            _p50_text(lat) if lat else "—", tail_text(lat, "p99_us"),
            f"{r.throughput_sps:,.0f}" if r.throughput_sps else "—",
            human_bytes(r.peak_rss_bytes) if r.peak_rss_bytes else "—",
            human_bytes(r.artifact_bytes) if r.artifact_bytes else "—",
            f"{r.accuracy:.2%}" if r.accuracy is not None else "—",
            status + (f" [bold green]{marks[id(r)]}[/]" if id(r) in marks else ""),
        )
        last_model = r.model
    return table

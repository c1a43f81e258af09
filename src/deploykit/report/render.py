"""Render a `Report` as one self-contained HTML file, as Markdown for a pull request, or as JSON.

The output format comes from `--out`'s extension. HTML embeds its CSS and its plots (PNG data: URIs):
no script, no CDN, nothing fetched, so it opens offline and can be attached to a ticket. Markdown
carries the tables; with a file to write, its plots go into `<name>-plots/` beside it and are linked
(a pull request shows them once the folder is committed), and on stdout they are left out.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Optional

from deploykit.errors import UsageError
from deploykit.manifest import atomic_write_text
from deploykit.report.compare import report_json
from deploykit.report.plots import Plot, make_plots
from deploykit.report.schema import Report
from deploykit.fastest import TIE_RULE
from deploykit.report import decide, view

__all__ = ["OUTPUT_FORMATS", "output_format", "render_html", "render_markdown", "write_report"]

OUTPUT_FORMATS = {".html": "html", ".htm": "html", ".md": "markdown", ".markdown": "markdown", ".json": "json"}
_TEMPLATES = Path(__file__).parent / "templates"


def output_format(out: Path) -> str:
    fmt = OUTPUT_FORMATS.get(Path(out).suffix.lower())
    if fmt is None:
        raise UsageError(f"--out {out}: unknown extension {Path(out).suffix or '(none)'!r}; use .html, .md or .json")
    return fmt


def _md_cell(value) -> str:
    """Text safe inside a Markdown table cell."""
    return re.sub(r"\s*\n\s*", " ", str(value)).replace("|", "\\|")


def _env(autoescape: bool):
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    env = Environment(loader=FileSystemLoader(_TEMPLATES), autoescape=autoescape, trim_blocks=True,
                      lstrip_blocks=True, undefined=StrictUndefined, keep_trailing_newline=True)
    env.filters.update(view.FILTERS)
    env.filters["md"] = _md_cell
    env.globals.update(measured=view.measured, fmt_tail=view.fmt_tail, cold_start=view.cold_start, machine_lines=view.machine_lines, settings_line=view.settings_line)
    return env


def _context(report: Report) -> dict:
    summary_columns, summary_batch, summaries = view.training_summaries(report)
    columns = sorted({view.column_of(r) for r in report.rows}, key=lambda c: (c.emulated, c.target, c.host))
    from deploykit.report.frameworks import deploy_text

    return dict(
        report=report, pivots=view.pivots(report), columns=columns, deploy_text=deploy_text,
        current_sources=[s for s in report.sources if s.role == "current"],
        baseline_sources=[s for s in report.sources if s.role == "baseline"],
        compat_rows=[r for r in report.rows if r.compat is not None],
        op_profiles=view.op_profiles(report),
        summary_columns=summary_columns, summary_batch=summary_batch, summaries=summaries,
        stage_tables=view.stage_tables(report),
        recommendations=[r.text for r in (report.decisions or decide.decisions(report)).recommendations],
        pareto=decide.pareto_tables(report), tie_rule=TIE_RULE,
        several_datasets=len({r.dataset for r in report.rows} | {t.dataset for t in report.training}) > 1,
    )


def render_html(report: Report, plots: Optional[list[Plot]] = None) -> str:
    plots = make_plots(report) if plots is None else plots
    ctx = _context(report)
    ctx.update(
        css=(_TEMPLATES / "report.css").read_text(),
        latency_plots=[p for p in plots if p.name.startswith("latency-") or p.name == "size-accuracy"],
        load_plots=[p for p in plots if p.name == "load"],
        training_plots=[p for p in plots if p.name == "training"],
        framework_plots=[p for p in plots if p.name == "frameworks"],
    )
    return _env(autoescape=True).get_template("report.html.j2").render(ctx)


def render_markdown(report: Report, plot_links: list[tuple[str, str]] = ()) -> str:
    ctx = _context(report)
    ctx["plot_links"] = list(plot_links)
    text = _env(autoescape=False).get_template("report.md.j2").render(ctx)
    return re.sub(r"\n{3,}", "\n\n", text)


def write_report(report: Report, out: Path) -> list[Path]:
    """Write `out` in the format its extension names; returns every file written."""
    out = Path(out)
    fmt = output_format(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot create its folder: {exc.strerror or exc}") from exc
    written = []
    if fmt == "json":
        text = report_json(report)
    elif fmt == "html":
        text = render_html(report)
    else:
        plot_dir = out.with_name(f"{out.stem}-plots")
        links = []
        for plot in make_plots(report):
            plot_dir.mkdir(exist_ok=True)
            path = plot_dir / f"{plot.name}.png"
            path.write_bytes(plot.png)
            written.append(path)
            links.append((plot.title, f"{plot_dir.name}/{path.name}"))
        text = render_markdown(report, links)
    try:
        atomic_write_text(out, text)
    except OSError as exc:
        raise UsageError(f"--out {out}: not writable: {exc.strerror or exc}") from exc
    _shareable(out)
    return [out, *written]


def _shareable(path: Path) -> None:
    """atomic_write_text's temp file is private (0600); a report is meant to be read by others."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)

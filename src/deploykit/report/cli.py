"""The `deploykit report` command: parse, then delegate to load → compare → render."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

__all__ = ["report_cmd"]


def report_cmd(
    inputs: list[Path] = typer.Argument(..., show_default=False, help="Results files (bench, loadtest, edge bench, edge check), train-export.json files, manifest.json files or folders of model folders."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="report.html (one self-contained file with plots), report.md (for a pull request; plots saved beside it) or report.json (the merged comparison, see docs/results-schema.md). Default: Markdown on stdout, without plots."),
    baseline: list[Path] = typer.Option([], "--baseline", "-b", help="Earlier results file to compare with (repeatable): regressions and improvements beyond noise."),
    models: list[Path] = typer.Option([], "--models", help="Model folder (or folder of them) whose manifests add the training comparison and fill in size/accuracy/parity (repeatable)."),
    fail_on_regression: bool = typer.Option(False, "--fail-on-regression", help="Exit 1 when the baseline comparison finds a regression (for CI)."),
):
    """Merge results from several machines and targets into one comparison: format × target × batch, with how each figure was measured."""
    from deploykit.console import console
    from deploykit.report import build_report, load_baseline, load_inputs, output_format, render_markdown, write_report

    if out is not None:
        output_format(out)  # an unknown extension fails before any file is read
    report = build_report(load_inputs(inputs, models), load_baseline(baseline))
    if out is None:
        sys.stdout.write(render_markdown(report))
    else:
        written = write_report(report, out)
        extra = f" (+ {len(written) - 1} plot file(s) in {written[1].parent})" if len(written) > 1 else ""
        console.print(f"wrote {out}{extra}: {len(report.rows)} configuration(s), {len(report.load_steps)} load step(s), "
                      f"{len(report.training)} trained model(s) from {sum(s.role == 'current' for s in report.sources)} "
                      "source(s)", markup=False)
    if report.baseline:
        counts = report.baseline.counts
        summary = ", ".join(f"{n} {v}" for v, n in counts.items()) or "nothing to compare"
        (console if out is not None else _stderr()).print(f"baseline: {summary}", markup=False)
        if fail_on_regression and counts.get("regression"):
            raise typer.Exit(1)


def _stderr():
    from deploykit.console import err_console

    return err_console  # stdout carries the Markdown

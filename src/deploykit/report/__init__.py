"""`deploykit report`: results files, train-export runs and manifests → one comparison (HTML, Markdown, JSON).

    inputs.load_inputs(paths) ─► compare.build_report(inputs, baseline) ─► render.write_report(report, out)

`schema.Report` is the merged comparison (documented in docs/results-schema.md); plots are drawn by
`plots.make_plots` with matplotlib's Agg canvas. Heavy imports (matplotlib, jinja2) happen on use.
"""

from deploykit.report.compare import build_report, report_json
from deploykit.report.inputs import load_baseline, load_inputs
from deploykit.report.render import output_format, render_html, render_markdown, write_report
from deploykit.report.schema import Report

__all__ = ["load_inputs", "load_baseline", "build_report", "report_json", "output_format", "render_html",
           "render_markdown", "write_report", "Report"]

"""Rendering the merged comparison: Markdown for a pull request, one self-contained HTML file, JSON."""

import base64
import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from deploykit.errors import UsageError
from deploykit.report import build_report, load_baseline, load_inputs, output_format, render_html, render_markdown, write_report
from deploykit.report.plots import make_plots
from deploykit.report.view import fmt_bytes
from deploykit.report.schema import Report

FIXTURES = Path(__file__).parents[1] / "fixtures" / "results"
CURRENT = ["bench-cpu.json", "bench-gpu.json", "bench-cuda-unavailable.json", "edge-bench-pi.json",
           "edge-bench-emulated.json", "edge-check-pi.json", "loadtest.json"]


@pytest.fixture(scope="module")
def report() -> Report:
    return build_report(load_inputs([FIXTURES / f for f in CURRENT] + [FIXTURES / "models" / "mnist"]),
                        load_baseline([FIXTURES / "bench-cpu-baseline.json"]))


@pytest.fixture(scope="module")
def plots(report):
    return make_plots(report)


@pytest.fixture(scope="module")
def html(report, plots):
    return render_html(report, plots)


class _Page(HTMLParser):
    """Every element with its attributes, and the text of each table row."""

    def __init__(self):
        super().__init__()
        self.elements: list[tuple[str, dict]] = []
        self.rows: list[str] = []
        self._row: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))
        if tag == "tr":
            self._row = []
        elif tag in ("td", "th", "br") and self._row is not None:
            self._row.append(" ")  # cells and lines apart; text within a cell stays together

    def handle_endtag(self, tag):
        if tag == "tr" and self._row is not None:
            self.rows.append(" ".join("".join(self._row).split()))
            self._row = None

    def handle_data(self, data):
        if self._row is not None:
            self._row.append(data)


def _parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    return page


def _png_is_drawn(png: bytes) -> tuple[int, int]:
    image = Image.open(io.BytesIO(png)).convert("L")
    lo, hi = image.getextrema()
    assert hi - lo > 100, "blank image"
    assert len(image.histogram()) and sum(1 for n in image.histogram() if n) > 20, "too few shades for a plot"
    return image.size


def test_plots_for_each_question(plots):
    assert [p.name for p in plots] == ["latency-b1", "latency-b32", "size-accuracy", "load", "training"]
    for plot in plots:
        width, height = _png_is_drawn(plot.png)
        assert width >= 600 and height >= 250 and plot.caption


def test_html_is_one_self_contained_file(html, plots):
    page = _parse(html)
    tags = [t for t, _ in page.elements]
    assert "script" not in tags and "link" not in tags and "iframe" not in tags
    for _tag, attrs in page.elements:
        for name in ("src", "href"):
            value = attrs.get(name)
            assert value is None or value.startswith(("data:", "#")), f"external reference {value[:60]}"
    images = [a for t, a in page.elements if t == "img"]
    assert len(images) == len(plots)
    for attrs in images:
        assert attrs["src"].startswith("data:image/png;base64,") and attrs["alt"]
        _png_is_drawn(base64.b64decode(attrs["src"].split(",", 1)[1]))
    assert "http://" not in re.sub(r"http://127\.0\.0\.1:3000/predict", "", html)  # only the measured URL


def test_html_shows_how_each_figure_was_measured(html):
    rows = _parse(html).rows
    (sources_s1,) = [r for r in rows if r.startswith("S1 bench")]
    for fact in ("ci-runner-7", "Intel(R) Xeon(R) CPU @ 2.20GHz", "2 logical / 1 physical cores", "24.0 GiB",
                 "Linux 6.1.0-28-cloud-amd64", "Python 3.11.7", "warmup_s=0.1", "min_time_s=0.5"):
        assert fact in sources_s1, fact
    (onnx_b1,) = [r for r in rows if r.startswith("onnx cpu on ci-runner-7 1 12.6 µs")]
    for fact in ("onnxruntime 1.32.0", "1 thr", "warm-up 0.1 s", "5 windows × 0.1 s", "stable", fmt_bytes(814_602),
                 "88.30 %", "2.4e-07 · 100.00 %"):
        assert fact in onnx_b1, fact
    assert any("savedmodel cpu" in r and "NOT stable" in r for r in rows)
    gpu = [r for r in rows if r.startswith("S2 bench")]
    assert gpu and "NVIDIA A10G" in gpu[0]


def test_html_unavailable_emulated_and_edge_verdicts_are_visible(html):
    rows = _parse(html).rows
    assert any(r.startswith("onnx cuda on ci-runner-7 1 unavailable: no CUDA device: onnxruntime offers") for r in rows)
    assert any(r.startswith("tflite-qat cpu") and "failed: artifact failed export or validation" in r for r in rows)
    emulated = [r for r in rows if r.startswith("tflite-int8 emulated:rpi4")]
    assert emulated and "emulated on Intel(R) Xeon(R) CPU @ 2.20GHz, not a device measurement" in emulated[0]
    # the verdict next to the latency, in the same row
    (device,) = [r for r in rows if r.startswith("tflite-int8 edge:rpi4 on pi4-lab 1 231.0 µs")]
    assert "compatible" in device
    assert any(r.startswith("keras-cnn onnx edge:rpi4 incompatible not a TFLite flatbuffer") for r in rows)
    # pivot: the fastest format per model and target is marked
    assert 'class="num best"' in html


def test_html_baseline_training_and_load_sections(html):
    rows = _parse(html).rows
    (reg,) = [r for r in rows if r.startswith("mnist · torch-mlp · onnx · cpu · 1 · 1 regression")]
    assert "9.80 µs 12.6 µs +28.6 % ±10 %" in reg
    assert any(r.startswith("mnist · keras-cnn · tflite-int8 · cpu · 32 · 1 improvement") for r in rows)
    assert any(r.startswith("keras-functional keras functional mlp") for r in rows)
    assert any(r.startswith("S7 http://127.0.0.1:3000/predict closed c=64") and "3 (503: 3)" in r for r in rows)
    assert "server pinned to core 0, load generator to core 1" in html


def _md_tables(md: str) -> list[list[str]]:
    tables, current = [], []
    for line in md.splitlines():
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append(current)
            current = []
    return tables + ([current] if current else [])


def test_markdown_tables_are_well_formed(report):
    md = render_markdown(report)
    tables = _md_tables(md)
    assert len(tables) >= 8
    for table in tables:
        # unescaped pipes only: every row of a table has the header's column count
        counts = {len(re.findall(r"(?<!\\)\|", row)) for row in table}
        assert len(counts) == 1, table[:3]
        assert re.fullmatch(r"\|(-+:?\|)+|\|((---|--:)\|)+", table[1]), table[1]
    assert "<img" not in md and "data:image" not in md and "![" not in md  # stdout: no plots


def test_markdown_carries_what_a_reviewer_needs(report):
    md = render_markdown(report)
    assert "| mnist · torch-mlp · onnx · cpu · 1 · 1 | **regression** | 9.80 µs | 12.6 µs | +28.6 % | ±10 % |" in md
    assert "cuda @ gpu-box-1, 1 thr" in md and "edge:rpi4 @ pi4-lab, 4 thr" in md
    assert "unavailable: no CUDA device: torch.cuda.is_available() is False" in md
    assert "_(emulated on Intel(R) Xeon(R) CPU @ 2.20GHz, not a device measurement)_" in md
    assert "412.0 µs (compatible)" in md and "not timed (incompatible)" in md
    assert "| keras-subclass | keras | subclass | mlp |" in md
    assert "**train-export mnist**" in md


def test_write_report_by_extension(report, tmp_path):
    html_files = write_report(report, tmp_path / "r.html")
    assert html_files == [tmp_path / "r.html"] and html_files[0].read_text().startswith("<!DOCTYPE html>")
    md_files = write_report(report, tmp_path / "pr" / "report.md")
    md = md_files[0].read_text()
    assert len(md_files) == 6 and all(p.parent.name == "report-plots" for p in md_files[1:])
    for p in md_files[1:]:
        assert f"(report-plots/{p.name})" in md
        _png_is_drawn(p.read_bytes())
    (json_file,) = write_report(report, tmp_path / "r.json")
    again = Report.model_validate(json.loads(json_file.read_text()))
    assert again == report
    assert json_file.stat().st_mode & 0o044  # readable by others, unlike a private temp file


@pytest.mark.parametrize("name", ["r.txt", "report", "r.pdf"])
def test_unknown_extension_is_a_usage_error(name):
    with pytest.raises(UsageError, match="unknown extension"):
        output_format(Path(name))


def test_invalid_load_step_and_withheld_tails_render_as_such(tmp_path):
    from deploykit.results import read_results

    res = read_results(FIXTURES / "loadtest.json")
    first, second = res.steps[0], res.steps[1]
    first.latency, first.valid, first.invalid_reason = None, False, "load generator could not keep the schedule"
    second.latency = second.latency.model_copy(update={"p99_us": None, "p999_us": None, "withheld": {
        "p99_us": "too few samples: 600 < 1,000", "p999_us": "too few samples: 600 < 10,000"}})
    path = res.write(tmp_path / "lt.json")
    report = build_report(load_inputs([path]))
    plots = make_plots(report)  # a withheld p99 is left out of the load plot, not drawn as a number
    html, md = render_html(report, plots), render_markdown(report)
    for text in (html, md):
        assert "invalid" in text and "load generator could not keep the schedule" in text
        assert "too few samples" in text


def test_op_profiles_get_their_own_section_once_per_artifact(report):
    """edge bench --op-profile: each profiled artifact's top operators (or why there are none) in both
    renderings, one row per artifact and target although every batch's record carries the profile."""
    profiled = report.model_copy(deep=True)
    artifacts = {}
    for r in profiled.rows:
        artifacts.setdefault((r.model, r.format, r.target), []).append(r)
    (a_rows, b_rows) = list(artifacts.values())[:2]
    for r in a_rows:
        r.extra = {**r.extra, "op_profile": {"source": "onnxruntime profiler", "calls": 100, "batch": 1,
                                             "top": [{"op": "Conv", "us_per_call": 12.5, "share": 0.61},
                                                     {"op": "Gemm", "us_per_call": 3.25, "share": 0.16}]}}
    for r in b_rows:
        r.extra = {**r.extra, "op_profile": {"not_available": "not available: no per-operator profiler here"}}
    html_text, md = render_html(profiled, []), render_markdown(profiled)
    section = _op_section(html_text)
    assert "Conv 12.5 µs (61 %) · Gemm 3.2 µs (16 %)" in section
    assert "not available: no per-operator profiler here" in section
    assert section.count("<tr>") == 1 + 2  # header + one row per artifact × target
    assert "Conv 12.5 µs (61 %)" in md and "not available: no per-operator profiler here" in md
    assert 'id="op-profile"' not in render_html(report, [])


def _op_section(html_text: str) -> str:
    start = html_text.index('id="op-profile"')
    return html_text[start:html_text.index("</table>", start)]

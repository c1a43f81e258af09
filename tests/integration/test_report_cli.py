"""`deploykit report` as a user runs it: a real subprocess on realistic results files."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from deploykit.report.schema import Report

FIXTURES = Path(__file__).parents[1] / "fixtures" / "results"
CURRENT = [str(FIXTURES / f) for f in ("bench-cpu.json", "bench-gpu.json", "bench-cuda-unavailable.json",
                                       "edge-bench-pi.json", "edge-bench-emulated.json", "edge-check-pi.json",
                                       "loadtest.json")]
MODELS = str(FIXTURES / "models" / "mnist")


def deploykit(*args, timeout=180):
    return subprocess.run([sys.executable, "-m", "deploykit", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def assert_one_line_error(proc, *needles):
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in proc.stderr + proc.stdout
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert proc.stdout == ""


def test_html_markdown_and_json_from_several_machines(tmp_path):
    proc = deploykit("report", *CURRENT, "--models", MODELS, "--baseline", FIXTURES / "bench-cpu-baseline.json",
                     "--out", tmp_path / "report.html")
    assert proc.returncode == 0, proc.stderr
    assert "wrote" in proc.stdout and "33 configuration(s)" in proc.stdout
    assert "baseline: 1 regression, 1 improvement" in proc.stdout
    html = (tmp_path / "report.html").read_text()
    assert html.count('<img src="data:image/png;base64,') == 5

    proc = deploykit("report", *CURRENT, MODELS, "-o", tmp_path / "pr" / "report.md")
    assert proc.returncode == 0, proc.stderr
    md = (tmp_path / "pr" / "report.md").read_text()
    plots = sorted(p.name for p in (tmp_path / "pr" / "report-plots").iterdir())
    assert plots == ["latency-b1.png", "latency-b32.png", "load.png", "size-accuracy.png", "training.png"]
    assert all(f"report-plots/{name}" in md for name in plots)

    proc = deploykit("report", *CURRENT, "--out", tmp_path / "report.json")
    assert proc.returncode == 0, proc.stderr
    report = Report.model_validate(json.loads((tmp_path / "report.json").read_text()))
    assert len(report.rows) == 33 and report.training == [] and report.baseline is None


def test_markdown_on_stdout_without_out(tmp_path):
    proc = deploykit("report", FIXTURES / "bench-cpu.json", "--baseline", FIXTURES / "bench-cpu-baseline.json")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("## deploykit report") and "| mnist · torch-mlp · onnx · cpu · 1 · 1 | **regression**" in proc.stdout
    assert "baseline: 1 regression" in proc.stderr  # the summary line stays out of the pasted Markdown
    assert list(tmp_path.iterdir()) == []


def test_fail_on_regression_for_ci():
    args = ["report", FIXTURES / "bench-cpu.json", "--baseline", FIXTURES / "bench-cpu-baseline.json"]
    assert deploykit(*args).returncode == 0
    assert deploykit(*args, "--fail-on-regression").returncode == 1
    same = ["report", FIXTURES / "bench-cpu.json", "--baseline", FIXTURES / "bench-cpu.json", "--fail-on-regression"]
    assert deploykit(*same).returncode == 0


def test_bad_input_is_one_line_and_exit_2(tmp_path):
    not_results = tmp_path / "notes.json"
    not_results.write_text('{"hello": "world"}')
    broken = tmp_path / "broken.json"
    broken.write_text('{"kind": "bench", "machine": {"hostname": "x"}}')
    assert_one_line_error(deploykit("report", tmp_path / "missing.json"), "missing.json: no such file or folder")
    assert_one_line_error(deploykit("report", not_results), "not a deploykit results file")
    assert_one_line_error(deploykit("report", broken), "broken.json: not a deploykit results file (machine.cpu_model")
    assert_one_line_error(deploykit("report", FIXTURES / "bench-cpu.json", "--out", tmp_path / "report.pdf"),
                          "unknown extension '.pdf'", ".html, .md or .json")
    assert_one_line_error(deploykit("report", FIXTURES / "bench-cpu.json", "--baseline", MODELS + "/train-export.json"),
                          "--baseline", "give a results file")
    assert_one_line_error(deploykit("report"), "Missing argument")
    assert not (tmp_path / "report.pdf").exists()


def test_unwritable_out(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert_one_line_error(deploykit("report", FIXTURES / "bench-cpu.json", "--out", blocker / "r.html"), "--out")

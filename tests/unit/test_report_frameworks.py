"""The report's Frameworks section: compare-training records beside the same network's deployment
latency, and the articles' figures labelled as theirs."""

from pathlib import Path

from deploykit.compare.runner import _record
from deploykit.compare.variants import VARIANTS
from deploykit.report.compare import build_report
from deploykit.report.frameworks import deployed_model
from deploykit.report.inputs import load_inputs
from deploykit.report.render import render_html, render_markdown
from deploykit.results import ResultsFile, machine_info

FIXTURES = Path(__file__).parents[1] / "fixtures" / "results"
DATA = {"train_samples": 60000, "test_samples": 10000}


def _run(epoch_s, acc):
    return {"status": "ok", "repeat": 0, "epoch_s": epoch_s, "train_loss": [0.5, 0.2], "test_accuracy": acc,
            "test_loss": 0.1, "peak_rss_bytes": 500 * 2**20, "log_dir": "/tb", "versions": {}, "threads": {}, "extra": {}}


def _comparison(tmp_path) -> Path:
    records = [
        _record(VARIANTS["keras-sequential"], "cnn", [_run([40.0, 31.0], 0.985)], None, 2, 32, 2, DATA),
        _record(VARIANTS["torch"], "mlp", [_run([9.0, 8.0], 0.975)], None, 2, 32, 2, DATA),
        _record(VARIANTS["paddle"], "cnn", [], "paddle, paddle2onnx not installed: pip install 'deploykit[paddle]'",
                2, 32, 2, DATA),
    ]
    return ResultsFile(kind="compare-training", machine=machine_info(), training=records).write(tmp_path / "ct.json")


def test_deployed_model_names():
    assert deployed_model("keras-functional", "keras", "mlp") == "keras-functional"
    assert deployed_model("keras-jax", "keras", "mlp") == "keras-sequential"
    assert deployed_model("keras-fit-xla", "keras", "cnn") == "keras-cnn"
    assert deployed_model("torch-ddp-2", "torch", "cnn") == "torch-cnn"
    assert deployed_model("paddle", "paddle", "mlp") == "paddle-mlp"


def test_frameworks_section_beside_deployment_latency(tmp_path):
    report = build_report(load_inputs([_comparison(tmp_path), FIXTURES / "bench-cpu.json"]))
    rows = {(f.variant, f.net): f for f in report.frameworks}
    keras_cnn = rows[("keras-sequential", "cnn")]
    bench_p50 = {r.format: r.latency.p50_us for r in report.rows
                 if r.model == "keras-cnn" and r.batch == 1 and r.status == "ok" and r.latency}
    assert keras_cnn.deploy_model == "keras-cnn" and keras_cnn.steady_epoch_s == 31.0
    assert keras_cnn.deploy_p50_us and set(keras_cnn.deploy_p50_us) <= set(bench_p50)
    assert rows[("paddle", "cnn")].status == "unavailable" and rows[("paddle", "cnn")].deploy_p50_us == {}
    md = render_markdown(report)
    assert "### Frameworks: training compared" in md and "deploykit[paddle]" in md
    assert "97.82 % / 98.06 % / 98.20 %" in md and "their figures, not measured here" in md
    html = render_html(report)
    assert 'id="frameworks"' in html and "Frameworks: training time, accuracy and memory per variant" in html


def test_no_comparison_no_section():
    report = build_report(load_inputs([FIXTURES / "bench-cpu.json"]))
    assert report.frameworks == [] and report.article_figures == []
    assert "Frameworks" not in render_markdown(report)


def test_a_variant_exported_by_train_export_shows_its_own_artifacts(tmp_path):
    from types import SimpleNamespace

    from deploykit.report.frameworks import framework_rows
    from deploykit.results import read_results

    def lat(model, fmt, p50):
        return SimpleNamespace(model=model, format=fmt, batch=1, status="ok", latency=SimpleNamespace(p50_us=p50))

    results = read_results(_comparison(tmp_path))
    latency = [lat("torch-mlp", "onnx", 20.0), lat("keras-cnn", "onnx", 30.0), lat("keras-sequential-cnn", "onnx", 31.0)]
    rows = {(r.variant, r.net): r for r in framework_rows([("ct", results)], latency)}
    assert rows[("keras-sequential", "cnn")].deploy_model == "keras-sequential-cnn"  # train-export --variants' folder
    assert rows[("keras-sequential", "cnn")].deploy_p50_us == {"onnx": 31.0}
    assert rows[("torch", "mlp")].deploy_model == "torch-mlp"  # none of its own: the reference model of its network

"""compare-training's registry, aggregation, results schema, TensorBoard writer and CLI errors (no training)."""

import subprocess
import sys

import pytest

from deploykit.compare.runner import _add_scaling, _record
from deploykit.compare.variants import DEFAULT_VARIANTS, VARIANTS, resolve_variants
from deploykit.errors import UsageError
from deploykit.results import ResultsFile, machine_info, read_results

DATA = {"train_samples": 1000, "test_samples": 200}


def _ok(repeat, epoch_s, acc=0.9, loss=0.3, rss=100):
    return {"status": "ok", "repeat": repeat, "epoch_s": epoch_s, "train_loss": [1.0] * len(epoch_s),
            "test_accuracy": acc, "test_loss": loss, "peak_rss_bytes": rss, "log_dir": f"/tb/r{repeat}",
            "versions": {"torch": "2.13.0"}, "threads": {"cpus": [0]}, "extra": {}}


def test_resolve_variants():
    assert [v.name for v in resolve_variants(None)] == list(DEFAULT_VARIANTS)
    assert all(VARIANTS[n].processes == 1 for n in DEFAULT_VARIANTS)
    assert len(resolve_variants("all")) == len(VARIANTS)
    assert [v.name for v in resolve_variants("torch, keras-jax,torch")] == ["torch", "keras-jax"]
    with pytest.raises(UsageError, match="unknown variant 'mxnet'.*keras-tape"):
        resolve_variants("torch,mxnet")


def test_record_medians_first_epoch_apart_and_spread():
    v = VARIANTS["torch"]
    runs = [_ok(0, [5.0, 1.0, 1.2], acc=0.90, rss=100), _ok(1, [4.0, 1.4, 1.6], acc=0.92, rss=300)]
    r = _record(v, "mlp", runs, None, 3, 32, 2, DATA)
    assert r.status == "ok" and r.first_epoch_s == 4.5  # median of the first epochs
    assert r.steady_epoch_s == pytest.approx(1.3)  # median over repeats of each run's later-epoch median
    assert r.steady_epoch_s_range == pytest.approx([1.1, 1.5])
    assert r.samples_per_s == pytest.approx(1000 / 1.3)
    assert r.peak_rss_bytes == 300 and r.test_accuracy_range == [0.90, 0.92] and len(r.runs) == 2


def test_record_without_runs_says_why():
    r = _record(VARIANTS["paddle"], "cnn", [], "paddle not installed: pip install 'deploykit[paddle]'", 2, 32, 2, DATA)
    assert r.status == "unavailable" and "deploykit[paddle]" in r.reason and r.steady_epoch_s is None
    failed = _record(VARIANTS["torch-compile"], "mlp", [{"status": "failed", "reason": "inductor: no compiler"}],
                     None, 2, 32, 2, DATA)
    assert failed.status == "failed" and failed.reason == "inductor: no compiler"


def test_one_epoch_has_no_steady_figure():
    r = _record(VARIANTS["torch"], "mlp", [_ok(0, [2.0])], None, 1, 32, 2, DATA)
    assert r.steady_epoch_s is None and r.samples_per_s == 500.0 and "first epoch" in r.extra["samples_per_s_from"]


def test_scaling_against_the_one_process_loop():
    single = _record(VARIANTS["torch"], "mlp", [_ok(0, [2.0, 1.0])], None, 2, 32, 2, DATA)
    ddp = _record(VARIANTS["torch-ddp-2"], "mlp", [_ok(0, [3.0, 2.0])], None, 2, 32, 2, DATA)
    _add_scaling([single, ddp])
    assert ddp.scaling == 0.5 and single.scaling is None


def test_results_file_round_trip(tmp_path):
    rec = _record(VARIANTS["torch"], "mlp", [_ok(0, [2.0, 1.0])], None, 2, 32, 2, DATA)
    path = ResultsFile(kind="compare-training", machine=machine_info(), training=[rec]).write(tmp_path / "r.json")
    back = read_results(path)
    assert back.kind == "compare-training" and back.training[0] == rec


def test_scalar_writer_is_read_by_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from deploykit.compare.tblog import ScalarWriter

    with ScalarWriter(tmp_path / "train") as w:
        for step, value in enumerate([0.9, 0.5, 0.25]):
            w.scalar("epoch_loss", value, step)
    acc = EventAccumulator(str(tmp_path / "train"))
    acc.Reload()
    assert [(e.step, round(e.value, 4)) for e in acc.Scalars("epoch_loss")] == [(0, 0.9), (1, 0.5), (2, 0.25)]


@pytest.mark.parametrize("args,needle", [
    (["--variants", "torch,mxnet"], "unknown variant 'mxnet'"),
    (["--nets", "mlp,resnet"], "--nets 'mlp,resnet'"),
    (["--threads", "999"], "--threads 999"),
])
def test_cli_bad_input_is_one_line(tmp_path, args, needle):
    proc = subprocess.run([sys.executable, "-m", "deploykit", "compare-training", "mnist", "--out", str(tmp_path), *args],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], proc.stderr


def test_export_plan_per_framework_and_keras_backend():
    from deploykit.compare.export import _formats, export_plan

    def plan(name, formats="all", net="mlp"):
        return _formats(export_plan(VARIANTS[name], net), formats, net)

    keras_all, none = plan("keras-tape")
    assert {"savedmodel", "tflite-qat", "onnx", "onnx-int8"} <= set(keras_all) and none == {}
    jax, jax_not = plan("keras-jax")
    assert "savedmodel" in jax and "tflite-int8" in jax and set(jax_not) == {"onnx", "onnx-int8"}
    assert "tf2onnx" in jax_not["onnx"]
    jax_cnn, jax_cnn_not = plan("keras-jax", net="cnn")  # JAX's pooling does not convert to full-int8 TFLite
    assert "tflite-int8" not in jax_cnn and "tflite-fp32" in jax_cnn and "reduce_window" in jax_cnn_not["tflite-int8"]
    on_torch, torch_not = plan("keras-torch", "onnx,tflite-fp32,torchscript")
    # a torch.nn.Module: tflite-fp32 comes from the PyTorch path (ONNX → onnx2tf), not from Keras' SavedModel
    assert on_torch == ["onnx", "tflite-fp32", "torchscript"] and torch_not == {}
    assert set(plan("keras-torch", "savedmodel,tflite-int8,onnx")[1]) == {"savedmodel", "tflite-int8"}
    assert plan("torch-compile", "onnx,tflite-fp32") == (["onnx", "tflite-fp32"], {})
    assert plan("paddle", "all", "cnn") == (["onnx"], {})


def test_a_record_written_with_the_single_artifact_field_still_loads():
    from deploykit.results import TrainingRecord
    old = dict(variant="paddle", net="mlp", framework="paddle", style="s", description="d", status="ok", epochs=1,
               batch_size=32, train_samples=10, test_samples=10, threads=1,
               artifact={"format": "onnx", "status": "passed"})
    assert TrainingRecord.model_validate(old).artifacts == [{"format": "onnx", "status": "passed"}]
    old["artifact"] = None
    assert TrainingRecord.model_validate(old).artifacts == []

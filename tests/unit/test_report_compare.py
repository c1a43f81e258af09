"""Merging results from several machines and targets into one comparison."""

import shutil
from pathlib import Path

import pytest

from deploykit.report.compare import build_report, normalise_compat
from deploykit.report.inputs import load_inputs
from deploykit.report.schema import Report

FIXTURES = Path(__file__).parents[1] / "fixtures" / "results"
CURRENT = ["bench-cpu.json", "bench-gpu.json", "bench-cuda-unavailable.json", "edge-bench-pi.json",
           "edge-bench-emulated.json", "edge-check-pi.json", "loadtest.json"]


@pytest.fixture(scope="module")
def report() -> Report:
    return build_report(load_inputs([FIXTURES / f for f in CURRENT] + [FIXTURES / "models" / "mnist"]))


def _rows(report, **match):
    return [r for r in report.rows if all(getattr(r, k) == v for k, v in match.items())]


def test_every_record_becomes_a_row_with_its_source_machine(report):
    by_kind = {s.kind for s in report.sources}
    assert by_kind == {"bench", "loadtest", "edge-bench", "edge-check", "train-export"}
    # 16 cpu + 10 gpu + 2 cuda-unavailable + 2 pi + 2 emulated + 1 check without a latency to sit beside
    assert len(report.rows) == 33
    for r in report.rows:
        source = report.source(r.source)
        assert source.machine is not None and source.machine.hostname == r.host and r.host in r.machine


def test_unavailable_and_failed_rows_keep_their_reason(report):
    (onnx_cuda,) = _rows(report, model="torch-mlp", format="onnx", target="cuda", host="ci-runner-7")
    assert onnx_cuda.status == "unavailable" and onnx_cuda.latency is None
    assert onnx_cuda.reason.startswith("no CUDA device")
    failed = _rows(report, format="tflite-qat")
    assert len(failed) == 2 and all(r.status == "failed" and "top-1 agreement" in r.reason for r in failed)
    assert any("could not be measured" in n for n in report.notes)


def test_emulated_rows_carry_their_label(report):
    emulated = _rows(report, target="emulated:rpi4")
    assert len(emulated) == 2
    assert all(r.emulated and r.label.startswith("emulated on Intel") and "not a device measurement" in r.label
               for r in emulated)
    assert not any(r.emulated for r in _rows(report, target="edge:rpi4"))


def test_edge_check_verdict_sits_beside_the_device_latency(report):
    (int8,) = _rows(report, model="keras-cnn", format="tflite-int8", target="edge:rpi4")
    assert int8.kind == "edge-bench" and int8.latency.p50_us == 231.0
    assert int8.compat.verdict == "compatible" and int8.compat.ok is True
    assert report.source(int8.compat.source).kind == "edge-check"
    # a verdict with no measurement to sit beside stays a row of its own
    (onnx,) = _rows(report, model="keras-cnn", format="onnx", target="edge:rpi4")
    assert onnx.kind == "edge-check" and onnx.latency is None
    assert onnx.compat.ok is False and "tflite-runtime cannot load ONNX" in onnx.compat.detail
    # the exact target wins: the emulation of the device does not take the device's verdict
    assert all(r.compat is None for r in _rows(report, target="emulated:rpi4"))


def test_load_steps_and_training_are_merged(report):
    assert [s.concurrency for s in report.load_steps if s.mode == "closed"] == [1, 4, 16, 64]
    assert all(s.corrected for s in report.load_steps if s.mode == "open")
    assert len(report.training) == 6
    apis = {t.model: t.api for t in report.training}
    assert apis["keras-functional"] == "functional" and apis["keras-subclass"] == "subclass"
    assert apis["torch-mlp"] == "nn.Module"
    torch_mlp = next(t for t in report.training if t.model == "torch-mlp")
    assert torch_mlp.seconds_per_epoch == pytest.approx(torch_mlp.train_seconds / torch_mlp.epochs)
    assert {a.format for a in torch_mlp.artifacts} == {"onnx", "onnx-int8", "torchscript"}
    (run,) = report.train_runs
    assert report.source(run.source).kind == "train-export" and run.wall_seconds > 0


def test_rows_are_sorted_and_window_spread_is_derived(report):
    keys = [(r.dataset or "", r.model, r.format, r.target, r.batch) for r in report.rows]
    assert keys == sorted(keys)
    (savedmodel,) = _rows(report, model="keras-cnn", format="savedmodel", target="cpu", batch=1)
    assert savedmodel.stable is False and savedmodel.window_spread == pytest.approx(0.44)


def test_bench_json_copies_are_kept_once(tmp_path):
    models = tmp_path / "models"
    shutil.copytree(FIXTURES / "models", models)
    shutil.copy(FIXTURES / "bench-cpu.json", models / "mnist" / "torch-mlp" / "bench.json")
    both = build_report(load_inputs([FIXTURES / "bench-cpu.json", models]))
    alone = build_report(load_inputs([FIXTURES / "bench-cpu.json"]))
    assert len(both.rows) == len(alone.rows) == 16
    assert not any(s.path.endswith("bench.json") for s in both.sources)
    assert any("read twice" in n for n in both.notes)
    # on its own, the model folder's bench.json is a source like any other
    only_folder = build_report(load_inputs([models]))
    assert len(only_folder.rows) == 16 and any(s.path.endswith("bench.json") for s in only_folder.sources)


def test_manifest_fills_what_a_record_lacks(tmp_path):
    from deploykit.results import read_results

    results = read_results(FIXTURES / "bench-cpu.json")
    for r in results.records:
        r.artifact_bytes = r.accuracy = r.max_abs_diff = r.top1_agreement = None
    bare = results.write(tmp_path / "bare.json")
    report = build_report(load_inputs([bare], [FIXTURES / "models" / "mnist"]))
    manifest_onnx = next(a for t in report.training if t.model == "torch-mlp" for a in t.artifacts if a.format == "onnx")
    (row,) = _rows(report, model="torch-mlp", format="onnx", batch=1)
    assert (row.artifact_bytes, row.accuracy, row.max_abs_diff) == (
        manifest_onnx.bytes, manifest_onnx.accuracy, manifest_onnx.max_abs_diff)


@pytest.mark.parametrize("raw,verdict,ok,detail", [
    ({"verdict": "compatible", "reasons": ["loads"]}, "compatible", True, "loads"),
    ({"compatible": False, "unsupported_ops": ["GELU", "BROADCAST_TO"]}, "incompatible", False,
     "unsupported ops: GELU, BROADCAST_TO"),
    ({"status": "FAILED", "reason": "op version too new"}, "FAILED", False, "op version too new"),
    ({"verdict": "incompatible", "error": "Didn't find op", "lacking_ops": [{"op": "FULLY_CONNECTED", "version": 12}]},
     "incompatible", False, "Didn't find op; lacking ops: FULLY_CONNECTED v12"),
    ({"verdict": "maybe"}, "maybe", None, None),
    ({}, "unknown", None, None),
])
def test_compat_spellings_are_normalised(raw, verdict, ok, detail):
    c = normalise_compat(raw, "S1")
    assert (c.verdict, c.ok, c.detail) == (verdict, ok, detail) and c.raw == raw

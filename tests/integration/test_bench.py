"""`deploykit bench` on real artifacts from the session's train-export run, through the real CLI entry,
each record measured in its own worker process by the real runtimes."""

import shutil

import pytest

from deploykit.bench.bench_file import BENCH_FILE, fastest_format
from deploykit.cli import main
from deploykit.manifest import ModelManifest, sha256_file
from deploykit.results import read_results
from deploykit.runtimes import get_runtime

QUICK = ["--min-time", "0.05", "--warmup", "0.02"]


def _copy_models(mnist_models, tmp_path, models):
    """Private copies: bench writes MODEL_DIR/bench.json, which other suites' model folders must not get."""
    for m in models:
        shutil.copytree(mnist_models / m, tmp_path / m)
    return tmp_path


def _combos(records):
    return sorted((r.model, r.format, r.batch, r.threads) for r in records)


def test_bench_cpu_records_are_complete_and_schema_valid(mnist_models, tmp_path, capsys):
    models = ["torch-mlp", "keras-sequential"]
    copies = _copy_models(mnist_models, tmp_path / "models", models)
    out = tmp_path / "results.json"
    rc = main(["bench", *(str(copies / m) for m in models), "--formats", "onnx,tflite-int8,torchscript",
               "--batch-sizes", "1,4", "--threads", "1,2", *QUICK, "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    results = read_results(out)
    assert results.kind == "bench" and results.machine.cores_logical >= 1
    assert results.model_copy(deep=True) == type(results).model_validate_json(results.model_dump_json())
    assert results.settings["batch_sizes"] == [1, 4] and results.settings["threads"] == [1, 2]
    assert "torch-mlp has no tflite-int8 artifact" in results.notes

    expected = sorted((m, f, b, t) for m, fmts in (("torch-mlp", ["onnx", "torchscript"]),
                                                    ("keras-sequential", ["onnx", "tflite-int8"]))
                      for f in fmts for b in (1, 4) for t in (1, 2))
    assert _combos(results.records) == expected
    for r in results.records:
        assert r.status == "ok", r.reason
        manifest = ModelManifest.read(mnist_models / r.model)
        entry = manifest.artifact(r.format)
        # what the manifest says is copied, not re-derived
        assert (r.artifact_bytes, r.accuracy, r.runtime) == (entry.bytes, entry.accuracy, entry.runtime)
        assert (r.max_abs_diff, r.top1_agreement) == (entry.parity.max_abs_diff, entry.parity.top1_agreement)
        assert r.target == r.device == "cpu" and r.runtime_version == get_runtime(r.runtime).version()
        lat = r.latency
        # figures come from the last `figure_windows` windows (the steady run), never a blend with settling ones
        assert r.windows == len(r.window_p50s_us) >= r.figure_windows >= 3 and r.stable is not None
        assert lat.samples == sum(r.extra["window_calls"][-r.figure_windows:]) > 0
        tails = [getattr(lat, f) for f in ("p90_us", "p99_us", "p999_us")]
        assert all(t is not None or f in lat.withheld for t, f in zip(tails, ("p90_us", "p99_us", "p999_us")))
        shown = [lat.min_us, lat.p50_us, *[t for t in tails if t is not None], lat.max_us]
        assert shown == sorted(shown)
        assert lat.p50_ci_us[0] <= lat.p50_us <= lat.p50_ci_us[1]
        assert r.load_ms > 0 and r.first_inference_ms > 0 and r.import_ms >= 0 and r.process_start_ms > 0
        assert r.cold_start_ms >= r.process_start_ms + r.import_ms + r.load_ms
        # calls run back to back, so the wall-clock throughput cannot beat batch / mean latency
        assert 0 < r.throughput_sps <= r.batch * 1e6 / lat.mean_us * 1.0001
        assert r.peak_rss_bytes >= r.extra["rss_before_load_bytes"] > 0
        assert r.extra["isolation"] == "fresh process" and "Predictor.run" in r.extra["timed"]
        assert r.extra["input"] == "reference.npz"
    assert len({r.extra["rss_start_bytes"] for r in results.records}) > 1 or len(results.records) == 1

    # each model folder has its own records, and serving can pick the fastest format from them
    for m in models:
        own = read_results(copies / m / BENCH_FILE)
        assert _combos(own.records) == [c for c in expected if c[0] == m]
        assert fastest_format(copies / m) in {r.format for r in own.records}
    assert "p50 µs" in capsys.readouterr().out


def test_bench_cuda_without_gpu_gives_unavailable_records_with_reasons(mnist_models, tmp_path, capsys):
    copies = _copy_models(mnist_models, tmp_path / "models", ["torch-mlp", "keras-sequential"])
    out = tmp_path / "cuda.json"
    rc = main(["bench", str(copies / "torch-mlp"), str(copies / "keras-sequential"), "--device", "cuda",
               "--formats", "onnx,torchscript,savedmodel,tflite-fp32", "--batch-sizes", "1,8", *QUICK,
               "--out", str(out), "--no-model-files"])
    assert rc == 0, capsys.readouterr().err
    results = read_results(out)
    expected = sorted((m, f, b, 1) for m, fmts in (("torch-mlp", ["onnx", "torchscript", "tflite-fp32"]),
                                                   ("keras-sequential", ["onnx", "savedmodel", "tflite-fp32"]))
                      for f in fmts for b in (1, 8))
    assert _combos(results.records) == expected  # never skipped
    for r in results.records:
        ok, why = get_runtime(r.runtime).available("cuda")
        assert not ok, "this test is for machines without a GPU"
        assert (r.status, r.reason, r.target, r.device) == ("unavailable", why, "cuda", "cuda")
        assert r.latency is None and r.load_ms is None  # nothing faked
        assert r.artifact_bytes and r.accuracy is not None
    assert any("unavailable on cuda: torch" in n for n in results.notes)
    assert not (copies / "torch-mlp" / BENCH_FILE).exists()  # --no-model-files


def test_tampered_and_broken_artifacts_become_failed_records(mnist_models, tmp_path, capsys):
    model_dir = tmp_path / "torch-mlp"
    shutil.copytree(mnist_models / "torch-mlp", model_dir)
    manifest = ModelManifest.read(model_dir)
    # onnx: bytes changed behind the manifest's back -> refused by the checksum check
    onnx = model_dir / manifest.artifact("onnx").path
    onnx.write_bytes(onnx.read_bytes()[:-1] + b"\0")
    # onnx-int8: garbage with a matching checksum -> the runtime itself fails inside the worker
    broken = manifest.artifact("onnx-int8")
    (model_dir / broken.path).write_bytes(b"not an onnx graph")
    broken.sha256 = sha256_file(model_dir / broken.path)
    manifest.write(model_dir)

    out = tmp_path / "results.json"
    rc = main(["bench", str(model_dir), "--formats", "onnx,onnx-int8,torchscript", "--batch-sizes", "1", *QUICK,
               "--out", str(out)])
    assert rc == 1
    by_format = {r.format: r for r in read_results(out).records}
    assert by_format["onnx"].status == "failed" and "does not match the manifest" in by_format["onnx"].reason
    # garbage that passes the checksum: the runtime boundary's one line, the backend's type named
    assert by_format["onnx-int8"].status == "failed"
    assert "onnxruntime cannot load model_int8.onnx: InvalidProtobuf" in by_format["onnx-int8"].reason
    assert by_format["torchscript"].status == "ok"
    err = capsys.readouterr().err
    assert "2 record(s) failed" in err and "Traceback" not in err


@pytest.mark.parametrize("args,needle", [(["--batch-sizes", "1,zero"], "--batch-sizes"),
                                         (["--formats", "onnx,coreml"], "unknown format 'coreml'"),
                                         (["--device", "tpu"], "--device")])
def test_bad_arguments_are_one_line_exit_2(mnist_models, tmp_path, capsys, args, needle):
    rc = main(["bench", str(mnist_models / "torch-mlp"), *args, "--out", str(tmp_path / "r.json")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and needle in err
    assert not (tmp_path / "r.json").exists()

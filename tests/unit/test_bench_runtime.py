"""`deploykit bench` plumbing without runtimes: argument parsing, planning, file conventions, table."""

import json
import subprocess
import sys

import pytest

from deploykit.bench.bench_file import BENCH_FILE, fastest_format, write_model_bench_files
from deploykit.bench.plan import plan_jobs, resolve_model_dirs
from deploykit.bench.settings import BenchJob, BenchSettings, parse_int_list
from deploykit.bench.table import bench_table
from deploykit.errors import ManifestError, UsageError
from deploykit.manifest import ArtifactEntry, InputSpec, ModelManifest, Parity
from deploykit.results import BenchRecord, LatencyStats, ResultsFile, machine_info, read_results


def _entry(fmt, status="passed", runtime="onnxruntime", error=None) -> ArtifactEntry:
    return ArtifactEntry(format=fmt, path=f"model.{fmt}", bytes=1234, sha256="0" * 64, runtime=runtime,
                         input=InputSpec(name="x", shape=[None, 28, 28], layout="NHW"), status=status, error=error,
                         accuracy=0.9, parity=Parity(samples=10, max_abs_diff=1e-6, top1_agreement=1.0, atol=1e-4,
                                                     min_top1_agreement=0.99, passed=status == "passed"))


def _model_dir(root, name, entries):
    d = root / name
    ModelManifest(model=name, framework="keras", architecture="mlp", artifacts=entries,
                  input=InputSpec(name="x", shape=[None, 28, 28], layout="NHW")).write(d)
    return d


def _record(model, fmt, p50, batch=1, target="cpu", threads=1, status="ok") -> BenchRecord:
    lat = LatencyStats(samples=100, p50_us=p50, p90_us=p50, p99_us=p50, p999_us=p50, mean_us=p50, std_us=0,
                       min_us=p50, max_us=p50) if status == "ok" else None
    return BenchRecord(target=target, model=model, format=fmt, runtime="onnxruntime", batch=batch, threads=threads,
                       status=status, latency=lat, reason=None if status == "ok" else "why")


@pytest.mark.parametrize("text,want", [("1,8,32", [1, 8, 32]), ("4", [4]), ("2, 2,1", [2, 1])])
def test_parse_int_list(text, want):
    assert parse_int_list(text, "--batch-sizes") == want


@pytest.mark.parametrize("text", ["", "0", "1,-2", "a", "1.5", ","])
def test_parse_int_list_rejects_with_the_option_name(text):
    with pytest.raises(UsageError, match="--batch-sizes"):
        parse_int_list(text, "--batch-sizes")


@pytest.mark.parametrize("kw,match", [({"device": "tpu"}, "--device"), ({"formats": ["onxx"]}, "unknown format 'onxx'"),
                                      ({"min_time_s": 0}, "--min-time"), ({"batch_sizes": []}, "batch sizes"),
                                      ({"threads": [0]}, "thread")])
def test_settings_reject_bad_values(kw, match):
    with pytest.raises(UsageError, match=match):
        BenchSettings(**kw)


def test_settings_record_how_figures_are_measured():
    d = BenchSettings(min_time_s=2).as_dict()
    assert d["batch_sizes"] == [1, 8, 32] and d["threads"] == [1] and d["max_time_s"] == 40
    assert "Predictor.run" in d["timed"] and "fresh process" in d["isolation"]
    json.dumps(d)


def test_plan_defaults_to_passed_artifacts_and_says_what_it_left_out(tmp_path):
    d = _model_dir(tmp_path, "m1", [_entry("onnx"), _entry("tflite-int8", "failed", "litert", error="converter crashed"),
                                     _entry("onnx-int8", "exported")])
    jobs, notes = plan_jobs([d], BenchSettings(batch_sizes=[1, 4], threads=[1, 2]))
    assert [(j.format, j.threads, j.batch) for _, _, j in jobs] == [("onnx", 1, 1), ("onnx", 1, 4), ("onnx", 2, 1),
                                                                     ("onnx", 2, 4)]
    assert any("tflite-int8" in n and "failed" in n and "converter crashed" in n for n in notes)
    assert any("onnx-int8" in n and "exported" in n for n in notes)


def test_plan_with_formats_takes_listed_artifacts_whatever_their_status(tmp_path):
    d1 = _model_dir(tmp_path, "m1", [_entry("onnx"), _entry("onnx-int8", "exported")])
    d2 = _model_dir(tmp_path, "m2", [_entry("torchscript", runtime="torch")])
    jobs, notes = plan_jobs([d1, d2], BenchSettings(formats=["onnx-int8", "torchscript"], batch_sizes=[1]))
    assert [(m.model, e.format) for m, e, _ in jobs] == [("m1", "onnx-int8"), ("m2", "torchscript")]
    assert notes == ["m1 has no torchscript artifact", "m2 has no onnx-int8 artifact"]
    with pytest.raises(UsageError, match="nothing to measure: no savedmodel"):
        plan_jobs([d1, d2], BenchSettings(formats=["savedmodel"]))


def test_resolve_model_dirs(tmp_path):
    d1 = _model_dir(tmp_path / "models", "m1", [_entry("onnx")])
    d2 = _model_dir(tmp_path / "models", "m2", [_entry("onnx")])
    (tmp_path / "models" / "train-export.json").write_text("{}")
    # a shell glob (models/*) catches the run summary: ignored with a note; a parent folder is searched.
    dirs, notes, stored = resolve_model_dirs([str(d1), str(tmp_path / "models" / "train-export.json"),
                                              str(tmp_path / "models"), str(d1 / "manifest.json")])
    assert [d.name for d in dirs] == ["m1", "m2"] and stored == set()
    assert notes == [f"ignored {tmp_path / 'models' / 'train-export.json'}: not a model folder"]
    with pytest.raises(ManifestError, match="no model folder"):
        resolve_model_dirs([str(tmp_path / "models" / "train-export.json")])
    with pytest.raises(ManifestError, match="no such model folder"):
        resolve_model_dirs([str(tmp_path / "nope")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ManifestError, match="no manifest.json under"):
        resolve_model_dirs([str(tmp_path / "empty")])
    assert d2.exists()


def test_model_bench_file_merges_with_earlier_runs_on_this_machine(tmp_path):
    d = _model_dir(tmp_path, "m1", [_entry("onnx"), _entry("tflite-int8", runtime="litert")])
    machine = machine_info()
    first = ResultsFile(kind="bench", machine=machine, records=[_record("m1", "onnx", 12.0),
                                                                _record("m1", "tflite-int8", 4.0)])
    write_model_bench_files({d: first})
    assert fastest_format(d) == "tflite-int8"
    # A cuda run adds its records and keeps the CPU ones; a re-measured CPU combination replaces the old one.
    second = ResultsFile(kind="bench", machine=machine, records=[_record("m1", "onnx", 50.0, target="cuda"),
                                                                 _record("m1", "tflite-int8", 20.0)])
    (path,) = write_model_bench_files({d: second})
    back = read_results(path)
    assert path == d / BENCH_FILE
    assert sorted((r.target, r.format, r.latency.p50_us) for r in back.records) == [
        ("cpu", "onnx", 12.0), ("cpu", "tflite-int8", 20.0), ("cuda", "onnx", 50.0)]
    assert fastest_format(d) == "onnx" and fastest_format(d, target="cuda") == "onnx"
    assert fastest_format(d, batch=32) is None
    # A file from another machine is replaced, not merged.
    other = machine.model_copy(update={"hostname": "elsewhere"})
    read_results(path).model_copy(update={"machine": other}).write(path)
    write_model_bench_files({d: first})
    assert len(read_results(path).records) == 2


def test_fastest_format_ignores_artifacts_that_did_not_pass_and_unavailable_records(tmp_path):
    d = _model_dir(tmp_path, "m1", [_entry("onnx"), _entry("onnx-int8", "exported")])
    assert fastest_format(d) is None  # no bench.json yet
    ResultsFile(kind="bench", machine=machine_info(), records=[
        _record("m1", "onnx", 12.0), _record("m1", "onnx-int8", 3.0),
        _record("m1", "onnx", 1.0, target="cuda", status="unavailable")]).write(d / BENCH_FILE)
    assert fastest_format(d) == "onnx" and fastest_format(d, target="cuda") is None


def test_table_shows_status_and_reason():
    from rich.console import Console

    results = ResultsFile(kind="bench", machine=machine_info(), records=[
        _record("m1", "onnx", 12.5), _record("m1", "torchscript", 0, target="cuda", status="unavailable")])
    con = Console(width=250, record=True)
    con.print(bench_table(results))
    text = con.export_text()
    assert "12.5" in text and "unavailable: why" in text


def test_table_shows_cold_start_steps_and_withheld_tails():
    from rich.console import Console

    from deploykit.bench.protocol import latency_stats

    r = _record("m1", "savedmodel", 0)
    r.latency = LatencyStats(**latency_stats([3_000_000] * 59))  # 59 samples: no p99
    r.latency.p50_ci_us = [2990.0, 3010.0]
    r.process_start_ms, r.import_ms, r.load_ms, r.first_inference_ms = 310.0, 9200.0, 106.0, 12.0
    r.cold_start_ms = 9628.0
    con = Console(width=300, record=True)
    con.print(bench_table(ResultsFile(kind="bench", machine=machine_info(), records=[r])))
    text = con.export_text()
    assert "too few samples" in text and "9,200.0" in text and "310.0" in text and "9,628.0" in text
    assert "2,990–3,010" in text


def test_worker_entry_point_reports_unavailable_device(tmp_path):
    """The worker process (python -m deploykit.bench.worker) turns a missing device into a record."""
    d = _model_dir(tmp_path, "m1", [_entry("tflite-fp32", runtime="litert")])
    job = BenchJob(model_dir=str(d), format="tflite-fp32", device="cuda", threads=1, batch=1, warmup_s=0,
                   min_time_s=0.01, window_s=0.01, max_windows=3, tolerance=0.1, max_time_s=1)
    from dataclasses import asdict

    out = tmp_path / "record.json"
    proc = subprocess.run([sys.executable, "-m", "deploykit.bench.worker", json.dumps(asdict(job)), str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    record = BenchRecord.model_validate_json(out.read_text())
    assert record.status == "unavailable" and "CPU" in record.reason
    assert (record.artifact_bytes, record.accuracy, record.top1_agreement) == (1234, 0.9, 1.0)


@pytest.mark.parametrize("out,needle", [("folder", "is a folder"), ("blocker/r.json", "not writable")])
def test_unusable_out_fails_before_measuring(tmp_path, capsys, out, needle):
    from deploykit.cli import main

    d = _model_dir(tmp_path, "m1", [_entry("onnx")])
    (tmp_path / "folder").mkdir()
    (tmp_path / "blocker").write_text("a file where a folder should be")
    assert main(["bench", str(d), "--out", str(tmp_path / out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err

"""`deploykit edge bench --target local --profile rpi4`: the device runner here, on pinned cores, every
figure labelled as an emulation; and the report that puts the compatibility verdict beside it."""

import os
import subprocess
import sys

from deploykit.results import machine_info, read_results


def deploykit(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "deploykit", *args], capture_output=True, text=True, timeout=timeout)


def test_emulated_bench_is_labelled_pinned_and_reported_with_its_verdict(mnist_models, tmp_path):
    model = str(mnist_models / "keras-cnn")
    bench_out, check_out = tmp_path / "edge-bench.json", tmp_path / "edge-check.json"
    proc = deploykit("edge", "bench", model, "--target", "local", "--profile", "rpi4", "--runtime",
                     "tflite-runtime==2.14.0", "--formats", "tflite-fp32,tflite-dynamic", "--min-time", "0.1",
                     "--samples", "100", "--out", str(bench_out))
    assert proc.returncode == 0, proc.stderr
    results = read_results(bench_out)
    cpu = machine_info().cpu_model
    label = f"emulated on {cpu}, not a device measurement"
    available = sorted(os.sched_getaffinity(0))
    cores = available[: min(4, len(available))]
    assert results.notes[0].startswith(label)
    assert results.machine.extra["emulates"]["profile"] == "rpi4"
    by_format = {r.format: r for r in results.records}
    fp32 = by_format["tflite-fp32"]
    assert (fp32.target, fp32.emulated, fp32.label) == ("emulated:rpi4", True, label)
    assert fp32.status == "ok" and fp32.latency.p50_us > 0
    assert fp32.threads == len(cores) and fp32.extra["pinned_cpus"] == cores
    assert fp32.runtime == "tflite-runtime" and fp32.runtime_version == "2.14.0"
    assert by_format["tflite-dynamic"].compat["verdict"] == "incompatible"
    assert all(r.emulated and r.label == label for r in results.records)

    check = deploykit("edge", "check", model, "--profile", "rpi4", "--formats", "tflite-fp32,tflite-dynamic",
                      "--out", str(check_out))
    assert check.returncode == 1, check.stderr
    report = deploykit("report", str(check_out), str(bench_out))
    assert report.returncode == 0, report.stderr
    md = report.stdout
    assert label in md
    # The verdict of `edge check --profile rpi4` sits beside the rpi4 emulation's latency.
    fp32_rows = [ln for ln in md.splitlines() if "| tflite-fp32 |" in ln and "µs" in ln]
    assert fp32_rows and all("compatible" in ln for ln in fp32_rows)
    assert any("| tflite-dynamic |" in ln and "incompatible" in ln for ln in md.splitlines())


def test_default_local_runtime_is_deploykits_litert(mnist_models, tmp_path):
    out = tmp_path / "edge-bench.json"
    proc = deploykit("edge", "bench", str(mnist_models / "keras-cnn"), "--target", "local", "--profile", "rpi5",
                     "--threads", "1", "--formats", "tflite-int8", "--batch-sizes", "1,8", "--min-time", "0.1",
                     "--samples", "50", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    records = read_results(out).records
    assert [(r.runtime, r.threads, r.batch) for r in records] == [("litert", 1, 1), ("litert", 1, 8)]
    assert all(r.target == "emulated:rpi5" and r.compat["verdict"] == "compatible" for r in records)
    assert records[1].throughput_sps > 0

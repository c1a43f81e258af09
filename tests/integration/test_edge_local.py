"""`deploykit edge bench --target local --profile rpi4`: the device runner here, on pinned cores, every
figure labelled as an emulation; and the report that puts the compatibility verdict beside it."""

import os
import subprocess
import sys

import pytest

from deploykit.results import machine_info, read_results


def deploykit(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "deploykit", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def rpi4_check(mnist_models, tmp_path_factory):
    out = tmp_path_factory.mktemp("check") / "edge-check.json"
    check = deploykit("edge", "check", str(mnist_models / "keras-cnn"), "--profile", "rpi4", "--formats",
                      "tflite-fp32,tflite-dynamic", "--out", str(out))
    assert check.returncode == 1, check.stderr  # tflite-dynamic does not load in tflite-runtime 2.14.0
    return out


def _bench(mnist_models, out, *args):
    return deploykit("edge", "bench", str(mnist_models / "keras-cnn"), "--target", "local", "--profile", "rpi4",
                     "--formats", "tflite-fp32,tflite-dynamic", "--min-time", "0.1", "--samples", "100",
                     "--out", str(out), *args)


def _rows(md, fmt):
    return [ln for ln in md.splitlines() if f"| {fmt} |" in ln and "emulated:rpi4" in ln]


def test_emulated_rpi4_runs_the_profiles_runtime_and_reports_both_verdicts(mnist_models, rpi4_check, tmp_path):
    bench_out = tmp_path / "edge-bench.json"
    proc = _bench(mnist_models, bench_out)  # no --runtime: the profile's tflite-runtime 2.14.0
    assert proc.returncode == 0, proc.stderr
    results = read_results(bench_out)
    cpu = machine_info().cpu_model
    label = f"emulated on {cpu} in tflite-runtime==2.14.0 (the profile's runtime), not a device measurement"
    available = sorted(os.sched_getaffinity(0))
    cores = available[: min(4, len(available))]
    assert results.notes[0].startswith(label) and "running its runtime (tflite-runtime==2.14.0" in results.notes[0]
    assert results.machine.extra["emulates"]["profile"] == "rpi4"
    by_format = {r.format: r for r in results.records}
    fp32 = by_format["tflite-fp32"]
    assert (fp32.target, fp32.emulated, fp32.label) == ("emulated:rpi4", True, label)
    assert fp32.status == "ok" and fp32.latency.p50_us > 0
    assert fp32.threads == len(cores) and fp32.extra["pinned_cpus"] == cores
    assert fp32.runtime == "tflite-runtime" and fp32.runtime_version == "2.14.0"
    assert by_format["tflite-dynamic"].compat["verdict"] == "incompatible"
    assert all(r.extra["runtime_source"] == "profile" and r.label == label for r in results.records)

    report = deploykit("report", str(rpi4_check), str(bench_out))
    assert report.returncode == 0, report.stderr
    md = report.stdout
    assert label in md
    # The row's own verdict and the check's, side by side; they agree here.
    dyn = _rows(md, "tflite-dynamic")
    assert dyn and all(ln.count("incompatible") >= 2 and "disagree" not in ln for ln in dyn)
    assert all("compatible" in ln for ln in _rows(md, "tflite-fp32"))


def test_runtime_override_is_recorded_and_the_disagreement_shown(mnist_models, rpi4_check, tmp_path):
    bench_out = tmp_path / "edge-bench.json"
    proc = _bench(mnist_models, bench_out, "--runtime", "ai-edge-litert==2.3.0")
    assert proc.returncode == 0, proc.stderr
    results = read_results(bench_out)
    assert all(r.extra["runtime_source"] == "override" and "(--runtime override)" in r.label
               and r.runtime == "litert" and r.runtime_version == "2.3.0" for r in results.records)
    assert any("overrides the rpi4 profile's tflite-runtime==2.14.0" in n for n in results.notes)
    assert {r.format: r.compat["verdict"] for r in results.records}["tflite-dynamic"] == "compatible"

    md = deploykit("report", str(rpi4_check), str(bench_out)).stdout
    dyn = _rows(md, "tflite-dynamic")
    assert dyn and all("**disagree**: incompatible" in ln for ln in dyn)  # LiteRT loads it; the Pi's runtime does not
    assert not any("disagree" in ln for ln in _rows(md, "tflite-fp32"))


def test_sustained_samples_clock_and_temperature_during_the_run(mnist_models, tmp_path):
    out = tmp_path / "sustained.json"
    proc = deploykit("edge", "bench", str(mnist_models / "keras-cnn"), "--target", "local", "--profile", "rpi4",
                     "--formats", "tflite-fp32", "--samples", "50", "--sustained", "2s", "--op-profile", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    results = read_results(out)
    r = results.records[0]
    assert r.status == "ok" and r.extra["measured_s"] >= 2.0  # at least the sustained time was measured
    samples = r.extra["state_samples"]
    assert len(samples) >= 2 and [s["t_s"] for s in samples] == sorted(s["t_s"] for s in samples)
    assert samples[-1]["t_s"] >= 1.0
    assert any(n.startswith("sustained 2 s, keras-cnn/tflite-fp32") for n in results.notes)
    assert r.extra["op_profile"]["not_available"].startswith("not available: the TFLite Python interpreters")
    # Whatever this machine lacks (clock, temperature, throttling record) is named, never left null.
    missing = results.machine.extra["not_available"]
    assert all(v.startswith("not available: ") for v in missing.values())
    assert results.machine.extra["throttled"] in (True, False) or results.machine.extra["throttled"].startswith("not available")


def test_a_bad_sustained_duration_is_one_line(mnist_models, tmp_path):
    proc = deploykit("edge", "bench", str(mnist_models / "keras-cnn"), "--target", "local", "--profile", "rpi4",
                     "--sustained", "soon", "--out", str(tmp_path / "x.json"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "--sustained 'soon'" in proc.stderr
    assert not (tmp_path / "x.json").exists()

"""Compatibility verdicts and the messages that say what to do; edge-bench result helpers."""

import base64
import io

import numpy as np
import pytest

from deploykit.edge.bench import emulation_label, local_runtime, machine_from_facts, pinned_cores, throttle_notes
from deploykit.edge.profiles import get_profile
from deploykit.edge.compat import static_verdict, verdict
from deploykit.edge.tflite_file import OpCode, TfliteInfo
from deploykit.manifest import ArtifactEntry, InputSpec, OutputSpec, Parity
from deploykit.results import ResultsFile

RT = {"package": "tflite-runtime", "module": "tflite_runtime.interpreter", "version": "2.14.0"}


def entry(fmt="tflite-dynamic", atol=None, min_top1=0.98, out_dtype="float32"):
    return ArtifactEntry(
        format=fmt, path=f"model_{fmt}.tflite", bytes=1000, sha256="0" * 64, runtime="litert", status="passed",
        input=InputSpec(name="x", shape=[None, 28, 28, 1], layout="NHWC"),
        output=OutputSpec(name="y", shape=[None, 10], dtype=out_dtype,
                          scale=1 / 256 if out_dtype == "int8" else None, zero_point=-128 if out_dtype == "int8" else None),
        parity=Parity(samples=10, max_abs_diff=0.01, top1_agreement=1.0, atol=atol, min_top1_agreement=min_top1, passed=True),
        tool_versions={"tensorflow": "2.21.0", "ai-edge-litert": "2.3.0"})


def info(min_runtime="2.17.0"):
    return TfliteInfo(path="m.tflite", bytes=1000, min_runtime_version=min_runtime,
                      ops=[OpCode(0, "CONV_2D", 3, 5), OpCode(1, "FULLY_CONNECTED", 9, 12)])


def encoded(a):
    f = io.BytesIO()
    np.save(f, a)
    return base64.b64encode(f.getvalue()).decode()


def test_missing_op_message_names_op_version_converter_and_ways_out():
    result = {"runtime": RT, "load": {"ok": False, "kind": "missing-op",
                                      "error": "Didn't find op for builtin opcode 'FULLY_CONNECTED' version '12'.",
                                      "lacking_ops": [{"op": "FULLY_CONNECTED", "version": 12, "runtime_max_version": 10}]}}
    compat, probs = verdict(entry(), info(), result, None, ["tflite-fp32", "tflite-int8"], where="here")
    assert probs is None
    assert (compat["verdict"], compat["ok"], compat["loads"]) == ("incompatible", False, False)
    msg = compat["reason"]
    for needle in ("FULLY_CONNECTED version 12", "up to version 10", "tensorflow 2.21.0", "TFLite ≥ 2.17.0",
                   "deploy tflite-fp32, tflite-int8 instead", "_experimental_disable_per_channel_quantization_for_dense_layers",
                   "TensorFlow 2.14", "tflite-runtime 2.14.0"):
        assert needle in msg, needle
    assert compat["ways_out"][0].startswith("deploy tflite-fp32")
    assert compat["runtime_error"].startswith("Didn't find op")


def test_other_load_errors_keep_the_runtime_words():
    result = {"runtime": RT, "load": {"ok": False, "kind": "other", "error": "Model provided has model identifier 'xxxx'"}}
    compat, _ = verdict(entry("tflite-fp32"), info("1.5.0"), result, None, [], where="here")
    assert "model identifier" in compat["reason"] and compat["verdict"] == "incompatible"
    assert "deploy" not in compat["reason"]  # nothing else loaded: no such way out is offered


def test_parity_against_reference_with_dequantized_int8_outputs():
    ref = np.eye(10, dtype=np.float32)[np.arange(20) % 10] * 0.9 + 0.01
    raw = np.clip(np.round(ref / (1 / 256)) - 128, -128, 127).astype(np.int8)
    result = {"runtime": RT, "load": {"ok": True}, "outputs": encoded(raw)}
    e = entry("tflite-int8", out_dtype="int8")
    compat, probs = verdict(e, info("1.14.0"), result, {"probs": ref, "y": np.arange(20) % 10}, ["tflite-int8"], where="here")
    assert compat["verdict"] == "compatible" and compat["ok"] is True
    assert compat["max_abs_diff"] < 1 / 256 and compat["top1_agreement"] == 1.0
    assert compat["accuracy_on_reference"] == 1.0
    assert probs.dtype == np.float32


def test_outputs_that_differ_fail_parity():
    ref = np.eye(10, dtype=np.float32)[np.arange(20) % 10]
    wrong = np.roll(ref, 1, axis=1)
    result = {"runtime": RT, "load": {"ok": True}, "outputs": encoded(wrong)}
    compat, _ = verdict(entry("tflite-fp32", atol=1e-4, min_top1=0.999), info("1.5.0"), result, {"probs": ref, "y": None},
                        [], where="here")
    assert compat["verdict"] == "parity-failed" and compat["ok"] is False
    assert "top-1 agreement 0.00%" in compat["reason"] and "max |Δp|" in compat["reason"]


def test_edgetpu_unavailable_is_not_a_verdict():
    result = {"runtime": RT, "load": {"ok": False, "unavailable": "Edge TPU delegate libedgetpu.so.1 unavailable"}}
    compat, _ = verdict(entry("tflite-edgetpu"), info(), result, None, [], where="here")
    assert compat["verdict"] == "unavailable" and compat["ok"] is None


@pytest.mark.parametrize("min_runtime,verdict_word,ok", [("2.17.0", "incompatible", False), ("1.14.0", "unknown", None),
                                                         (None, "unknown", None)])
def test_static_verdict(min_runtime, verdict_word, ok):
    compat = static_verdict(entry(), info(min_runtime), "tflite-runtime", "2.5.0.post1", "no wheel here")
    assert (compat["verdict"], compat["ok"], compat["static"]) == (verdict_word, ok, True)
    if ok is False:
        assert "needs TFLite ≥ 2.17.0" in compat["reason"] and "TensorFlow 2.5" in compat["reason"]
    else:
        assert "not tried: no wheel here" in compat["reason"]


def test_static_verdict_never_compares_litert_numbers():
    compat = static_verdict(entry(), info("2.17.0"), "ai-edge-litert", "1.0.1", "no wheel here")
    assert compat["verdict"] == "unknown"  # LiteRT versions are not TensorFlow's: 1.0.1 is not "older than 2.17"


def test_throttle_notes_make_throttling_visible():
    states = [("start", {"arm_clock_hz": 1_800_000_000, "temp_c": 60.0, "throttled_flags": []}),
              ("tflite-fp32 after", {"arm_clock_hz": 1_000_000_000, "temp_c": 82.5, "throttled": "0x20002",
                                     "throttled_flags": ["arm frequency capped now"], "throttled_now": True})]
    notes = throttle_notes(states)
    assert notes[0].startswith("THROTTLING") and "arm frequency capped now" in notes[0]
    assert "1,000–1,800 MHz" in notes[1] and "60.0–82.5 °C" in notes[1]
    assert throttle_notes([("start", {"time": 1.0, "source": "sysfs"})]) == []


def test_throttle_notes_use_the_now_bits_and_say_what_is_not_available():
    past = {"throttled": "0x50000", "throttled_flags": ["under-voltage occurred", "throttling occurred"],
            "throttled_now": False, "arm_clock_hz": 1_500_000_000, "temp_c": 50.0}
    notes = throttle_notes([("start", past)])
    assert not any(n.startswith("THROTTLING") for n in notes)  # since boot, not during this run
    assert "since boot, not during this run" in notes[0]
    bare = {"time": 1.0, "source": "sysfs", "throttled_now": None,
            "not_available": {"temp_c": "not available: no vcgencmd and no thermal zone in /sys/class/thermal"}}
    assert throttle_notes([("start", bare)]) == [
        "device facts not available: no vcgencmd and no thermal zone in /sys/class/thermal"]
    facts = {"hostname": "board", "not_available": {"board": "not available: no /proc/device-tree/model"}}
    machine = machine_from_facts(facts, bare | {"not_available": {"throttled": "not available: no vcgencmd"}}, bare)
    assert machine.extra["throttled"] == "not available: no vcgencmd"  # not False: nothing was measured
    assert machine.extra["not_available"]["board"].startswith("not available")


def test_device_facts_become_machine_info_that_merges():
    facts = {"hostname": "raspberrypi", "board": "Raspberry Pi 4 Model B Rev 1.4", "cpu_model": "Cortex-A72",
             "arch": "aarch64", "cores_logical": 4, "memory_bytes": 4 << 30, "os": "Debian 12", "python": "3.11.2",
             "numpy": "1.26.4", "runtime": RT}
    machine = machine_from_facts(facts, {"throttled_now": False}, {"throttled_now": True})
    assert machine.board.startswith("Raspberry Pi 4") and machine.extra["throttled"] is True
    assert ResultsFile(kind="edge-bench", machine=machine).machine.cores_logical == 4


def test_emulation_defaults_to_the_profiles_runtime():
    rpi4 = get_profile("rpi4")
    spec, source, notes = local_runtime(rpi4, None)
    assert (str(spec), source, notes) == ("tflite-runtime==2.14.0", "profile", [])
    spec, source, notes = local_runtime(rpi4, "tflite-runtime==2.14.0")
    assert source == "profile"


def test_emulation_label_and_pinning():
    assert emulation_label("Intel Xeon", "tflite-runtime==2.14.0", "profile") == \
        "emulated on Intel Xeon in tflite-runtime==2.14.0 (the profile's runtime), not a device measurement"
    assert "(--runtime override)" in emulation_label("Intel Xeon", "ai-edge-litert==2.3.0", "override")
    cores = pinned_cores(4)
    assert 1 <= len(cores) <= 4 and cores == sorted(cores)
    assert len(pinned_cores(1)) == 1

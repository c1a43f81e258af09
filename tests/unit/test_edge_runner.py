"""The device runner's pure parts: error parsing, device facts and state, job handling, exit codes."""

import ast
import json
import os
import stat
import sys
from pathlib import Path

import pytest

from deploykit.edge import runner


@pytest.mark.parametrize("message,expected", [
    ("Didn't find op for builtin opcode 'FULLY_CONNECTED' version '12'. An older version of this builtin might be "
     "supported. Are you using an old TFLite binary with a newer model?\nRegistration failed.\n",
     {"kind": "missing-op", "op": "FULLY_CONNECTED", "version": 12}),
    ("Encountered unresolved custom op: TFLite_Detection_PostProcess.\nSee instructions: …",
     {"kind": "custom-op", "op": "TFLite_Detection_PostProcess"}),
    ("Op builtin_code out of range: 204. Are you using old TFLite binary with newer model?",
     {"kind": "unknown-op", "builtin_code": 204}),
    ("Could not open 'x.tflite'.", {"kind": "other"}),
])
def test_parse_load_error(message, expected):
    assert runner.parse_load_error(message) == expected


def test_runner_is_self_contained_and_old_python_parseable():
    """It runs where deploykit is not installed, and a Python 3.6 device must get the one-line
    message rather than a SyntaxError: no deploykit imports, no 3.7+ syntax at module level."""
    source = Path(runner.__file__).read_text()
    tree = ast.parse(source, feature_version=(3, 6))
    imported = {a.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert "deploykit" not in imported
    assert imported <= set(sys.stdlib_module_names) | {"numpy", "protocol", "tensorflow"}
    assert "from __future__ import annotations" not in source


def _fake_vcgencmd(folder: Path, clock="frequency(48)=1500398464", temp="temp=71.5'C", throttled="throttled=0x50005"):
    script = folder / "vcgencmd"
    script.write_text(f"""#!/bin/sh
case "$1 $2" in
  "measure_clock arm") echo "{clock}" ;;
  "measure_temp ") echo "{temp}" ;;
  "get_throttled ") echo "{throttled}" ;;
  *) exit 1 ;;
esac
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def test_device_state_reads_vcgencmd_and_decodes_throttling(tmp_path, monkeypatch):
    _fake_vcgencmd(tmp_path)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    state = runner.device_state()
    assert state["source"] == "vcgencmd"
    assert state["arm_clock_hz"] == 1500398464
    assert state["temp_c"] == 71.5
    assert state["throttled"] == "0x50005"
    assert state["throttled_now"] is True
    assert state["throttled_flags"] == ["under-voltage now", "throttled now", "under-voltage occurred",
                                        "throttling occurred"]


def test_device_state_without_vcgencmd_uses_sysfs(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    state = runner.device_state()
    assert state["source"] == "sysfs"
    assert "throttled" not in state and state["throttled_now"] is None  # sysfs has no throttling record: not a guess
    assert state["not_available"]["throttled"].startswith("not available: no vcgencmd")


def test_device_facts_here():
    facts = runner.device_facts()
    assert facts["cores_logical"] >= 1
    assert facts["memory_bytes"] > 0
    assert facts["python"] == ".".join(map(str, sys.version_info[:3]))
    assert facts["cpu_model"]
    assert facts["edgetpu_library"] in (True, False)


def test_cpu_model_names_arm_parts(tmp_path, monkeypatch):
    cpuinfo = "processor\t: 0\nBogoMIPS\t: 108.00\nCPU implementer\t: 0x41\nCPU part\t: 0xd08\n\nModel\t: Raspberry Pi 4 Model B Rev 1.4\n"
    real_read = runner._read
    monkeypatch.setattr(runner, "_read", lambda p: cpuinfo if p == "/proc/cpuinfo" else real_read(p))
    assert runner._cpu_model() == "Cortex-A72 (Raspberry Pi 4 Model B Rev 1.4)"


def _run_main(tmp_path, job, capsys):
    path = tmp_path / "job.json"
    path.write_text(json.dumps(job))
    rc = runner.main([str(path)])
    return rc, capsys.readouterr().err


def test_missing_runtime_is_one_line_and_exit_3(tmp_path, capsys):
    rc, err = _run_main(tmp_path, {"mode": "facts", "out": str(tmp_path / "f.json"), "runtime": "tflite-runtime==9.9.9"}, capsys)
    assert rc == runner.EXIT_MISSING
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(runner.MISSING_PREFIX)
    assert "tflite-runtime" in lines[0]
    assert not (tmp_path / "f.json").exists()


def test_bad_job_is_exit_2(tmp_path, capsys):
    rc, err = _run_main(tmp_path, {"mode": "dance", "out": "x"}, capsys)
    assert rc == runner.EXIT_USAGE and "unknown mode" in err
    (tmp_path / "broken.json").write_text("{")
    assert runner.main([str(tmp_path / "broken.json")]) == runner.EXIT_USAGE


def test_unknown_runtime_name():
    with pytest.raises(runner.Missing, match="not one the runner knows"):
        runner.find_runtime("onnxruntime")


def test_numpy_abi_problem_is_recognised():
    try:
        try:
            raise ImportError("numpy.core.multiarray failed to import")
        except ImportError:
            raise SystemError("<built-in method CreateWrapperFromFile> returned a result with an exception set")
    except SystemError as exc:
        assert runner._numpy_abi_problem(exc)
    assert not runner._numpy_abi_problem(ValueError("Could not open 'x'"))

"""Runtime versions and pip advice checked against the real package index (skipped, with the reason,
when the index cannot be reached)."""

import re
import subprocess
import sys

import pytest

from deploykit.edge.check import EXIT_UNKNOWN, exit_code
from deploykit.edge.compat import _older_converter
from deploykit.edge.index import index_versions
from deploykit.edge.runner import install_advice
from deploykit.results import BenchRecord


@pytest.fixture(autouse=True)
def _own_index_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DEPLOYKIT_RUNTIMES", str(tmp_path / "runtimes"))  # ask pip, not a cached answer


def _versions(package, *extra):
    """pip's own answer, asked independently of deploykit.edge.index."""
    proc = subprocess.run([sys.executable, "-m", "pip", "index", "versions", package, "--timeout", "10", *extra],
                          capture_output=True, text=True, timeout=90)
    m = re.search(r"Available versions: (.+)", proc.stdout)
    if m:
        return [v.strip() for v in m.group(1).split(",")]
    if "No matching distribution" in proc.stderr:
        return []
    pytest.skip(f"package index unreachable: {proc.stderr.strip().splitlines()[-1:]}")


def _aarch64(python):
    tags = [f"manylinux{g}_aarch64" for g in ("2014", "_2_27", "_2_28", "_2_31", "_2_34")] + ["linux_aarch64"]
    return [a for t in tags for a in ("--platform", t)] + ["--python-version", python, "--only-binary=:all:"]


def test_nonexistent_version_is_rc2_naming_real_ones(tmp_path):
    real = _versions("tflite-runtime")
    proc = subprocess.run([sys.executable, "-m", "deploykit", "edge", "check", str(tmp_path), "--runtime",
                           "tflite-runtime==9.9.9"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1 and "tflite-runtime==9.9.9 does not exist" in err
    assert real and all(v in err for v in real[:3])


def test_device_only_version_is_not_an_error():
    from deploykit.edge.index import verify_version

    if "2.11.0" not in _versions("tflite-runtime", *_aarch64("3.7")):
        pytest.skip("the index no longer holds tflite-runtime 2.11.0 for aarch64 Python 3.7")
    notes = verify_version("tflite-runtime", "2.11.0", arch="aarch64", python="3.7")
    assert notes and "aarch64 Linux, Python 3.7 only" in notes[0]


def test_converter_advice_names_a_release_that_exists():
    host = _versions("tensorflow")
    text = _older_converter("2.14")
    named = re.search(r"pip install tensorflow==(\S+)\)", text).group(1)
    assert named in host and named.startswith("2.14.")
    assert "pip install" not in _older_converter("1.2")  # no such series here: no command
    assert index_versions("tensorflow").versions == host


@pytest.mark.parametrize("python", ["3.7", "3.11", "3.12"])
def test_runner_install_advice_names_packages_with_wheels_for_that_python(python):
    advice = install_advice(tuple(int(p) for p in python.split(".")))
    named = re.findall(r"pip install ([A-Za-z0-9._-]+)", advice)
    assert named
    for package in named:
        assert _versions(package, *_aarch64(python)), f"{package} has no aarch64 wheel for Python {python}"


def _rec(fmt, verdict, ok):
    return BenchRecord(target="edge:rpi4", model="m", format=fmt, runtime="tflite-runtime", device="cpu",
                       batch=1, status="ok" if ok else "failed", reason=None if ok else f"{fmt} {verdict}",
                       compat={"verdict": verdict, "ok": ok})


def test_exit_codes_compatible_incompatible_unknown():
    assert exit_code([_rec("a", "compatible", True)]) == (0, [])
    code, lines = exit_code([_rec("a", "compatible", True), _rec("b", "unknown", None)])
    assert code == EXIT_UNKNOWN == 3 and lines == ["m/b: unknown (unknown): b unknown"]
    assert exit_code([_rec("b", "unknown", None), _rec("c", "incompatible", False)])[0] == 1

"""Validation in a worker process: a runtime that aborts, segfaults or raises costs one format only.

The runtimes below live in this module; the worker imports it by name (it gets the parent's sys.path).
"""

import os
import signal

import numpy as np
import pytest

from deploykit.errors import RuntimeUnavailable, ValidationCrashed, ValidationFailed
from deploykit.isolate import Bars, validate_artifact
from deploykit.runtimes.base import one_line
from deploykit.manifest import InputSpec
from deploykit.runtimes import RUNTIMES
from deploykit.runtimes.base import Predictor, Runtime

SPEC = InputSpec(name="input", shape=[None, 4], layout="NC")
BARS = Bars(atol=1e-4, min_top1_agreement=0.999, max_accuracy_drop_points=None)


class _Identity(Predictor):
    runtime = "test-ok"

    def run(self, tensor):
        return tensor


class _TestRuntime(Runtime):
    formats = ()
    package = "deploykit"
    extra = "test"

    @classmethod
    def available(cls, device="cpu"):
        return True, ""

    @classmethod
    def version(cls):
        return "0"


class OkRuntime(_TestRuntime):
    name = "test-ok"

    def open(self, path, input_spec, output_spec=None, device="cpu", threads=None):
        return _Identity(input_spec, output_spec)


class AbortRuntime(_TestRuntime):
    name = "test-abort"

    def open(self, path, input_spec, output_spec=None, device="cpu", threads=None):
        print("about to abort", flush=True)
        os.abort()


class SegfaultRuntime(_TestRuntime):
    name = "test-segv"

    def open(self, path, input_spec, output_spec=None, device="cpu", threads=None):
        os.kill(os.getpid(), signal.SIGSEGV)


class RaisingRuntime(_TestRuntime):
    name = "test-raise"

    def open(self, path, input_spec, output_spec=None, device="cpu", threads=None):
        raise RuntimeError("failed to create XNNPACK runtime\nsecond line of detail")


class MissingRuntime(_TestRuntime):
    name = "test-missing"

    def open(self, path, input_spec, output_spec=None, device="cpu", threads=None):
        raise RuntimeUnavailable("no such device here")


@pytest.fixture(autouse=True)
def _registered(monkeypatch):
    for name in ("test-ok", "test-abort", "test-segv", "test-raise", "test-missing"):
        monkeypatch.setitem(RUNTIMES, name, __name__)


def _validate(runtime, isolate=True):
    x = np.random.default_rng(0).random((20, 4), dtype=np.float32)
    return validate_artifact(runtime, "unused", SPEC, None, BARS, x, None, x, None, isolate=isolate)


def test_a_healthy_runtime_proves_in_the_worker():
    proof = _validate("test-ok")
    assert proof.passed and proof.parity.max_abs_diff == 0 and proof.test_samples == 20


@pytest.mark.parametrize("runtime, signame", [("test-abort", "SIGABRT"), ("test-segv", "SIGSEGV")])
def test_a_native_crash_is_a_one_line_error(runtime, signame):
    with pytest.raises(ValidationCrashed) as info:
        _validate(runtime)
    assert signame in str(info.value) and "\n" not in str(info.value)
    if runtime == "test-abort":
        assert "about to abort" in str(info.value)  # the worker's last output line


def test_a_runtime_exception_is_one_line_in_and_out_of_process():
    for isolate in (True, False):
        with pytest.raises(ValidationFailed, match="^test-raise cannot load unused: RuntimeError: failed to create XNNPACK runtime$"):
            _validate("test-raise", isolate=isolate)


def test_an_unavailable_runtime_stays_unavailable():
    with pytest.raises(RuntimeUnavailable, match="no such device"):
        _validate("test-missing")


def test_one_line_keeps_torchscripts_last_line():
    exc = RuntimeError("The following operation failed in the TorchScript interpreter.\n  code\n"
                       "RuntimeError: mat1 and mat2 shapes cannot be multiplied (2x3072 and 784x32)")
    assert one_line(exc).endswith("mat1 and mat2 shapes cannot be multiplied (2x3072 and 784x32)")

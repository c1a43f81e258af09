"""`deploykit export` as a user runs it: bad input ends in one line, exit 2, and no output folder."""

import subprocess
import sys

import pytest
import torch
from torch import nn


def _run(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "deploykit", "export", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout)


def _one_line_error(proc, *needles):
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    for needle in needles:
        assert needle in proc.stderr, proc.stderr


@pytest.fixture
def torchscript_mlp(tmp_path):
    path = tmp_path / "mlp.pt"
    torch.jit.script(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)).eval()).save(str(path))
    return path


def test_an_input_shape_that_does_not_fit(torchscript_mlp, tmp_path):
    proc = _run(torchscript_mlp, "--input-shape", "3,32,32", "--formats", "onnx", "--out", tmp_path / "out")
    _one_line_error(proc, "--input-shape 3,32,32 does not fit the model", "3072")
    assert not (tmp_path / "out").exists()


def test_a_corrupt_keras_file(tmp_path):
    bad = tmp_path / "broken.keras"
    bad.write_bytes(b"PK\x03\x04 this is not really a zip archive")
    proc = _run(bad, "--out", tmp_path / "out")
    _one_line_error(proc, "broken.keras", "not a Keras .keras archive")
    assert not (tmp_path / "out").exists()


def test_an_unknown_dataset_is_rejected_before_the_model_loads(torchscript_mlp, tmp_path):
    proc = _run(torchscript_mlp, "--dataset", "cifar10", "--out", tmp_path / "out")
    _one_line_error(proc, "unknown dataset 'cifar10'", "mnist")
    assert not (tmp_path / "out").exists()


def test_a_dataset_that_does_not_fit_says_how_to_fit_it(tmp_path):
    path = tmp_path / "lenet.pt"
    torch.jit.script(nn.Sequential(nn.Flatten(), nn.Linear(1024, 10)).eval()).save(str(path))
    proc = _run(path, "--input-shape", "1,32,32", "--dataset", "mnist", "--out", tmp_path / "out")
    _one_line_error(proc, "28×28", "32×32", "--pad")
    assert not (tmp_path / "out").exists()

"""The CLI as a user runs it: a real subprocess, one line on stderr and exit code 2 for bad input."""

import subprocess
import sys

import pytest


def deploykit(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "deploykit", *args], capture_output=True, text=True, timeout=timeout)


def assert_one_line_error(proc, *needles):
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in proc.stderr + proc.stdout
    for needle in needles:
        assert needle in lines[0]


@pytest.mark.parametrize(
    "args,needles",
    [
        (["train-export", "cifar"], ["unknown dataset 'cifar'", "fashion-mnist, mnist"]),
        (["train-export", "mnist", "--models", "keras-sequential,resnet"], ["unknown model 'resnet'", "torch-cnn"]),
        (["train-export", "mnist", "--formats", "onnx,coreml"], ["unknown format 'coreml'", "tflite-int8"]),
        (["train-export", "mnist", "--epochs", "0"], ["--epochs"]),
        (["train-export"], ["Missing argument"]),
        (["train-export", "mnist", "--variants", "keras-tape,keras-nope"], ["unknown variant 'keras-nope'", "torch-compile"]),
        (["train-export", "mnist", "--variants", "torch-ddp-2"], ["distributed variants run under compare-training"]),
        (["train-export", "mnist", "--variants", "torch", "--models", "torch-mlp"], ["--models or --variants"]),
        (["train-export", "mnist", "--variants", "torch", "--formats", "onnx,coreml"], ["unknown format 'coreml'"]),
        (["no-such-command"], ["No such command"]),
        (["export", "/nonexistent/model.keras"], ["no model at /nonexistent/model.keras"]),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, needles):
    assert_one_line_error(deploykit(*args), *needles)


def test_unwritable_out(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    proc = deploykit("train-export", "mnist", "--models", "torch-mlp", "--out", str(blocker / "sub"))
    assert_one_line_error(proc, "is not writable")
    assert blocker.read_text() == ""  # nothing already written is lost


def test_missing_data_dir(tmp_path):
    assert_one_line_error(deploykit("train-export", "mnist", "--data-dir", str(tmp_path / "nope")), "--data-dir")


def test_help_explains_every_command():
    top = deploykit("--help")
    assert top.returncode == 0
    for command in ("train-export", "export", "formats"):
        assert command in top.stdout
        sub = deploykit(command, "--help")
        assert sub.returncode == 0 and "Usage" in sub.stdout


def test_formats_lists_every_registered_format():
    from deploykit.export import format_names

    proc = deploykit("formats")
    assert proc.returncode == 0
    for name in format_names():
        assert name in proc.stdout

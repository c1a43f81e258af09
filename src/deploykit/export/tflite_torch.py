"""TFLite from a PyTorch model: its ONNX graph converted by onnx2tf, in an environment of its own.

PyTorch has no TFLite writer of its own. Of the two well-kept converters, onnx2tf (ONNX → TFLite)
is used: litert-torch 0.10.0 pulls JAX and transformers and downgrades pydantic, and onnx2tf pins
TensorFlow 2.19, NumPy 1.26 and onnx 1.19 (deploykit runs TensorFlow 2.21), so neither can live in
deploykit's environment. onnx2tf therefore runs as a child process in a cached, isolated venv
(deploykit.edge.envs, the same mechanism as the device runtimes) on the ONNX file that torch.onnx
wrote (the run's `onnx` artifact, or a temporary one), and the .tflite comes back as bytes. An export
only uses that environment; `deploykit formats --prepare` (scripts/bootstrap.sh) builds it, and without
it the format fails with that advice while the other formats are exported as usual.

Layout: onnx2tf turns an NCHW image input into NHWC, TFLite's own layout. With one channel the two
hold the same values in the same order, so canonical input maps onto it by a reshape; with several
channels the input is kept NCHW (onnx2tf's keep option transposes inside the graph), so the artifact
takes what the PyTorch model takes. The manifest records the shape and layout the .tflite has.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

from deploykit.errors import ExportError
from deploykit.export.base import ExportContext

__all__ = ["ONNX2TF", "ONNX2TF_ENV", "ensure_converter_env", "converter_env_status", "torch_to_tflite"]

ONNX2TF = "onnx2tf==1.29.24"  # its own pins (TensorFlow 2.19.0, onnx 1.19.1...) come with it
ONNX2TF_ENV = f"{ONNX2TF.replace('==', '-')}-py{sys.version_info.major}{sys.version_info.minor}-{platform.machine()}"
CHILD = Path(__file__).with_name("onnx2tf_child.py")
CONVERT_TIMEOUT_S = 600


def ensure_converter_env(reporter=None) -> Path:
    """The onnx2tf environment's Python, built on first use (~5 min and 2.6 GB once; cached)."""
    from deploykit.edge.envs import ensure_env, python_of

    path, _ = ensure_env(ONNX2TF_ENV, [ONNX2TF], ONNX2TF, reporter=reporter)
    return python_of(path)


def _built_converter(fmt: str) -> Path:
    """The environment's Python; an export never builds it (minutes and 2.6 GB are not a side effect)."""
    from deploykit.edge.envs import cached_env, python_of, runtimes_cache_dir

    found = cached_env(ONNX2TF_ENV)
    if found is None:
        raise ExportError(f"{fmt}: PyTorch → TFLite needs onnx2tf's own environment, not built here: run "
                          f"'deploykit formats --prepare' (once: {ONNX2TF} and its pins, ~2.6 GB, into "
                          f"{runtimes_cache_dir() / ONNX2TF_ENV})")
    return python_of(found[0])


def converter_env_status() -> str:
    """One line: where the onnx2tf environment is, or that it is not built yet."""
    from deploykit.edge.envs import cached_env, runtimes_cache_dir

    found = cached_env(ONNX2TF_ENV)
    if found is None:
        return f"{ONNX2TF}: not built yet (would go to {runtimes_cache_dir() / ONNX2TF_ENV})"
    return f"{ONNX2TF}: ready in {found[0]} (TensorFlow {found[1].get('tensorflow', '?')})"


def _onnx_source(ctx: ExportContext, tmp: Path, fmt: str) -> tuple[Path, dict]:
    """The ONNX file of this run's `onnx` artifact, or a fresh one written under `tmp` (~0.1 s)."""
    from deploykit.export.onnx import write_onnx

    earlier = ctx.produced.get("onnx")
    if earlier is not None and Path(earlier).is_file():
        return Path(earlier), {}
    result = write_onnx(ctx, tmp / "model.onnx", fmt)
    return result.path, result.tool_versions


def torch_to_tflite(ctx: ExportContext, fmt: str) -> tuple[bytes, dict[str, str]]:
    """(TFLite flatbuffer, tool versions) of ctx.model, through torch.onnx and onnx2tf."""
    python = _built_converter(fmt)
    shape = ctx.input.shape
    keep_nchw = ctx.input.layout == "NCHW" and len(shape) == 4 and shape[1] not in (1, None)
    with tempfile.TemporaryDirectory(prefix="deploykit-onnx2tf-") as tmp_name:
        tmp = Path(tmp_name)
        source, onnx_versions = _onnx_source(ctx, tmp, fmt)
        staged = tmp / "model.onnx"
        if source != staged:  # onnx2tf names its output after the input file
            staged.write_bytes(source.read_bytes())
        result_file = tmp / "result.json"
        # -I: no script folder on sys.path (deploykit/export/onnx.py would shadow the onnx package), no
        # PYTHON* variables, no user site: the child sees its own environment only.
        cmd = [str(python), "-I", str(CHILD), str(staged), str(tmp / "out"), str(result_file)]
        if keep_nchw:
            cmd += ["--keep-nchw", ctx.input.name]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=CONVERT_TIMEOUT_S)
        except subprocess.TimeoutExpired as exc:
            raise ExportError(f"{fmt}: onnx2tf took over {CONVERT_TIMEOUT_S} s; gave up") from exc
        try:
            result = json.loads(result_file.read_text())
        except (OSError, ValueError):
            tail = [ln for ln in (proc.stderr or proc.stdout or "").splitlines() if ln.strip()][-1:]
            result = {"error": f"exit {proc.returncode}" + (f": {tail[0].strip()[:300]}" if tail else "")}
        if proc.returncode != 0 or "error" in result:
            raise ExportError(f"{fmt}: onnx2tf conversion failed: {result.get('error', f'exit {proc.returncode}')}")
        blob = Path(result["tflite"]).read_bytes()
    converter = result["versions"]
    versions = {"converter": f"onnx2tf {converter['onnx2tf']} (own environment: TensorFlow {converter['tensorflow']}, "
                             f"onnx {converter['onnx']})", "onnx2tf": converter["onnx2tf"],
                "convert_seconds": str(result["seconds"]), **onnx_versions}
    from deploykit.export.savedmodel import tool_versions

    return blob, {**tool_versions("torch"), **versions}


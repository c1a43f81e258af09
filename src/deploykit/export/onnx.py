"""ONNX (opset 17) from Keras (tf2onnx) and from PyTorch (torch.onnx).

Keras: tf2onnx's in-process `from_function` on a tf.function around the model, with the model's
input signature (dynamic batch). It converts the same graph the SavedModel serves, without a
`python -m tf2onnx.convert` child process (which pays TensorFlow's import, ~5 s, per model).

PyTorch: `torch.onnx.export(for_export(model))` (softmax appended to logits only). The TorchScript-based exporter (dynamo=False) is
the default here: it writes opset 17 directly (the same opset as the Keras path, which older edge
onnxruntime builds read), one self-contained file, a plain graph (Flatten/Gemm/Conv/Softmax), takes
TorchScript modules as well as nn.Modules, and needs ~0.1 s. The torch.export-based exporter
(`dynamo = True`) also works with torch 2.13 but implements opset 18 only (17 is reached by a
version conversion), writes weights to a side `.data` file unless told not to, and takes ~1–2 s.

Both name the input after the model's input spec and the output "probabilities", with a symbolic
batch dimension "batch".
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import ClassVar, Optional

from deploykit.errors import ExportError, MissingDependency
from deploykit.export.base import ExportContext, Exporter, ExportResult, register
from deploykit.export.savedmodel import (
    captured_output,
    export_error,
    import_tf,
    keras_input_signature,
    replace_path,
    tool_versions,
)
from deploykit.manifest import InputSpec, OutputSpec

__all__ = ["OnnxExporter", "write_onnx", "onnx_specs", "opset_of", "check_batches", "OUTPUT_NAME", "BATCH_DIM"]

OUTPUT_NAME = "probabilities"
BATCH_DIM = "batch"


def _import_onnx():
    import onnx  # a core dependency of deploykit

    return onnx


def _tidy(model, output_name: str) -> None:
    """Name the (single) output `output_name` and the leading dynamic dimensions `batch`."""
    graph = model.graph
    old = graph.output[0].name
    if old != output_name:
        for node in graph.node:
            node.output[:] = [output_name if o == old else o for o in node.output]
            node.input[:] = [output_name if i == old else i for i in node.input]
        graph.output[0].name = output_name
    for value in (*graph.input, *graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_param = BATCH_DIM


def opset_of(model) -> str:
    """The default-domain opset the graph declares."""
    return next((str(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), "")


def onnx_specs(model, ctx: ExportContext) -> tuple[InputSpec, OutputSpec]:
    """The artifact's actual input and output (first of each), read from the graph."""
    onnx = _import_onnx()
    initializers = {init.name for init in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in initializers]

    def shape(value) -> list[Optional[int]]:
        return [d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim]

    def dtype(value) -> str:
        return onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type).name

    inp, out = inputs[0], model.graph.output[0]
    return (InputSpec(name=inp.name, shape=shape(inp), layout=ctx.input.layout, dtype=dtype(inp)),
            OutputSpec(name=out.name, shape=shape(out), dtype=dtype(out)))


def _from_keras(ctx: ExportContext, opset: int, fmt: str):
    tf = import_tf()
    with captured_output() as log:
        try:
            import tf2onnx
        except ImportError as exc:
            raise MissingDependency("tf2onnx", "tf") from exc
        try:
            signature = keras_input_signature(tf, ctx.input)
            model = ctx.model
            fn = tf.function(lambda x: model(x, training=False), input_signature=signature)
            proto, _ = tf2onnx.convert.from_function(fn, input_signature=signature, opset=opset)
        except Exception as exc:  # tf2onnx and TF raise many types; wrapped, cause kept
            raise export_error(fmt, "tf2onnx conversion failed", exc, log) from exc
    if len(proto.graph.output) != 1:
        raise ExportError(f"{fmt}: expected one output, the converted graph has {len(proto.graph.output)}")
    _tidy(proto, OUTPUT_NAME)
    return proto, tool_versions("tensorflow", "tf2onnx", "onnx")


def _from_torch(ctx: ExportContext, opset: int, dynamo: bool, fmt: str, tmp: Path):
    try:
        import torch
    except ImportError as exc:
        raise MissingDependency("torch", "torch") from exc
    from deploykit.models.torch import for_export

    onnx = _import_onnx()
    model = ctx.model
    was_training = getattr(model, "training", False)
    wrapped = for_export(model, ctx.source_kind).eval()
    param = next(iter(model.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    example = torch.zeros([2, *ctx.input.shape[1:]], dtype=getattr(torch, ctx.input.dtype), device=device)
    name = ctx.input.name
    out = tmp / "model.onnx"
    if isinstance(model, torch.jit.ScriptModule):
        dynamo = False  # torch.export cannot take TorchScript; the TorchScript-based exporter can
    with captured_output() as log:
        try:
            if isinstance(model, torch.jit.ScriptModule):
                # The ONNX tracer does not follow a ScriptModule nested in a plain wrapper; a traced
                # wrapper is one ScriptModule, which the TorchScript-based exporter takes as is.
                with torch.no_grad():
                    wrapped = torch.jit.trace(wrapped, example)
            if dynamo:
                batch = torch.export.Dim(BATCH_DIM)
                torch.onnx.export(wrapped, (example,), str(out), dynamo=True, external_data=False,
                                  opset_version=max(opset, 18), input_names=[name], output_names=[OUTPUT_NAME],
                                  dynamic_shapes=({0: batch},))
            else:
                torch.onnx.export(wrapped, (example,), str(out), dynamo=False, opset_version=opset,
                                  input_names=[name], output_names=[OUTPUT_NAME], do_constant_folding=True,
                                  dynamic_axes={name: {0: BATCH_DIM}, OUTPUT_NAME: {0: BATCH_DIM}})
            proto = onnx.load(str(out))
        except Exception as exc:  # torch.onnx raises many types; wrapped, cause kept
            raise export_error(fmt, "torch.onnx.export failed", exc, log) from exc
        finally:
            model.train(was_training)
    versions = tool_versions("torch", "onnx", *(["onnxscript"] if dynamo else []))
    return proto, versions


def _from_paddle(ctx: ExportContext, opset: int, fmt: str, tmp: Path):
    """paddle.onnx.export (paddle2onnx) of the layer, softmax appended to logits (compare-training's Paddle)."""
    try:
        import paddle
        import paddle2onnx  # noqa: F401 - paddle.onnx.export needs it; fail here with the extra's name
    except ImportError as exc:
        raise MissingDependency("paddlepaddle and paddle2onnx", "paddle") from exc
    from deploykit.compare.loops_paddle import with_softmax

    onnx = _import_onnx()
    model = with_softmax(ctx.model) if ctx.source_kind == "logits" else ctx.model
    model.eval()
    spec = [paddle.static.InputSpec(shape=[None, *ctx.input.shape[1:]], dtype=ctx.input.dtype, name=ctx.input.name)]
    # paddle2onnx folds constants with polygraphy (the [paddle-deps] extra) and sets
    # POLYGRAPHY_AUTOINSTALL_DEPS=1 for it: put that back, so nothing later pip-installs at run time.
    autoinstall = os.environ.get("POLYGRAPHY_AUTOINSTALL_DEPS")
    with captured_output() as log:
        try:
            paddle.onnx.export(model, str(tmp / "model"), input_spec=spec, opset_version=opset)
            proto = onnx.load(str(tmp / "model.onnx"))  # paddle logs its failures and writes nothing
        except Exception as exc:  # paddle2onnx raises many types; wrapped, cause kept
            raise export_error(fmt, "paddle.onnx.export failed", exc, log) from exc
        finally:
            if autoinstall is None:
                os.environ.pop("POLYGRAPHY_AUTOINSTALL_DEPS", None)
            else:
                os.environ["POLYGRAPHY_AUTOINSTALL_DEPS"] = autoinstall
    _tidy(proto, OUTPUT_NAME)  # paddle names its output fetch_name_0
    versions = tool_versions("paddlepaddle", "paddle2onnx", "onnx", "polygraphy", "onnx-graphsurgeon")
    return proto, {**versions, "constant_folding": _folding(log.text)}


def _folding(log: str) -> str:
    """What paddle2onnx's polygraphy pass did, from its log: 'polygraphy: 42 → 22 nodes' or why it was skipped."""
    counts = re.findall(r"Original:\s*(\d+), After Folding:\s*(\d+)", log)
    if counts:
        return f"polygraphy: {counts[0][0]} → {counts[-1][1]} nodes"
    skipped = re.search(r"Fail to fold onnx model with error: (.*?)\. Skip folding", log)
    return f"skipped: {skipped.group(1)[:200]}" if skipped else "skipped: paddle2onnx reported no folding"


def check_batches(path: Path, spec: InputSpec, ctx: ExportContext, fmt: str, batches=(1, 7)) -> None:
    """Run the graph in onnxruntime at a few batch sizes: a symbolic batch dimension can still sit on
    a graph that only works at the traced size (e.g. torch code doing `x.reshape(2, -1)`)."""
    import numpy as np
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    inner = list(spec.shape[1:])
    if any(d is None for d in inner):
        return  # inner dynamic dimensions: no canonical sample to feed; validation will tell
    x = np.asarray(ctx.calib_x if ctx.calib_x is not None and len(ctx.calib_x) else np.zeros((1, 28, 28)), np.float32)
    x = np.resize(x, (max(batches), *inner)).astype(spec.dtype)
    with captured_output():  # onnxruntime also logs the failure from C++
        try:
            session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
            for n in batches:
                out = session.run(None, {spec.name: x[:n]})[0]
                if out.shape[0] != n:
                    raise ValueError(f"batch {n} in, {out.shape[0]} rows out")
        except Exception as exc:  # onnxruntime's errors have no common base; wrapped, cause kept
            raise export_error(fmt, f"the graph declares a dynamic batch but does not run at batches {batches}",
                               exc) from exc


def write_onnx(ctx: ExportContext, path: Path, fmt: str, opset: int = 17, dynamo: bool = False) -> ExportResult:
    """Convert ctx.model to ONNX at `path` and describe it (shared with onnx-int8)."""
    onnx = _import_onnx()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".onnx.", dir=path.parent) as tmp:
        if ctx.framework == "keras":
            proto, versions = _from_keras(ctx, opset, fmt)
        elif ctx.framework == "torch":
            proto, versions = _from_torch(ctx, opset, dynamo, fmt, Path(tmp))
        elif ctx.framework == "paddle":
            proto, versions = _from_paddle(ctx, opset, fmt, Path(tmp))
        else:
            raise ExportError(f"{fmt}: no ONNX converter for framework {ctx.framework!r}")
        try:
            onnx.checker.check_model(proto, full_check=True)
        except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
            raise export_error(fmt, "the converted graph does not pass onnx.checker", exc) from exc
        staged = Path(tmp) / "staged.onnx"
        onnx.save(proto, str(staged))
        inp, out = onnx_specs(proto, ctx)
        dynamic = inp.shape[0] is None
        if dynamic:
            check_batches(staged, inp, ctx, fmt)
        replace_path(staged, path)
    return ExportResult(
        path=path, input=inp, output=out, dynamic_batch=dynamic,
        dynamic_batch_note=None if dynamic else "the converter fixed the batch dimension",
        tool_versions={**versions, "opset": opset_of(proto)},
    )


@register
class OnnxExporter(Exporter):
    key = "onnx"
    frameworks = frozenset({"keras", "torch", "paddle"})
    runtime = "onnxruntime"
    filename = "model.onnx"
    description = "ONNX opset 17 (tf2onnx from Keras, torch.onnx from PyTorch, paddle2onnx from PaddlePaddle)"
    opset: ClassVar[int] = 17
    dynamo: ClassVar[bool] = False  # torch: the TorchScript-based exporter (see the module docstring)

    def export(self, ctx: ExportContext) -> ExportResult:
        return write_onnx(ctx, Path(ctx.out_dir) / self.filename, self.key, self.opset, self.dynamo)

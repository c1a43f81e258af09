"""TFLite from a Keras 3 model: float32, float16 weights, dynamic-range int8 and full-integer int8;
float32 from a PyTorch model too (through ONNX and onnx2tf, deploykit.export.tflite_torch).

All four convert the model's SavedModel (the one `savedmodel` wrote in this run, else a temporary
one) with `TFLiteConverter.from_saved_model`, which keeps the batch dimension dynamic (-1 in the
input's shape signature). `from_concrete_functions` on a tf.function around the model is *not*
used: in TF 2.21 it leaves the variables unfrozen and the artifact predicts NaN.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Optional

import numpy as np

from deploykit.errors import ExportError
from deploykit.export.base import ExportContext, Exporter, ExportResult, Int8Exporter, register
from deploykit.export.savedmodel import (
    captured_output,
    export_error,
    import_tf,
    replace_path,
    saved_model_for,
    tool_versions,
)
from deploykit.manifest import InputSpec, OutputSpec

__all__ = [
    "TFLiteFP32Exporter",
    "TFLiteFP16Exporter",
    "TFLiteDynamicExporter",
    "TFLiteInt8Exporter",
    "tflite_result",
    "write_tflite",
    "calibration_batches",
]


def calibration_batches(ctx: ExportContext, shape: list, fmt: str) -> np.ndarray:
    """ctx.calib_x (canonical N×28×28) reshaped to the model's input shape."""
    x = np.asarray(ctx.calib_x, dtype=np.float32) if ctx.calib_x is not None else np.zeros((0,), np.float32)
    if len(x) == 0:
        raise ExportError(f"{fmt}: int8 calibration needs samples, and ctx.calib_x is empty")
    try:
        return x.reshape([len(x), *shape[1:]])
    except ValueError as exc:
        raise ExportError(f"{fmt}: calibration samples {x.shape} do not fit the model input {shape}") from exc


def write_tflite(blob: bytes, final: Path) -> Path:
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", dir=final.parent)
    with os.fdopen(fd, "wb") as f:
        f.write(blob)
    return replace_path(Path(tmp), final)


def _details(blob: bytes) -> tuple[dict, dict]:
    """The interpreter's view of the model's (single) input and output."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # the deprecated in-TF interpreter reads the same files
        Interpreter = import_tf().lite.Interpreter
    interpreter = Interpreter(model_content=blob)
    inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
    if len(inputs) != 1 or len(outputs) != 1:
        raise ExportError(f"tflite: expected one input and one output, got {len(inputs)} and {len(outputs)}")
    return inputs[0], outputs[0]


def _shape(detail: dict) -> list[Optional[int]]:
    dims = detail.get("shape_signature", detail["shape"])
    return [None if int(d) == -1 else int(d) for d in dims]


def _scale_zp(detail: dict) -> tuple[Optional[float], Optional[int]]:
    scale, zero_point = detail["quantization"]
    if np.dtype(detail["dtype"]).kind not in "iu" or not scale:
        return None, None
    return float(scale), int(zero_point)


def _layout(shape: list, ctx: ExportContext) -> str:
    """The model's layout, unless the converter moved the channels last (onnx2tf: NCHW → NHWC)."""
    model = ctx.input.shape
    if ctx.input.layout == "NCHW" and len(shape) == 4 and shape[1:] == [model[2], model[3], model[1]] != model[1:]:
        return "NHWC"
    return ctx.input.layout


def tflite_result(blob: bytes, path: Path, ctx: ExportContext, **kwargs) -> ExportResult:
    """ExportResult with the artifact's actual input/output (name, shape, dtype, quantization, layout)."""
    din, dout = _details(blob)
    in_scale, in_zp = _scale_zp(din)
    out_scale, out_zp = _scale_zp(dout)
    in_shape = _shape(din)
    dynamic = in_shape[0] is None
    return ExportResult(
        path=path,
        input=InputSpec(name=din["name"], shape=in_shape, layout=_layout(in_shape, ctx),
                        dtype=np.dtype(din["dtype"]).name, scale=in_scale, zero_point=in_zp),
        output=OutputSpec(name=dout["name"], shape=_shape(dout), dtype=np.dtype(dout["dtype"]).name,
                          scale=out_scale, zero_point=out_zp),
        dynamic_batch=dynamic,
        dynamic_batch_note=None if dynamic else "converted with a fixed batch; the runtime pads smaller batches",
        **kwargs,
    )


def _for_edge_runtime(converter, ctx: ExportContext, fmt: str, quantization: Optional[dict]) -> Optional[dict]:
    """Apply what --edge-runtime needs (deploykit.edge.target) and record it with the quantization."""
    from deploykit.edge.target import converter_settings

    settings = converter_settings(ctx.edge_runtime, fmt)
    for name, value in settings.items():
        setattr(converter, name, value)
    if not settings:
        return quantization
    record = dict(quantization or {}, edge_runtime=str(ctx.edge_runtime), converter_settings=settings)
    if settings.get("_experimental_disable_per_channel_quantization_for_dense_layers"):
        record["dense_weights"] = "per-tensor (per-channel needs FULLY_CONNECTED v12, TFLite >= 2.17)"
    return record


class _TFLiteExporter(Exporter):
    frameworks = frozenset({"keras"})
    runtime = "litert"

    def configure(self, converter, tf, ctx: ExportContext) -> Optional[dict]:
        """Set the converter's options; return the `quantization` record (None for float32)."""
        return None

    def export(self, ctx: ExportContext) -> ExportResult:
        tf = import_tf()
        with tempfile.TemporaryDirectory(prefix="deploykit-tflite-") as tmp:
            source = saved_model_for(ctx, Path(tmp), self.key)
            with captured_output() as log:
                try:
                    converter = tf.lite.TFLiteConverter.from_saved_model(str(source))
                    quantization = self.configure(converter, tf, ctx)
                    quantization = _for_edge_runtime(converter, ctx, self.key, quantization)
                    blob = converter.convert()
                except ExportError:
                    raise
                except Exception as exc:  # converter errors come in many types; wrapped, cause kept
                    raise export_error(self.key, "conversion failed", exc, log) from exc
        path = write_tflite(blob, Path(ctx.out_dir) / self.filename)
        result = tflite_result(blob, path, ctx, quantization=quantization,
                               tool_versions=tool_versions("tensorflow", "keras"))
        if quantization is not None and result.input.scale is not None:
            quantization.update(input_scale=result.input.scale, input_zero_point=result.input.zero_point,
                                output_scale=result.output.scale, output_zero_point=result.output.zero_point)
        return result


@register
class TFLiteFP32Exporter(_TFLiteExporter):
    key = "tflite-fp32"
    frameworks = frozenset({"keras", "torch"})
    filename = "model_fp32.tflite"
    description = ("TFLite, float32 (PyTorch: its ONNX graph through onnx2tf, run in a cached environment of its "
                   "own; 'deploykit formats --prepare' builds it)")

    def export(self, ctx: ExportContext) -> ExportResult:
        if ctx.framework != "torch":
            return super().export(ctx)
        from deploykit.edge.target import converter_settings
        from deploykit.export.tflite_torch import torch_to_tflite

        if converter_settings(ctx.edge_runtime, self.key):  # none today for float32; a new rule must be ported
            raise ExportError(f"{self.key}: --edge-runtime {ctx.edge_runtime} needs converter settings that the "
                              "onnx2tf path does not apply")
        blob, versions = torch_to_tflite(ctx, self.key)
        path = write_tflite(blob, Path(ctx.out_dir) / self.filename)
        return tflite_result(blob, path, ctx, tool_versions=versions)


@register
class TFLiteFP16Exporter(_TFLiteExporter):
    key = "tflite-fp16"
    filename = "model_fp16.tflite"
    precision = "float16"
    atol = 1e-2
    description = "TFLite, float16 weights (dequantized to float32 on CPU; GPU delegates run them in fp16)"

    def configure(self, converter, tf, ctx):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
        return {"scheme": "float16", "weights": "float16", "activations": "float32"}


@register
class TFLiteDynamicExporter(Int8Exporter, _TFLiteExporter):
    key = "tflite-dynamic"
    filename = "model_dynamic.tflite"
    description = "TFLite, dynamic-range quantization (int8 weights, float input/output)"

    def configure(self, converter, tf, ctx):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        return {"scheme": "dynamic-range", "weights": "int8",
                "activations": "float32 (quantized on the fly by hybrid kernels)"}


@register
class TFLiteInt8Exporter(Int8Exporter, _TFLiteExporter):
    key = "tflite-int8"
    filename = "model_int8.tflite"
    description = "TFLite, full-integer int8 (int8 input and output), calibrated on training samples"

    def configure(self, converter, tf, ctx):
        calib = calibration_batches(ctx, ctx.input.shape, self.key)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([calib[i : i + 1]] for i in range(len(calib)))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
        return {"scheme": "full-int8", "weights": "int8", "activations": "int8",
                "calibration_samples": int(len(calib))}

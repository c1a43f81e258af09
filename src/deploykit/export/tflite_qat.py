"""TFLite int8 after quantization-aware fine-tuning (tensorflow-model-optimization).

tfmot 0.8 works on tf_keras (Keras 2) models only, so the Keras 3 model is rebuilt layer by layer
in tf_keras with its weights copied in (the subclass MLP becomes a Sequential of the same layers),
checked to predict the same, wrapped with `quantize_model`, fine-tuned for `ctx.qat_epochs` epochs
on the training data, and converted to full-integer TFLite (int8 input and output).

The artifact is validated against the original float model (top-1 agreement ≥ 98 %), so the
fine-tuning teaches the quantized copy to reproduce that model rather than to learn more:
- targets are the float model's own probabilities on the training images (self-distillation).
  Fine-tuning on the labels instead keeps training an unconverged model: measured on
  Fashion-MNIST (MLP, 2 epochs, then 1 QAT epoch) agreement fell to 94.9 % while accuracy rose
  1.4 points; with distillation agreement is 99.3 % and accuracy within 0.1 point;
- the fake-quant ranges start from the activations' min/max on ctx.calib_x (tfmot starts them at
  ±6 and moves them by an EMA with decay 0.999, i.e. they would still mostly be ±6 after one short
  epoch and clip ReLU outputs);
- a small learning rate (`learning_rate`) and at most `max_train_samples` images per epoch (a
  seeded random subset): 10 000 reached the same agreement as 60 000 at a sixth of the time.

TRAP: importing tensorflow_model_optimization sets os.environ["TF_USE_LEGACY_KERAS"]="1", which
would make tf.keras Keras 2 for the rest of the process (if it was not resolved yet) and for child
processes. It is imported here only, after tf.keras is pinned to Keras 3, and the variable is
restored right after the import.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar, Optional

import numpy as np

from deploykit.errors import ExportError, MissingDependency
from deploykit.export.base import ExportContext, ExportResult, Int8Exporter, register
from deploykit.export.savedmodel import captured_output, export_error, import_tf, tool_versions
from deploykit.export.tflite import calibration_batches, tflite_result, write_tflite

__all__ = ["TFLiteQATExporter", "import_tfmot"]

# Layer config keys that mean the same in Keras 3 and tf_keras (the rest — dtype policies,
# quantization and LoRA settings — are Keras 3 only).
_PORTABLE_KEYS = frozenset({
    "units", "activation", "use_bias", "filters", "kernel_size", "strides", "padding", "data_format",
    "dilation_rate", "groups", "pool_size", "rate", "target_shape", "axis", "epsilon", "momentum",
    "center", "scale", "max_value", "negative_slope", "threshold",
})


def import_tfmot(fmt: str):
    """(tfmot, tf_keras), imported without leaving TF_USE_LEGACY_KERAS set behind."""
    tf = import_tf()
    tf.keras.version()  # resolve tf.keras (Keras 3) before tfmot flips the variable
    before = os.environ.get("TF_USE_LEGACY_KERAS")
    try:
        import tensorflow_model_optimization as tfmot
        import tf_keras
    except ImportError as exc:
        name = getattr(exc, "name", None) or "tensorflow-model-optimization"
        raise MissingDependency(name.replace("_", "-"), "tf") from exc
    finally:
        if before is None:
            os.environ.pop("TF_USE_LEGACY_KERAS", None)
        else:
            os.environ["TF_USE_LEGACY_KERAS"] = before
    return tfmot, tf_keras


def _tf_keras_copy(model, shape, tf_keras, fmt: str):
    """The Keras 3 model as a tf_keras Sequential of the same layers, with the same weights."""
    layers = [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]
    rebuilt = []
    for layer in layers:
        cls = getattr(tf_keras.layers, type(layer).__name__, None)
        if cls is None:
            raise ExportError(f"{fmt}: layer {layer.name} ({type(layer).__name__}) has no tf_keras counterpart")
        config = {k: v for k, v in layer.get_config().items() if k in _PORTABLE_KEYS}
        rebuilt.append(cls(**config, name=layer.name))
    copy = tf_keras.Sequential([tf_keras.Input(tuple(shape[1:]), name="input"), *rebuilt])
    for src, dst in zip(layers, copy.layers):
        weights = src.get_weights()
        if [w.shape for w in weights] != [tuple(w.shape) for w in dst.get_weights()]:
            raise ExportError(f"{fmt}: layer {src.name} does not map onto tf_keras (weight shapes differ)")
        dst.set_weights(weights)
    return copy


def _activation_ranges(copy, x, tf_keras) -> dict[str, tuple[tuple[float, float], tuple[float, float]]]:
    """Per layer name: (pre-activation, post-activation) min/max on x, each widened to include 0."""
    ranges = {}
    h = x
    for layer in copy.layers:
        act = getattr(layer, "activation", None)
        if act is not None and act is not tf_keras.activations.linear:
            layer.activation = tf_keras.activations.linear
            try:
                pre = layer(h)
            finally:
                layer.activation = act
            post = act(pre)
        else:
            pre = post = layer(h)
        ranges[layer.name] = tuple((min(0.0, float(np.min(t))), max(0.0, float(np.max(t)))) for t in (pre, post))
        h = post
    return ranges


def _init_quant_ranges(qat_model, copy, calib: np.ndarray, tf_keras) -> None:
    """Set every fake-quant min/max variable from the float model's activations on calib."""
    ranges = _activation_ranges(copy, calib, tf_keras)
    input_range = (min(0.0, float(calib.min())), max(0.0, float(calib.max())))
    for wrapper in qat_model.layers:
        inner = getattr(wrapper, "layer", None)
        for var in wrapper.non_trainable_weights:
            name = var.name.split("/")[-1].split(":")[0]
            if not name.endswith(("_min", "_max")):
                continue
            if inner is None:  # the QuantizeLayer on the model input
                lo, hi = input_range
            elif name.startswith("pre_activation"):
                lo, hi = ranges[inner.name][0]
            elif name.startswith(("post_activation", "output")):
                lo, hi = ranges[inner.name][1]
            else:  # kernel ranges: tfmot derives them from the weights on every step
                continue
            var.assign(lo if name.endswith("_min") else hi)


@register
class TFLiteQATExporter(Int8Exporter):
    key = "tflite-qat"
    frameworks = frozenset({"keras"})
    architectures = frozenset({"mlp", "cnn"})
    runtime = "litert"
    filename = "model_qat_int8.tflite"
    description = "TFLite full-integer int8 after quantization-aware fine-tuning (tfmot, tf_keras copy)"
    learning_rate: ClassVar[float] = 1e-5
    max_train_samples: ClassVar[Optional[int]] = 10_000  # per epoch; None: all of ctx.train_x

    def export(self, ctx: ExportContext) -> ExportResult:
        if ctx.train_x is None or len(ctx.train_x) == 0:
            raise ExportError(f"{self.key}: quantization-aware fine-tuning needs training images (ctx.train_x)")
        tf = import_tf()
        tfmot, tf_keras = import_tfmot(self.key)
        shape = ctx.input.shape
        calib = calibration_batches(ctx, shape, self.key)
        train_x = np.asarray(ctx.train_x, np.float32)
        if self.max_train_samples and len(train_x) > self.max_train_samples:
            pick = np.random.default_rng(ctx.seed).choice(len(train_x), self.max_train_samples, replace=False)
            train_x = train_x[np.sort(pick)]
        train_x = train_x.reshape([len(train_x), *shape[1:]])

        with captured_output() as log:
            try:
                copy = _tf_keras_copy(ctx.model, shape, tf_keras, self.key)
                probe = calib[:256]
                gap = float(np.abs(copy(probe).numpy() - np.asarray(ctx.model(probe, training=False))).max())
                targets = np.concatenate([np.asarray(ctx.model(train_x[i : i + 1000], training=False))
                                          for i in range(0, len(train_x), 1000)])
            except ExportError:
                raise
            except Exception as exc:  # wrapped, cause kept
                raise export_error(self.key, "could not rebuild the model in tf_keras", exc, log) from exc
        if not gap <= 1e-5:
            raise ExportError(f"{self.key}: the tf_keras copy does not match the model (max |Δp| {gap:.2e}); "
                              "QAT supports plain layer chains (the reference MLP and CNN)")

        ctx.progress(f"{self.key}: quantization-aware fine-tuning, {ctx.qat_epochs} epoch(s) on {len(train_x)} images")
        with captured_output() as log:
            try:
                tf.random.set_seed(ctx.seed)
                qat = tfmot.quantization.keras.quantize_model(copy)
                _init_quant_ranges(qat, copy, calib, tf_keras)
                qat.compile(optimizer=tf_keras.optimizers.Adam(self.learning_rate), loss="categorical_crossentropy")
                qat.fit(train_x, targets, epochs=ctx.qat_epochs, batch_size=ctx.batch_size, shuffle=True, verbose=0)
                converter = tf.lite.TFLiteConverter.from_keras_model(qat)
                converter.optimizations = [tf.lite.Optimize.DEFAULT]
                # Ranges come from the fake-quant nodes; the converter insists on samples anyway
                # when asked to guarantee int8-only kernels (and uses them for any op left without).
                converter.representative_dataset = lambda: ([calib[i : i + 1]] for i in range(min(len(calib), 100)))
                converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
                converter.inference_input_type = tf.int8
                converter.inference_output_type = tf.int8
                blob = converter.convert()
            except Exception as exc:  # wrapped, cause kept
                raise export_error(self.key, "fine-tuning or conversion failed", exc, log) from exc

        path = write_tflite(blob, Path(ctx.out_dir) / self.filename)
        result = tflite_result(
            blob, path, ctx,
            tool_versions=tool_versions("tensorflow", "tf-keras", "tensorflow-model-optimization"),
        )
        result.quantization = {
            "scheme": "qat-int8", "weights": "int8", "activations": "int8",
            "epochs": int(ctx.qat_epochs), "train_samples": int(len(train_x)), "learning_rate": self.learning_rate,
            "targets": "float model probabilities (self-distillation)",
            "range_init_samples": int(len(calib)),
            "input_scale": result.input.scale, "input_zero_point": result.input.zero_point,
            "output_scale": result.output.scale, "output_zero_point": result.output.zero_point,
        }
        return result  # reference stays None: parity is against the original float model

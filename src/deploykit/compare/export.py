"""A trained variant through deploykit's export path: a model folder (manifest, reference outputs,
the framework model) with each format exported by deploykit's exporters and proven against the
variant's own outputs (deploykit.pipeline.export_and_prove), so serve, bench and report take it
like any train-export model.

What a variant can export depends on its framework and, for Keras, its backend (`export_plan`); a
format the variant cannot produce is a row `status: not exported` with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from deploykit import __version__

__all__ = ["export_variant", "export_plan", "ExportPlan", "model_name", "input_spec"]


@dataclass(frozen=True)
class ExportPlan:
    framework: str  # the exporters' framework: keras | torch | paddle
    output_kind: Optional[str]  # deploykit.outputs kind of what the model returns; None: the framework's default
    only: Optional[frozenset[str]] = None  # formats this backend allows; None: every format of `framework`
    not_exportable: str = ""  # why the other formats of a Keras model are not produced
    refused: tuple[tuple[str, str], ...] = ()  # (format, why): formats of `only` this network cannot take


_KERAS_ONNX = ("deploykit's Keras ONNX path is tf2onnx on a tf.function around the model, which cannot trace "
               "a JAX-backend model")
_KERAS_TF_ONLY = ("Keras' tf_saved_model export (behind savedmodel and the Keras TFLite formats) does not run on the "
                  "PyTorch backend here; the model is a torch.nn.Module, exported with the PyTorch exporters "
                  "(tflite-fp32 through ONNX and onnx2tf)")


_JAX_POOL_INT8 = ("jax2tf lowers average pooling to stablehlo.reduce_window, which TFLite's full-integer converter "
                  "cannot express (the float and dynamic-range TFLite formats convert it)")


def export_plan(variant, net: str = "mlp") -> ExportPlan:
    """How a variant's trained model is exported (probed on Keras 3.13: see docs/frameworks.md)."""
    if variant.framework == "paddle":
        return ExportPlan("paddle", "logits")
    if variant.framework == "torch":
        return ExportPlan("torch", None)
    if variant.backend == "jax":  # Keras exports a SavedModel through jax2tf; TFLite converts from it
        return ExportPlan("keras", None, frozenset({"savedmodel", "tflite-fp32", "tflite-fp16", "tflite-dynamic",
                                                   "tflite-int8", "tflite-qat"}), _KERAS_ONNX,
                          (("tflite-int8", _JAX_POOL_INT8),) if net == "cnn" else ())
    if variant.backend == "torch":  # a Keras model on PyTorch is a torch.nn.Module ending in softmax
        return ExportPlan("torch", "probs", None, _KERAS_TF_ONLY)
    return ExportPlan("keras", None)


def model_name(variant_name: str, net: str) -> str:
    return f"{variant_name}-{net}"


def input_spec(framework: str, net: str):
    """The trained model's own input: Keras is channels-last, PyTorch and Paddle channels-first."""
    from deploykit.manifest import InputSpec

    if net == "mlp":
        return InputSpec(name="input", shape=[None, 28, 28], layout="NHW")
    if framework == "keras":
        return InputSpec(name="input", shape=[None, 28, 28, 1], layout="NHWC")
    return InputSpec(name="input", shape=[None, 1, 28, 28], layout="NCHW")


def _formats(plan: ExportPlan, formats, net: str) -> tuple[list[str], dict[str, str]]:
    """(formats to export, {format: why not}) for what was asked of a Keras-built model."""
    from deploykit.export import resolve_formats

    refused = dict(plan.refused)
    exporters = [c.key for c in resolve_formats(formats, plan.framework, net)]
    if plan.only is not None:
        exporters = [k for k in exporters if k in plan.only]
    if not plan.not_exportable:
        return exporters, {}
    asked = [c.key for c in resolve_formats(formats, "keras", net)]
    why = {k: refused.get(k, plan.not_exportable) for k in asked if k not in exporters or k in refused}
    return [k for k in exporters if k not in refused], why


def export_variant(variant, trained, cfg, data, probs: np.ndarray, accuracy: float, spec: dict) -> list[dict]:
    """Export `spec["formats"]` of one trained variant into `spec["export_dir"]/<dataset>/<variant>-<net>`;
    one row per format (exported and proven, or why not)."""
    from deploykit.export import ExportContext
    from deploykit.manifest import DataInfo, ModelManifest, TrainingInfo, carry_over_entries, remove_previous
    from deploykit.pipeline import QuietReporter, export_and_prove, export_samples, save_framework_model, write_reference
    from deploykit.validate import PARITY_SAMPLES

    plan = export_plan(variant, cfg.net)
    name = model_name(variant.name, cfg.net)
    model_dir = Path(spec["export_dir"]) / spec["dataset"] / name
    if spec.get("clean"):
        remove_previous(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    built_as = "keras" if variant.framework == "keras" else plan.framework
    shape = input_spec(built_as, cfg.net)
    x_train, x_test, y_test = data["x_train"], data["x_test"], data["y_test"].astype(np.int64)
    n_ref = min(PARITY_SAMPLES, len(x_test))
    x_u8 = np.rint(x_test[:n_ref] * 255).astype(np.uint8)  # the data is uint8/255: exact
    formats, not_exported = _formats(plan, spec.get("formats") or "all", cfg.net)
    manifest = ModelManifest(
        model=name, framework=plan.framework, architecture=cfg.net, input=shape,
        classes=spec.get("classes") or [str(d) for d in range(10)],
        dataset=DataInfo(**spec["data_info"]) if spec.get("data_info") else None, deploykit_version=__version__,
        training=TrainingInfo(epochs=cfg.epochs, batch_size=cfg.batch_size, seed=cfg.seed,
                              seconds=round(sum(trained.epoch_s), 3), loss=trained.train_loss[-1], accuracy=accuracy,
                              extra={"variant": variant.name, "description": variant.description,
                                     "framework": variant.framework, "keras_backend": variant.backend,
                                     "source": "deploykit.compare", "not_exported": not_exported}),
        reference=write_reference(model_dir, x_u8, y_test[:n_ref], probs[:n_ref]),
        output_kind=plan.output_kind,
    )
    save_framework_model(trained.model, variant.framework, model_dir)
    carry_over_entries(manifest, model_dir, same_source=False)  # earlier artifacts stay listed, marked stale
    manifest.write(model_dir)
    calib_x, qat_idx = export_samples(x_train, cfg.seed, spec.get("calibration_samples", 500),
                                      spec.get("qat_samples", 10_000))
    ctx = ExportContext(model=trained.model, framework=plan.framework, model_name=name, architecture=cfg.net,
                        input=shape, out_dir=model_dir, calib_x=calib_x, train_x=x_train[qat_idx],
                        train_y=data["y_train"][qat_idx], seed=cfg.seed, qat_epochs=spec.get("qat_epochs", 1),
                        batch_size=cfg.batch_size, num_classes=len(manifest.classes), output_kind=plan.output_kind)
    entries = export_and_prove(ctx, manifest, model_dir, formats=formats, x_test=x_test, y_test=y_test,
                               reference_probs=probs[:n_ref], float_accuracy=accuracy, reporter=QuietReporter(),
                               stages={}) if formats else []
    where = str(model_dir / "manifest.json")
    rows = [{"format": e.format, "status": e.status, "error": e.error, "manifest": where, "accuracy": e.accuracy,
             "max_abs_diff": e.parity.max_abs_diff if e.parity else None,
             "top1_agreement": e.parity.top1_agreement if e.parity else None} for e in entries]
    return rows + [{"format": k, "status": "not exported", "error": why, "manifest": where}
                   for k, why in not_exported.items()]

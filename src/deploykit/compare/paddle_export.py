"""The trained Paddle model through deploykit's ONNX path: exported (paddle2onnx), proven in
onnxruntime against the Paddle model's own outputs, and recorded in a manifest that serve, bench
and report read like any other model folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deploykit import __version__

__all__ = ["export_paddle"]


def export_paddle(trained, cfg, data, probs: np.ndarray, accuracy: float, spec: dict) -> dict:
    from deploykit.export import ExportContext
    from deploykit.manifest import DataInfo, InputSpec, ModelManifest, TrainingInfo
    from deploykit.pipeline import QuietReporter, export_and_prove, write_reference
    from deploykit.validate import PARITY_SAMPLES

    name = f"paddle-{cfg.net}"
    model_dir = Path(spec["export_dir"]) / spec["dataset"] / name
    model_dir.mkdir(parents=True, exist_ok=True)
    shape = [1, 28, 28] if cfg.net == "cnn" else [28, 28]
    input_spec = InputSpec(name="input", shape=[None, *shape], layout="NCHW" if cfg.net == "cnn" else "NHW")
    x_test, y_test = data["x_test"], data["y_test"].astype(np.int64)
    n_ref = min(PARITY_SAMPLES, len(x_test))
    x_u8 = np.rint(x_test[:n_ref] * 255).astype(np.uint8)  # the data is uint8/255: exact
    manifest = ModelManifest(
        model=name, framework="paddle", architecture=cfg.net, input=input_spec, classes=[str(d) for d in range(10)],
        dataset=DataInfo(**spec["data_info"]) if spec.get("data_info") else None, deploykit_version=__version__,
        training=TrainingInfo(epochs=cfg.epochs, batch_size=cfg.batch_size, seed=cfg.seed,
                              seconds=round(sum(trained.epoch_s), 3), loss=trained.train_loss[-1], accuracy=accuracy,
                              extra={"api": "paddle.nn.Layer", "source": "compare-training"}),
        reference=write_reference(model_dir, x_u8, y_test[:n_ref], probs[:n_ref]),
        output_kind="logits",
    )
    manifest.write(model_dir)
    ctx = ExportContext(model=trained.model, framework="paddle", model_name=name, architecture=cfg.net,
                        input=input_spec, out_dir=model_dir, calib_x=data["x_train"][:100], seed=cfg.seed,
                        batch_size=cfg.batch_size, output_kind="logits")
    entries = export_and_prove(ctx, manifest, model_dir, formats="onnx", x_test=x_test, y_test=y_test,
                               reference_probs=probs[:n_ref], float_accuracy=accuracy, reporter=QuietReporter(),
                               stages={})
    entry = entries[0]
    return {"format": entry.format, "status": entry.status, "error": entry.error,
            "manifest": str(model_dir / "manifest.json"), "accuracy": entry.accuracy,
            "max_abs_diff": entry.parity.max_abs_diff if entry.parity else None,
            "top1_agreement": entry.parity.top1_agreement if entry.parity else None}

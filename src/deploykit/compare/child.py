"""One variant × one repeat, in a fresh process: `python -m deploykit.compare.child SPEC.json OUT.json`.

The thread budget and KERAS_BACKEND are set before any framework is imported (Keras reads the
backend once, at import). Peak RSS is read right after training and the test-set evaluation,
before TensorBoard files or exports, so it is the training's own figure.
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import sys
import time
import traceback
from pathlib import Path

__all__ = ["run_child", "log_timing_and_test", "main"]


def _rss_now() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def run_child(spec: dict) -> dict:
    from deploykit.compare.threads import apply_before_import, apply_after_import
    from deploykit.compare.variants import VARIANTS

    variant = VARIANTS[spec["variant"]]
    if variant.backend:
        os.environ["KERAS_BACKEND"] = variant.backend
    threads = apply_before_import(spec["threads"], variant.framework, variant.backend)
    import numpy as np

    from deploykit.compare.trained import RunConfig, test_figures

    cfg = RunConfig(net=spec["net"], epochs=spec["epochs"], batch_size=spec["batch_size"], seed=spec["seed"],
                    threads=spec["threads"], log_dir=spec["log_dir"])
    data = dict(np.load(spec["data"]))
    t0 = time.perf_counter()
    if variant.framework == "paddle":
        from deploykit.compare import loops_paddle as loops
    elif variant.loop == "torch":
        from deploykit.compare import loops_torch as loops
    else:
        from deploykit.compare import loops_keras as loops
    uses_tf = variant.backend == "tensorflow"
    uses_torch = variant.framework == "torch" or variant.backend == "torch"
    if uses_tf:
        from deploykit.runtimes.tensorflow_rt import import_tf

        import_tf()  # quietly, before Keras pulls it in
    for module in variant.needs:  # timed apart from training (paddle2onnx only matters at export)
        if module != "paddle2onnx":
            importlib.import_module(module)
    threads["set"] = apply_after_import(spec["threads"], uses_tf, uses_torch)
    import_s = time.perf_counter() - t0
    rss_before = _rss_now()
    trained = loops.train(variant, cfg, data)
    probs = trained.predict(data["x_test"])
    accuracy, loss = test_figures(probs, data["y_test"])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    trained.extra["frameworks_loaded"] = sorted(m for m in ("tensorflow", "torch", "jax", "paddle") if m in sys.modules)
    _log_scalars(cfg, trained, accuracy, loss)
    result = {
        "status": "ok", "epoch_s": trained.epoch_s, "train_loss": trained.train_loss, "train_accuracy": trained.train_acc,
        "test_accuracy": accuracy, "test_loss": loss, "peak_rss_bytes": peak, "rss_before_training_bytes": rss_before,
        "import_s": import_s, "versions": trained.versions, "threads": threads, "extra": trained.extra,
    }
    if spec.get("export_dir") and spec.get("formats"):
        from deploykit.compare.export import export_variant

        result["artifacts"] = export_variant(variant, trained, cfg, data, probs, accuracy, spec)
    return result


def _log_scalars(cfg, trained, accuracy: float, loss: float) -> None:
    """Epoch figures for loops without a live framework writer; timing and test figures for every run.

    Written after peak RSS is read: tensorboard's writers import TensorFlow when it is installed,
    which would add TensorFlow's memory to a PyTorch, JAX or Paddle run."""
    from deploykit.compare.tblog import ScalarWriter

    if not trained.logged_train:
        if "torch" in trained.versions:  # PyTorch's own writer for PyTorch runs
            from deploykit.compare.tblog import without_tensorflow

            without_tensorflow()
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(log_dir=str(Path(cfg.log_dir) / "train"))
            for epoch, (l, a) in enumerate(zip(trained.train_loss, trained.train_acc)):
                writer.add_scalar("epoch_loss", l, epoch)
                writer.add_scalar("epoch_accuracy", a, epoch)
            writer.close()
            return log_timing_and_test(cfg.log_dir, trained.epoch_s, accuracy, loss)
        with ScalarWriter(Path(cfg.log_dir) / "train") as w:
            for epoch, (l, a) in enumerate(zip(trained.train_loss, trained.train_acc)):
                w.scalar("epoch_loss", l, epoch)
                w.scalar("epoch_accuracy", a, epoch)
    log_timing_and_test(cfg.log_dir, trained.epoch_s, accuracy, loss)


def log_timing_and_test(log_dir, epoch_s: list[float], accuracy: float, loss: float) -> None:
    """timing/epoch_seconds per epoch and test/test_{accuracy,loss} at the last epoch (every run)."""
    from deploykit.compare.tblog import ScalarWriter

    with ScalarWriter(Path(log_dir) / "timing") as w:
        for epoch, seconds in enumerate(epoch_s):
            w.scalar("epoch_seconds", seconds, epoch)
    with ScalarWriter(Path(log_dir) / "test") as w:
        w.scalar("test_accuracy", accuracy, len(epoch_s) - 1)
        w.scalar("test_loss", loss, len(epoch_s) - 1)


def main(argv: list[str]) -> int:
    src, dst = map(Path, argv)
    spec = json.loads(src.read_text())
    try:
        result = run_child(spec)
    except ImportError as exc:  # a framework the variant needs is not installed
        result = {"status": "unavailable", "reason": f"{exc.name or exc} is not installed"}
        traceback.print_exc()
    except Exception as exc:  # noqa: BLE001 - any framework error is this run's failure, recorded as such
        last = traceback.format_exception_only(type(exc), exc)[-1].strip()
        result = {"status": "failed", "reason": last[:500]}
        traceback.print_exc()
    dst.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

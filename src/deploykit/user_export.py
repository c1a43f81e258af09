"""`deploykit export MODEL_PATH`: export and prove a user's own model.

Accepted: a Keras model file (`.keras`, `.h5`), a TensorFlow SavedModel folder, or a TorchScript
archive. Parity is always checked: on dataset samples fitted to the model's input shape when a
dataset is named and fits (then accuracy too), otherwise on seeded random inputs in [0, 1].
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from deploykit import __version__
from deploykit.errors import UsageError
from deploykit.export import ExportContext, resolve_formats
from deploykit.manifest import DataInfo, InputSpec, ModelManifest
from deploykit.pipeline import QuietReporter, Reporter, check_out_dir, export_and_prove, write_reference
from deploykit.validate import PARITY_SAMPLES

__all__ = ["UserModel", "load_user_model", "export_user_model"]

RANDOM_SAMPLES = 2000


@dataclass
class UserModel:
    model: object
    framework: str
    input: InputSpec
    name: str


def _layout(inner: list[int]) -> str:
    if len(inner) == 1:
        return "NC"
    if len(inner) == 2:
        return "NHW"
    return "NCHW" if inner[0] in (1, 3) and inner[-1] not in (1, 3) else "NHWC"


def _spec(inner: list[int]) -> InputSpec:
    return InputSpec(name="input", shape=[None, *inner], layout=_layout(inner))


def load_user_model(path: Path, input_shape: Optional[list[int]] = None) -> UserModel:
    """Load a Keras file, SavedModel folder or TorchScript archive; infer its per-sample input shape."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"no model at {path}")
    name = path.stem if path.is_file() else path.name
    if path.is_dir():
        if not (path / "saved_model.pb").exists():
            raise UsageError(f"{path} is a folder without saved_model.pb: not a SavedModel")
        return _load_savedmodel(path, name, input_shape)
    if path.suffix in (".keras", ".h5"):
        import keras

        import deploykit.models.keras  # noqa: F401  (registers the reference subclass for deserialisation)

        try:
            model = keras.models.load_model(path, compile=False, safe_mode=True)
        except (ValueError, OSError, TypeError) as exc:
            raise UsageError(f"{path}: not a loadable Keras model: {str(exc).splitlines()[0]}") from exc
        inner = input_shape or [int(d) for d in model.inputs[0].shape[1:]]
        return UserModel(model, "keras", _spec(inner), name)
    if path.suffix in (".pt", ".pth", ".ts", ".torchscript"):
        import torch

        try:
            # TorchScript only: its loader restores TorchScript types, never arbitrary pickled objects.
            model = torch.jit.load(str(path), map_location="cpu").eval()
        except RuntimeError as exc:
            raise UsageError(f"{path}: not a TorchScript archive (a pickled nn.Module is not loaded: "
                             f"it could run arbitrary code; save with torch.jit.script/trace)") from exc
        inner = input_shape or _probe_torch_shape(model)
        return UserModel(model, "torch", _spec(inner), name)
    raise UsageError(f"{path}: unknown model type {path.suffix!r}; expected .keras, .h5, a SavedModel folder, or a TorchScript .pt")


def _load_savedmodel(path: Path, name: str, input_shape):
    import keras

    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    if "serving_default" not in loaded.signatures:
        raise UsageError(f"{path}: SavedModel has no serving_default signature")
    sig = loaded.signatures["serving_default"]
    spec = next(iter(sig.structured_input_signature[1].values()))
    inner = input_shape or [int(d) for d in spec.shape[1:]]
    out_key = next(iter(sig.structured_outputs))
    # Wrap it as a Keras model so every Keras exporter applies unchanged.
    inputs = keras.Input(tuple(inner), name="input")
    layer = keras.layers.TFSMLayer(str(path), call_endpoint="serving_default")
    outputs = layer(inputs)
    if isinstance(outputs, dict):
        outputs = outputs[out_key]
    return UserModel(keras.Model(inputs, outputs, name=name.replace("-", "_")), "keras", _spec(inner), name)


_PROBE_SHAPES = ([1, 28, 28], [28, 28], [784], [28, 28, 1])


def _probe_torch_shape(model) -> list[int]:
    """TorchScript records no input shape: try the MNIST-like ones, else ask for --input-shape."""
    import torch

    for inner in _PROBE_SHAPES:
        try:
            with torch.inference_mode():
                model(torch.zeros(2, *inner))
            return list(inner)
        except RuntimeError:
            continue
    raise UsageError("cannot infer the TorchScript model's input shape; pass --input-shape, e.g. 1,28,28")


def export_user_model(
    path: Path, *, formats="all", dataset: Optional[str] = None, out: Path = Path("models"), name: Optional[str] = None,
    input_shape: Optional[list[int]] = None, data_dir: Optional[Path] = None, seed: int = 0,
    reporter: Optional[Reporter] = None,
) -> tuple[ModelManifest, Path]:
    from deploykit.train import framework_predict

    reporter = reporter or QuietReporter()
    user = load_user_model(path, input_shape)
    resolve_formats(formats, user.framework, "custom")
    name = name or user.name
    model_dir = check_out_dir(Path(out) / "user" / name)
    inner = user.input.shape[1:]
    rng = np.random.default_rng(seed)
    x_test = y_test = None
    data_info, classes = None, []
    if dataset is not None:
        from deploykit.data import load_dataset, normalize

        ds = load_dataset(dataset, data_dir, progress=reporter.note)
        if int(np.prod(inner)) == 28 * 28:
            x_test, y_test = normalize(ds.x_test), ds.y_test
            calib = normalize(ds.x_train[rng.choice(len(ds.x_train), min(500, len(ds.x_train)), replace=False)])
            data_info = DataInfo(name=dataset, source=ds.source, location=ds.location,
                                 train_samples=len(ds.x_train), test_samples=len(ds.x_test), note=ds.note)
            classes = list(ds.classes)
        else:
            reporter.note(f"{dataset} images (28×28) do not fit input {inner}: checking parity on seeded random inputs")
    if x_test is None:
        # Multiples of 1/255, like pixels, so the uint8 reference copy holds exactly these inputs.
        x_test = rng.integers(0, 256, (RANDOM_SAMPLES, *inner)).astype(np.float32) / 255
        calib = rng.integers(0, 256, (200, *inner)).astype(np.float32) / 255
        data_info = DataInfo(name="random", source="user", location=f"numpy default_rng({seed}) integers 0..255 / 255",
                             train_samples=0, test_samples=RANDOM_SAMPLES, note="no dataset fits: parity only, no accuracy")
    x_test = x_test.reshape(len(x_test), *inner)
    calib = calib.reshape(len(calib), *inner)

    t = time.perf_counter()
    probs = framework_predict(user.model, user.framework, x_test)
    n_ref = min(PARITY_SAMPLES, len(x_test))
    float_acc = float((probs.argmax(1) == y_test).mean()) if y_test is not None else None
    x_ref = (np.clip(x_test[:n_ref], 0, 1) * 255).round().astype(np.uint8)
    manifest = ModelManifest(model=name, framework=user.framework, architecture="custom", dataset=data_info,
                             input=user.input, classes=classes, deploykit_version=__version__,
                             reference=write_reference(model_dir, x_ref, y_test[:n_ref] if y_test is not None else None,
                                                       probs[:n_ref]))
    manifest.write(model_dir)
    ctx = ExportContext(model=user.model, framework=user.framework, model_name=name, architecture="custom",
                        input=user.input, out_dir=model_dir, calib_x=calib, seed=seed, progress=reporter.note)
    stages = {"reference": round(time.perf_counter() - t, 3)}
    export_and_prove(ctx, manifest, model_dir, formats=formats, x_test=x_test, y_test=y_test,
                     reference_probs=probs[:n_ref], float_accuracy=float_acc, reporter=reporter, stages=stages)
    return manifest, model_dir

"""Loading a user's model for `deploykit export`: what kind of file it is, its input, and a probe run.

Everything that can be checked before the (slow) load is checked first (`check_source`): the path
exists, its kind is known, and the file is not corrupt at a glance (.keras and TorchScript files
are zip archives, .h5 files carry the HDF5 signature). Backend errors while loading or probing
become one-line UsageErrors.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from deploykit.errors import UsageError
from deploykit.runtimes.base import one_line
from deploykit.manifest import InputSpec

__all__ = ["UserModel", "check_source", "load_user_model", "infer_layout", "USER_NORMALISATION"]

_KERAS_SUFFIXES = (".keras", ".h5")
_TORCH_SUFFIXES = (".pt", ".pth", ".ts", ".torchscript")
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_PROBE_SHAPES = ([1, 28, 28], [28, 28], [784], [28, 28, 1])
USER_NORMALISATION = "pixel/255 -> [0,1]"


@dataclass
class UserModel:
    model: object
    framework: str
    input: InputSpec
    name: str


def infer_layout(inner: list[int]) -> str:
    if len(inner) == 1:
        return "NC"
    if len(inner) == 2:
        return "NHW"
    return "NCHW" if inner[0] in (1, 3) and inner[-1] not in (1, 3) else "NHWC"


def _spec(inner: list[int]) -> InputSpec:
    return InputSpec(name="input", shape=[None, *inner], layout=infer_layout(inner), normalisation=USER_NORMALISATION)


def check_source(path: Path) -> str:
    """The framework ("keras" or "torch") of the model at `path`, without loading it."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"no model at {path}")
    if path.is_dir():
        if not (path / "saved_model.pb").exists():
            raise UsageError(f"{path} is a folder without saved_model.pb: not a SavedModel")
        return "keras"
    suffix = path.suffix.lower()
    if suffix == ".keras" or suffix in _TORCH_SUFFIXES:
        if not zipfile.is_zipfile(path):
            kind = "Keras .keras" if suffix == ".keras" else "TorchScript"
            raise UsageError(f"{path}: not a {kind} archive (not a zip file): corrupt, truncated or another format")
        return "keras" if suffix == ".keras" else "torch"
    if suffix == ".h5":
        with open(path, "rb") as f:
            if f.read(8) != _HDF5_SIGNATURE:
                raise UsageError(f"{path}: not an HDF5 file (no HDF5 signature): corrupt or another format")
        return "keras"
    raise UsageError(f"{path}: unknown model type {path.suffix!r}; expected .keras, .h5, a SavedModel folder, "
                     "or a TorchScript .pt")


def _fitted_shape(declared: list[Optional[int]], given: Optional[list[int]], what: str) -> list[int]:
    """The per-sample shape: `given` when it agrees with the declared one (None dims are free)."""
    if given is None:
        if any(d is None for d in declared):
            raise UsageError(f"{what} declares input {['N', *declared]} with free dimensions: pass --input-shape")
        return [int(d) for d in declared]
    if len(given) != len(declared) or any(d is not None and d != g for d, g in zip(declared, given)):
        raise UsageError(f"--input-shape {','.join(map(str, given))} does not fit {what}'s input "
                         f"{['N', *declared]}")
    return list(given)


def load_user_model(path: Path, input_shape: Optional[list[int]] = None) -> UserModel:
    """Load a Keras file, SavedModel folder or TorchScript archive; fit its per-sample input shape; probe it."""
    path = Path(path)
    framework = check_source(path)
    name = path.stem if path.is_file() else path.name
    if path.is_dir():
        user = _load_savedmodel(path, name, input_shape)
    elif framework == "keras":
        user = _load_keras(path, name, input_shape)
    else:
        user = _load_torchscript(path, name, input_shape)
    _probe(user, given=input_shape is not None)
    return user


def _load_keras(path: Path, name: str, input_shape) -> UserModel:
    # first: it imports TensorFlow quietly, and registers the reference subclasses for deserialisation
    import deploykit.models.keras  # noqa: F401
    import keras

    try:
        model = keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # Keras raises many types (and "File not found" for a corrupt zip): one line
        raise UsageError(f"{path}: not a loadable Keras model: {one_line(exc)}") from exc
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        inputs = None
    if inputs is not None and len(inputs) != 1:
        raise UsageError(f"{path}: the model has {len(inputs)} inputs; deploykit exports single-input models")
    declared = [None if d is None else int(d) for d in inputs[0].shape[1:]] if inputs else None
    if declared is None and input_shape is None:
        raise UsageError(f"{path}: the model records no input shape: pass --input-shape")
    inner = _fitted_shape(declared, input_shape, path.name) if declared is not None else list(input_shape)
    return UserModel(model, "keras", _spec(inner), name)


def _load_savedmodel(path: Path, name: str, input_shape) -> UserModel:
    from deploykit.runtimes.tensorflow_rt import import_tf

    tf = import_tf()  # without TensorFlow's C++ start-up lines on the user's terminal
    import keras

    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as exc:  # TF's loader raises many types: one line
        raise UsageError(f"{path}: not a loadable SavedModel: {one_line(exc)}") from exc
    if "serving_default" not in loaded.signatures:
        raise UsageError(f"{path}: SavedModel has no serving_default signature")
    sig = loaded.signatures["serving_default"]
    specs = list(sig.structured_input_signature[1].values())
    if len(specs) != 1:
        raise UsageError(f"{path}: serving_default takes {len(specs)} inputs; deploykit exports single-input models")
    declared = [None if d is None else int(d) for d in specs[0].shape.as_list()[1:]]
    inner = _fitted_shape(declared, input_shape, path.name)
    out_key = next(iter(sig.structured_outputs))
    # Wrap it as a Keras model so every Keras exporter applies unchanged.
    inputs = keras.Input(tuple(inner), name="input")
    outputs = keras.layers.TFSMLayer(str(path), call_endpoint="serving_default")(inputs)
    if isinstance(outputs, dict):
        outputs = outputs[out_key]
    return UserModel(keras.Model(inputs, outputs, name=name.replace("-", "_")), "keras", _spec(inner), name)


def _load_torchscript(path: Path, name: str, input_shape) -> UserModel:
    import torch

    try:
        # TorchScript only: its loader restores TorchScript types, never arbitrary pickled objects.
        model = torch.jit.load(str(path), map_location="cpu").eval()
    except Exception as exc:  # torch raises RuntimeError and friends: one line
        raise UsageError(f"{path}: not a TorchScript archive (a pickled nn.Module is not loaded: it could run "
                         f"arbitrary code; save with torch.jit.script/trace): {one_line(exc)}") from exc
    inner = list(input_shape) if input_shape else _probe_torch_shape(model)
    return UserModel(model, "torch", _spec(inner), name)


def _probe_torch_shape(model) -> list[int]:
    """TorchScript records no input shape: try the MNIST-like ones, else ask for --input-shape."""
    import torch

    for inner in _PROBE_SHAPES:
        try:
            with torch.inference_mode():
                model(torch.zeros(2, *inner))
            return list(inner)
        except Exception:  # noqa: BLE001 - any failure means "not this shape"
            continue
    raise UsageError("cannot infer the TorchScript model's input shape; pass --input-shape, e.g. 1,28,28")


def _probe(user: UserModel, given: bool) -> None:
    """One forward pass on zeros: the input shape fits and the output is (N, classes)."""
    from deploykit.train import framework_outputs

    inner = user.input.shape[1:]
    try:
        out = framework_outputs(user.model, user.framework, np.zeros((2, *inner), np.float32))
    except Exception as exc:  # the backend's own error types: one line
        what = f"--input-shape {','.join(map(str, inner))}" if given else f"input {inner}"
        raise UsageError(f"{what} does not fit the model: {one_line(exc)}") from exc
    if out.ndim != 2 or out.shape[0] != 2 or out.shape[1] < 2:
        raise UsageError(f"the model returns shape {list(out.shape)} for 2 inputs; expected (N, classes) with "
                         "at least 2 classes")

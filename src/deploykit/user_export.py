"""`deploykit export MODEL_PATH`: export and prove a user's own model.

Accepted: a Keras model file (`.keras`, `.h5`), a TensorFlow SavedModel folder, or a TorchScript
archive (deploykit.user_model). Parity is always checked, on (in this order of preference) the
user's `eval_data`, a reference `dataset` fitted to the model's input (then accuracy too), or
seeded random inputs in [0, 1].

Order of work: every input mistake that can be found without the model (unknown format or dataset,
corrupt file, unreadable eval data, unwritable --out) is raised first; then the model is loaded and
the data fitted to it; only then is the output folder created, so a mistake leaves nothing behind.
Re-exporting into a folder keeps the other formats' entries (manifest.carry_over_entries); `clean`
deletes the previous artifacts first.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from deploykit import __version__
from deploykit.errors import UsageError, unknown_name
from deploykit.evaldata import EvalData, fit_images, load_eval_data, target_geometry
from deploykit.export import ExportContext, resolve_formats
from deploykit.manifest import (DataInfo, ModelManifest, SourceInfo, carry_over_entries, remove_previous,
                                sha256_file)
from deploykit.outputs import OUTPUT_CHOICES, resolve_output_kind, to_probs
from deploykit.pipeline import QuietReporter, Reporter, check_out_dir, export_and_prove, write_reference
from deploykit.user_model import UserModel, check_source, load_user_model
from deploykit.validate import PARITY_SAMPLES

__all__ = ["UserModel", "load_user_model", "export_user_model", "FitOptions"]

RANDOM_SAMPLES = 2000
CALIBRATION_SAMPLES = 500


@dataclass(frozen=True)
class FitOptions:
    """How images are fitted to the model's input (deploykit.evaldata.fit_images)."""

    pad: bool = False
    resize: bool = False
    channels: Optional[int] = None


@dataclass
class _Probe:
    x: np.ndarray
    y: Optional[np.ndarray]
    calib: np.ndarray
    info: DataInfo
    classes: list[str]


def _check_writable(out: Path) -> None:
    """--out must be creatable, checked without creating anything."""
    probe = Path(out).absolute()
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out} is not writable ({probe} is not a writable folder)")


def _random_probe(inner, seed: int) -> _Probe:
    rng = np.random.default_rng(seed)
    # Multiples of 1/255, like pixels, so the uint8 reference copy holds exactly these inputs.
    x = rng.integers(0, 256, (RANDOM_SAMPLES, *inner)).astype(np.float32) / 255
    calib = rng.integers(0, 256, (200, *inner)).astype(np.float32) / 255
    info = DataInfo(name="random", source="user", location=f"numpy default_rng({seed}) integers 0..255 / 255",
                    train_samples=0, test_samples=RANDOM_SAMPLES, note="no dataset fits: parity only, no accuracy")
    return _Probe(x, None, calib, info, [])


def _eval_probe(data: EvalData, user: UserModel, fit: FitOptions, seed: int) -> _Probe:
    inner, layout = user.input.shape[1:], user.input.layout
    x, transform = fit_images(data.images, inner, layout, pad=fit.pad, resize=fit.resize, channels=fit.channels,
                              what="--eval-data samples")
    rng = np.random.default_rng(seed)
    calib = x[rng.choice(len(x), min(CALIBRATION_SAMPLES, len(x)), replace=False)]
    info = DataInfo(name=Path(data.location).name, source="user", location=data.location, train_samples=0,
                    test_samples=len(x), transform=transform,
                    note="the user's evaluation data; int8 calibration samples drawn from it too")
    return _Probe(x, data.y, calib, info, data.classes)


def _dataset_probe(dataset: str, data_dir, user: UserModel, fit: FitOptions, seed: int, say) -> Optional[_Probe]:
    from deploykit.data import load_dataset

    inner, layout = user.input.shape[1:], user.input.layout
    if target_geometry(inner, layout) is None and int(np.prod(inner)) != 28 * 28:
        say(f"{dataset} images (28×28) do not fit the flat input {inner}: checking parity on seeded random inputs")
        return None
    ds = load_dataset(dataset, data_dir, progress=say)
    pixels = lambda a: a.astype(np.float32)[..., None] / 255  # noqa: E731 - N×28×28 uint8 → N×28×28×1 in [0,1]
    x, transform = fit_images(pixels(ds.x_test), inner, layout, pad=fit.pad, resize=fit.resize,
                              channels=fit.channels, what=f"{dataset} images")
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(ds.x_train), min(CALIBRATION_SAMPLES, len(ds.x_train)), replace=False)
    calib, _ = fit_images(pixels(ds.x_train[pick]), inner, layout, pad=fit.pad, resize=fit.resize,
                          channels=fit.channels)
    info = DataInfo(name=dataset, source=ds.source, location=ds.location, train_samples=len(ds.x_train),
                    test_samples=len(ds.x_test), note=ds.note, transform=transform)
    return _Probe(x, ds.y_test, calib, info, list(ds.classes))


def _keras_with_softmax(model, inner):
    import keras

    inputs = keras.Input(tuple(inner), name="input")
    return keras.Model(inputs, keras.layers.Softmax()(model(inputs)), name=f"{model.name}_softmax")


def export_user_model(
    path: Path, *, formats="all", dataset: Optional[str] = None, out: Path = Path("models"), name: Optional[str] = None,
    input_shape: Optional[list[int]] = None, data_dir: Optional[Path] = None, seed: int = 0,
    eval_data: Optional[Path] = None, fit: FitOptions = FitOptions(), outputs: str = "auto", clean: bool = False,
    store: bool = False, isolate: bool = True, reporter: Optional[Reporter] = None, edge_runtime: Optional[str] = None,
) -> tuple[ModelManifest, Path]:
    """Export the model at `path` to `formats`, prove each artifact, write OUT/user/NAME/manifest.json.

    `outputs`: what the model emits, auto | probs | logits (deploykit.outputs); softmax is appended
    to logits only. `store`: also save the folder in the BentoML model store as `user-NAME`.
    """
    from deploykit.data import DATASETS
    from deploykit.train import framework_outputs

    reporter = reporter or QuietReporter()
    path = Path(path)
    # -- checks that need no model -------------------------------------------------------------------
    framework = check_source(path)
    resolve_formats(formats, framework, "custom")
    if outputs not in OUTPUT_CHOICES:
        raise UsageError(f"--outputs {outputs!r}: expected one of {', '.join(OUTPUT_CHOICES)}")
    if dataset is not None and dataset not in DATASETS:
        raise unknown_name("dataset", dataset, DATASETS)
    if dataset is not None and eval_data is not None:
        raise UsageError("--dataset and --eval-data exclude each other: choose one")
    if fit.channels not in (None, 1, 3):
        raise UsageError(f"--channels {fit.channels}: expected 1 or 3")
    user_data = load_eval_data(eval_data) if eval_data is not None else None
    from deploykit.edge.target import parse_edge_runtime

    edge_spec = parse_edge_runtime(edge_runtime)
    name = name or (path.stem if path.is_file() else path.name)
    model_dir = Path(out) / "user" / name
    _check_writable(model_dir)

    # -- the model, and the data fitted to it ----------------------------------------------------------
    t = time.perf_counter()
    user = load_user_model(path, input_shape)
    inner = user.input.shape[1:]
    if user_data is not None:
        probe = _eval_probe(user_data, user, fit, seed)
    else:
        probe = (_dataset_probe(dataset, data_dir, user, fit, seed, reporter.note) if dataset else None) \
            or _random_probe(inner, seed)
    raw = framework_outputs(user.model, user.framework, probe.x)
    kind, kind_source = resolve_output_kind(outputs, raw)
    if probe.classes and raw.shape[1] != len(probe.classes):
        raise UsageError(f"the model has {raw.shape[1]} outputs, the data {len(probe.classes)} classes "
                         f"({probe.info.location})")
    probs = to_probs(raw, kind)
    reporter.note(f"{user.name}: outputs {'logits (softmax appended at export)' if kind == 'logits' else 'probabilities'}"
                  f" ({kind_source})")
    n_ref = min(PARITY_SAMPLES, len(probe.x))
    float_acc = float((probs.argmax(1) == probe.y).mean()) if probe.y is not None else None

    # -- the folder: created only now --------------------------------------------------------------------
    model_dir = check_out_dir(model_dir)
    if clean:
        removed = remove_previous(model_dir)
        if removed:
            reporter.note(f"--clean: removed {len(removed)} previous file(s) from {model_dir}")
    x_ref = (np.clip(probe.x[:n_ref], 0, 1) * 255).round().astype(np.uint8)
    manifest = ModelManifest(
        model=name, framework=user.framework, architecture="custom", dataset=probe.info, input=user.input,
        classes=probe.classes or [str(i) for i in range(raw.shape[1])], deploykit_version=__version__,
        output_kind=kind, output_kind_source=kind_source,
        source=SourceInfo(path=str(path.absolute()), sha256=sha256_file(path)),
        reference=write_reference(model_dir, x_ref, probe.y[:n_ref] if probe.y is not None else None, probs[:n_ref]),
    )
    carried = carry_over_entries(manifest, model_dir)
    if carried:
        reporter.note(f"kept {len(carried)} earlier artifact(s) of {model_dir}: {', '.join(carried)}")
    manifest.write(model_dir)
    export_model = _keras_with_softmax(user.model, inner) if user.framework == "keras" and kind == "logits" else user.model
    ctx = ExportContext(model=export_model, framework=user.framework, model_name=name, architecture="custom",
                        input=user.input, out_dir=model_dir, calib_x=probe.calib.reshape(-1, *inner), seed=seed,
                        progress=reporter.note, output_kind=kind, num_classes=raw.shape[1], edge_runtime=edge_spec)
    stages = {"reference": round(time.perf_counter() - t, 3)}
    export_and_prove(ctx, manifest, model_dir, formats=formats, x_test=probe.x, y_test=probe.y,
                     reference_probs=probs[:n_ref], float_accuracy=float_acc, reporter=reporter, stages=stages,
                     isolate=isolate)
    if store:
        from deploykit.store import bentoml_name, save_to_bentoml

        save_to_bentoml(model_dir, manifest, name=bentoml_name("user", name))  # also rewrites the manifest
    return manifest, model_dir

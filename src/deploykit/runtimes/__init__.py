"""Runtime registry: name → Runtime class, one module per runtime, imported only when used."""

from __future__ import annotations

import importlib
from pathlib import Path

from deploykit.errors import unknown_name
from deploykit.manifest import ArtifactEntry, ModelManifest
from deploykit.runtimes.base import DEVICES, Predictor, Runtime

__all__ = ["RUNTIMES", "get_runtime", "runtime_names", "load_artifact", "load_predictor", "Predictor", "Runtime", "DEVICES"]

# name → module; the module defines a Runtime subclass with that `name`. Frameworks are heavy and
# optional, so a runtime's module is imported only when that runtime is asked for. Old TFLite runtimes
# (tflite-runtime) are not here: they need NumPy 1.x and run in `deploykit edge`'s isolated environments.
RUNTIMES: dict[str, str] = {
    "onnxruntime": "deploykit.runtimes.onnxruntime_rt",
    "litert": "deploykit.runtimes.litert_rt",
    "tensorflow": "deploykit.runtimes.tensorflow_rt",
    "torch": "deploykit.runtimes.torch_rt",
}


def runtime_names() -> list[str]:
    return list(RUNTIMES)


def get_runtime(name: str) -> type[Runtime]:
    if name not in RUNTIMES:
        raise unknown_name("runtime", name, RUNTIMES)
    module = importlib.import_module(RUNTIMES[name])
    for obj in vars(module).values():
        if isinstance(obj, type) and issubclass(obj, Runtime) and getattr(obj, "name", None) == name:
            return obj
    raise LookupError(f"{RUNTIMES[name]} defines no runtime named {name!r}")  # a packaging bug, not user input


def load_artifact(
    model_dir: Path, entry: ArtifactEntry, manifest: ModelManifest, *, device: str = "cpu",
    threads: int | None = None, runtime: str | None = None, verify: bool = True,
) -> Predictor:
    """Load one manifest entry in its runtime (or `runtime`), after checking its sha256."""
    path = manifest.verify(model_dir, entry) if verify else Path(model_dir) / entry.path
    rt = get_runtime(runtime or entry.runtime)()
    return rt.load(path, entry.input, entry.output, device=device, threads=threads)


def load_predictor(model_dir: Path | str, fmt: str, *, device: str = "cpu", threads: int | None = None,
                   runtime: str | None = None, verify: bool = True) -> Predictor:
    """Read the manifest in `model_dir` and load its artifact of format `fmt`."""
    model_dir = Path(model_dir)
    manifest = ModelManifest.read(model_dir)
    return load_artifact(model_dir, manifest.artifact(fmt), manifest, device=device, threads=threads,
                         runtime=runtime, verify=verify)

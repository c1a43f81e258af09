"""Pick a model's edge artifacts (TFLite, and ONNX for ONNX Runtime on the device: how PyTorch models
get there) and prepare what the runner needs: the verified file, its op table,
and the reference inputs already mapped onto the artifact's input tensor (on the host, with
`deploykit.runtimes.base.to_input`: one implementation of the input mapping, the manifest's)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from deploykit.errors import ManifestError, UsageError
from deploykit.manifest import ArtifactEntry, ModelManifest
from deploykit.runtimes.base import to_input
from deploykit.edge.session import PreparedArtifact
from deploykit.edge.onnx_file import inspect_onnx
from deploykit.edge.tflite_file import inspect_tflite

__all__ = ["edge_entries", "kinds_for", "load_reference", "prepare_artifacts", "resolve_models", "ARTIFACT_KINDS"]

# artifact kind → file ending; the runner picks the runtime family by the same ending.
ARTIFACT_KINDS = {"tflite": ".tflite", "onnx": ".onnx"}
_ONNX_PACKAGES = ("onnxruntime",)


def kinds_for(runtime: Optional[str]) -> tuple[str, ...]:
    """Which kinds of artifact a runtime spec (NAME or NAME==VERSION, None: whatever the device has) loads."""
    if not runtime:
        return tuple(ARTIFACT_KINDS)
    return ("onnx",) if runtime.split("==", 1)[0].strip().lower() in _ONNX_PACKAGES else ("tflite",)


def resolve_models(paths: list[str]) -> tuple[list[Path], list[str]]:
    """Model folders, folders of them, or BentoML tags → model folders (as `deploykit bench` reads them)."""
    from deploykit.bench.plan import resolve_model_dirs

    dirs, notes, _stored = resolve_model_dirs(paths)
    return dirs, notes


def edge_entries(manifest: ModelManifest, formats: Optional[list[str]],
                 kinds: tuple[str, ...] = ("tflite",)) -> tuple[list[ArtifactEntry], list[str]]:
    """The manifest's artifacts of `kinds` (or those named in `formats`), and notes on what was left out."""
    notes = []
    endings = tuple(ARTIFACT_KINDS[k] for k in kinds)
    tflite = [a for a in manifest.artifacts if a.path.endswith(endings)]
    if formats:
        have = {a.format: a for a in tflite}
        missing = [f for f in formats if f not in have]
        if missing:
            what = " or ".join("TFLite" if k == "tflite" else "ONNX" for k in kinds)
            other = [f for f in missing if any(a.format == f for a in manifest.artifacts)]
            notes.append(f"{manifest.model} has no {what} artifact {', '.join(missing)}"
                         + (f" ({', '.join(other)}: not loaded by this runtime)" if other else ""))
        chosen = [have[f] for f in formats if f in have]
    else:
        chosen = [a for a in tflite if a.status != "failed"]
        notes += [f"{manifest.model}/{a.format} left out: it failed export or validation" for a in tflite
                  if a.status == "failed"]
    return chosen, notes


def load_reference(model_dir: Path, manifest: ModelManifest, samples: int) -> dict:
    """{"x": canonical float32 inputs, "probs": framework probabilities, "y": labels or None, "source"}."""
    if not manifest.reference or not (Path(model_dir) / manifest.reference).is_file():
        raise ManifestError(f"{model_dir} has no reference inputs ({manifest.reference or 'reference.npz'}); "
                            "re-run train-export or export to write them")
    with np.load(Path(model_dir) / manifest.reference) as ref:
        x = ref["x"][:samples]
        probs = ref["probs"][:samples] if "probs" in ref.files else None
        y = ref["y"][:samples] if "y" in ref.files else None
    x = x.astype(np.float32) / np.float32(255.0) if x.dtype == np.uint8 else x.astype(np.float32)
    return {"x": x, "probs": probs, "y": y, "source": manifest.reference, "samples": int(len(x))}


def prepare_artifacts(model_dir: Path, manifest: ModelManifest, entries: list[ArtifactEntry],
                      reference: dict) -> list[PreparedArtifact]:
    if not entries:
        raise UsageError(f"{model_dir} has no edge artifact to check (formats: "
                         f"{', '.join(a.format for a in manifest.artifacts) or 'none'})")
    out = []
    for entry in entries:
        path = manifest.verify(model_dir, entry)  # the file is what the manifest says it is
        info = inspect_onnx(path) if path.name.endswith(".onnx") else inspect_tflite(path)
        out.append(PreparedArtifact(entry=entry, path=path, info=info, tensor=to_input(reference["x"], entry.input)))
    return out

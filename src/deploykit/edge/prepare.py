"""Pick a model's TFLite artifacts and prepare what the runner needs: the verified file, its op table,
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
from deploykit.edge.tflite_file import inspect_tflite

__all__ = ["tflite_entries", "load_reference", "prepare_artifacts", "resolve_models"]


def resolve_models(paths: list[str]) -> tuple[list[Path], list[str]]:
    """Model folders, folders of them, or BentoML tags → model folders (as `deploykit bench` reads them)."""
    from deploykit.bench.runtime import resolve_model_dirs

    dirs, notes, _stored = resolve_model_dirs(paths)
    return dirs, notes


def tflite_entries(manifest: ModelManifest, formats: Optional[list[str]]) -> tuple[list[ArtifactEntry], list[str]]:
    """The manifest's TFLite artifacts (or those named in `formats`), and notes on what was left out."""
    notes = []
    tflite = [a for a in manifest.artifacts if a.path.endswith(".tflite")]
    if formats:
        have = {a.format: a for a in tflite}
        missing = [f for f in formats if f not in have]
        if missing:
            notes.append(f"{manifest.model} has no TFLite artifact {', '.join(missing)}")
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
        raise UsageError(f"{model_dir} has no TFLite artifact to check (formats: "
                         f"{', '.join(a.format for a in manifest.artifacts) or 'none'})")
    out = []
    for entry in entries:
        path = manifest.verify(model_dir, entry)  # the file is what the manifest says it is
        out.append(PreparedArtifact(entry=entry, path=path, info=inspect_tflite(path),
                                    tensor=to_input(reference["x"], entry.input)))
    return out

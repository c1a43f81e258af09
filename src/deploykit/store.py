"""The BentoML model store: each trained model's folder (artifacts + manifest) saved under a tag,
so `bentoml models list` shows it and `deploykit serve TAG` can load it."""

from __future__ import annotations

import shutil
from pathlib import Path

from deploykit.errors import ManifestError, MissingDependency
from deploykit.fileperm import publish
from deploykit.manifest import ModelManifest

__all__ = ["save_to_bentoml", "resolve_model_dir", "bentoml_name"]


def _bentoml():
    try:
        import bentoml
    except ImportError as exc:
        raise MissingDependency("bentoml", "serve") from exc
    return bentoml


def bentoml_name(dataset: str, model: str) -> str:
    return f"{dataset}-{model}"


def save_to_bentoml(model_dir: Path, manifest: ModelManifest, name: str) -> str:
    """Copy `model_dir` into a new store entry; the manifest (there and here) records the tag."""
    bentoml = _bentoml()
    passed = [a.format for a in manifest.artifacts if a.status == "passed"]
    with bentoml.models.create(
        name,
        labels={"framework": manifest.framework, "architecture": manifest.architecture,
                "dataset": manifest.dataset.name if manifest.dataset else "user"},
        # BentoML metadata takes no None: a user's model (no training record) has no accuracy entry.
        metadata={"deploykit_version": manifest.deploykit_version, "formats_passed": passed,
                  **({"accuracy": manifest.training.accuracy} if manifest.training else {})},
    ) as stored:
        manifest.bentoml_tag = str(stored.tag)
        manifest.write(model_dir)
        shutil.copytree(model_dir, stored.path, dirs_exist_ok=True)
    # The store's own files (model.yaml) and folders are made private; a server reads them too.
    publish(bentoml.models.get(manifest.bentoml_tag).path)
    return manifest.bentoml_tag


def resolve_model_dir(ref: str | Path) -> Path:
    """A model folder path, or a BentoML tag (`name[:version]`) → the folder holding manifest.json."""
    path = Path(ref)
    if path.exists():
        if not (path / "manifest.json").is_file():
            raise ManifestError(f"{path} has no manifest.json (expected a folder written by deploykit train-export)")
        return path
    if "/" in str(ref) or str(ref).endswith(".json"):
        raise ManifestError(f"no such model folder: {ref}")
    bentoml = _bentoml()
    try:
        stored = bentoml.models.get(str(ref))
    except bentoml.exceptions.NotFound as exc:
        raise ManifestError(f"{ref!r} is neither a model folder nor a tag in the BentoML model store") from exc
    return Path(stored.path)

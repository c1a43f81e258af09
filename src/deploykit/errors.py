"""One error family. The CLI prints any DeployKitError as one line and exits 2."""

from __future__ import annotations

__all__ = [
    "DeployKitError",
    "UsageError",
    "DataError",
    "ExportError",
    "ValidationFailed",
    "ValidationCrashed",
    "RuntimeUnavailable",
    "ArtifactLoadError",
    "InferenceError",
    "ManifestError",
    "ChecksumMismatch",
    "MissingDependency",
    "unknown_name",
]


class DeployKitError(Exception):
    """Base for every error deploykit raises on purpose."""


class UsageError(DeployKitError):
    """Bad arguments: unknown names, unwritable paths."""


class DataError(DeployKitError):
    """A dataset file is missing, corrupt or inconsistent."""


class ExportError(DeployKitError):
    """A format could not be produced."""


class ValidationFailed(DeployKitError):
    """An artifact loaded but did not meet its parity or accuracy bar."""


class RuntimeUnavailable(DeployKitError):
    """A runtime or device is not present on this machine (the message says why)."""


class ArtifactLoadError(DeployKitError):
    """A runtime could not load an artifact (damaged, truncated, unsupported): one line, cause kept."""


class InferenceError(DeployKitError):
    """A loaded artifact's runtime failed while predicting."""


class ManifestError(DeployKitError):
    """The manifest is missing, unreadable or does not describe what was asked for."""


class ChecksumMismatch(ManifestError):
    """An artifact on disk does not match the sha256 the manifest recorded."""


class MissingDependency(DeployKitError):
    """An optional package is not installed; the message carries the install command."""

    def __init__(self, package: str, extra: str):
        super().__init__(f"{package} is not installed: pip install 'deploykit[{extra}]'")
        self.package = package
        self.extra = extra


def unknown_name(kind: str, name: str, known) -> UsageError:
    """The error for a name that is not in a registry, listing the ones that are."""
    return UsageError(f"unknown {kind} {name!r}; known: {', '.join(sorted(known))}")


class ValidationCrashed(ValidationFailed):
    """The runtime died (signal, abort) or hung while loading or running an artifact."""

"""What a server checks before it serves: the model resolves, an artifact is chosen, its sha256
matches the manifest and its runtime is installed. Run by `deploykit serve` before it starts
BentoML, by the service's on-deployment hook (once, before any worker: a failure stops
`bentoml serve` with an error), and again by each worker before it loads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from deploykit.errors import UsageError
from deploykit.manifest import ArtifactEntry, ModelManifest
from deploykit.serving.config import ServeSettings
from deploykit.serving.selection import Choice, choose_format

__all__ = ["Prepared", "prepare", "is_store_tag", "check_port_free"]


@dataclass(frozen=True)
class Prepared:
    model_dir: Path
    manifest: ModelManifest
    entry: ArtifactEntry
    choice: Choice
    artifact: Path

    def describe(self) -> str:
        return (f"serving {self.manifest.model} as {self.choice.format} via {self.choice.runtime} "
                f"({self.choice.reason}); artifact {self.artifact} sha256 verified")


def is_store_tag(ref: str) -> bool:
    """A BentoML model-store tag rather than a folder (the rule of deploykit.store.resolve_model_dir)."""
    return not Path(ref).exists() and "/" not in ref and not ref.endswith(".json")


def prepare(settings: ServeSettings) -> Prepared:
    from deploykit.store import resolve_model_dir

    if not settings.model:
        raise UsageError("no model to serve: give a model folder or BentoML tag "
                         "(deploykit serve MODEL, DEPLOYKIT_MODEL=..., or bentoml serve ... --arg model=...)")
    model_dir = resolve_model_dir(settings.model)
    manifest = ModelManifest.read(model_dir)
    choice = choose_format(model_dir, manifest, settings.format, device=settings.device,
                           bench_results=settings.bench_results)
    entry = manifest.artifact(choice.format)
    artifact = manifest.verify(model_dir, entry)  # ChecksumMismatch: refuse a file that does not match
    return Prepared(Path(model_dir), manifest, entry, choice, artifact)


def check_port_free(host: str, port: int) -> None:
    """BentoML binds the port deep inside its arbiter and a port in use ends in a 55–61-line traceback;
    binding it here first (as BentoML will: SO_REUSEADDR) turns that into one line (UsageError)."""
    import errno
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise UsageError(f"port {port} on {host} is already in use: stop what listens there or pass --port") from None
            raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror}") from None

"""`deploykit deploy k8s MODEL_DIR|TAG --out DIR` (registered in deploykit.cli)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

__all__ = ["deploy_app"]

deploy_app = typer.Typer(help="Write what a cluster needs to serve a model (no cluster is contacted).",
                         no_args_is_help=True)


@deploy_app.command("k8s")
def k8s_cmd(
    model: str = typer.Argument(..., help="Model folder (with manifest.json) or BentoML model tag."),
    out: Path = typer.Option(Path("k8s"), "--out", "-o", help="Folder for deployment.yaml, service.yaml, horizontalpodautoscaler.yaml."),
    image: Optional[str] = typer.Option(None, "--image", help="Serving image with this model (default NAME:latest; see docs/serving.md)."),
    name: Optional[str] = typer.Option(None, "--name", help="Kubernetes name (default deploykit-MODEL)."),
    namespace: Optional[str] = typer.Option(None, "--namespace", "-n", help="Namespace written into the manifests."),
    format: str = typer.Option("auto", "--format", "-f", help="Artifact format, or 'auto' as `deploykit serve` chooses."),
    replicas: int = typer.Option(2, "--replicas", min=1, help="Pods (and the autoscaler's minimum)."),
    workers: int = typer.Option(1, "--workers", min=1, help="Server processes per pod."),
    cpu: str = typer.Option("1", "--cpu", help="CPU request per pod (Kubernetes quantity)."),
    memory_mb: Optional[int] = typer.Option(None, "--memory-mb", min=64, help="Memory request per pod in MiB (default: from the measured worker RSS and the artifact size)."),
    hpa: bool = typer.Option(True, "--hpa/--no-hpa", help="Write a HorizontalPodAutoscaler on CPU utilisation."),
    max_replicas: int = typer.Option(10, "--max-replicas", min=1, help="Autoscaler maximum."),
):
    """Kubernetes manifests: Deployment (probes on /readyz and /livez), Service, HorizontalPodAutoscaler."""
    from deploykit.console import console
    from deploykit.deploy.k8s import K8sOptions, k8s_manifests, write_manifests
    from deploykit.store import resolve_model_dir

    opts = K8sOptions(image=image, name=name, namespace=namespace, replicas=replicas, workers=workers, cpu=cpu,
                      memory_mb=memory_mb, hpa=hpa, max_replicas=max_replicas, format=format)
    manifests, summary = k8s_manifests(resolve_model_dir(model), opts)
    for path in write_manifests(manifests, out):
        console.print(f"wrote {path}", markup=False, soft_wrap=True)
    console.print(f"deploykit: {summary}", markup=False, soft_wrap=True)

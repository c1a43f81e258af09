"""Kubernetes manifests for serving one model: a Deployment, a Service, optionally a HorizontalPodAutoscaler.

The pod runs the serving image (the repository's Dockerfile with the model baked in, or a bento from
`bentoml containerize`) with the format chosen now (the same check `deploykit serve` does) pinned in
DEPLOYKIT_FORMAT, so every replica serves the artifact that was verified here. Probes use the service's
health routes: readiness on /readyz (503 until the model is loaded and warm), liveness on /livez, a
startup probe so slow loads are not killed. Prometheus scrapes /metrics (annotations).

Memory request per pod: per worker WORKER_RSS_MB (measured) + twice the artifact's size (the runtime's
copy of the weights and its arenas), plus ARBITER_RSS_MB for BentoML's arbiter process; the limit is
twice the request. Pass --memory-mb to use a figure measured on your own model instead.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from deploykit.errors import UsageError

__all__ = ["K8sOptions", "k8s_manifests", "write_manifests", "WORKER_RSS_MB", "ARBITER_RSS_MB"]

# RSS measured with psutil here (2026-12-02): `bentoml serve` of the ONNX MLP, after warm-up and 300
# requests: the worker 137 MB, the arbiter 103 MB (docs/serving.md, "Kubernetes"). Rounded up.
WORKER_RSS_MB = 140
ARBITER_RSS_MB = 105
PORT = 3000


@dataclass(frozen=True)
class K8sOptions:
    image: Optional[str] = None
    name: Optional[str] = None
    namespace: Optional[str] = None
    replicas: int = 2
    workers: int = 1
    cpu: str = "1"
    memory_mb: Optional[int] = None
    hpa: bool = True
    max_replicas: int = 10
    target_cpu_percent: int = 70
    format: str = "auto"


def _dns_name(text: str) -> str:
    """A DNS-1123 label (what Kubernetes requires of names)."""
    name = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:63].strip("-")
    if not name:
        raise UsageError(f"cannot make a Kubernetes name from {text!r}: pass --name")
    return name


def k8s_manifests(model_dir: Path, opts: K8sOptions) -> tuple[list[dict], str]:
    """(manifests, one line on what is served) for the model in `model_dir`; checks it as `serve` does."""
    from deploykit.serving.config import ServeSettings
    from deploykit.serving.startup import prepare

    prepared = prepare(ServeSettings(model=str(model_dir), format=opts.format))
    m, entry = prepared.manifest, prepared.entry
    name = _dns_name(opts.name or f"deploykit-{m.model}")
    image = opts.image or f"{name}:latest"
    if opts.memory_mb is not None:
        memory, basis = opts.memory_mb, "given with --memory-mb"
    else:
        memory = opts.workers * (WORKER_RSS_MB + math.ceil(2 * entry.bytes / 2**20)) + ARBITER_RSS_MB
        basis = (f"{opts.workers} worker(s) × ({WORKER_RSS_MB} MB measured worker RSS + 2 × {entry.bytes} B "
                 f"artifact) + {ARBITER_RSS_MB} MB measured arbiter RSS")
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "deploykit",
              "deploykit.io/model": _dns_name(m.model), "deploykit.io/format": _dns_name(prepared.choice.format)}
    meta = {"name": name, "labels": labels, **({"namespace": opts.namespace} if opts.namespace else {})}
    probe = lambda path, **kw: {"httpGet": {"path": path, "port": "http"}, "timeoutSeconds": 2, **kw}  # noqa: E731
    container = {
        "name": "serve", "image": image, "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "env": [{"name": "DEPLOYKIT_FORMAT", "value": prepared.choice.format},
                {"name": "DEPLOYKIT_WORKERS", "value": str(opts.workers)}],
        "resources": {"requests": {"cpu": opts.cpu, "memory": f"{memory}Mi"},
                      "limits": {"memory": f"{2 * memory}Mi"}},
        "startupProbe": probe("/livez", periodSeconds=2, failureThreshold=60),
        "readinessProbe": probe("/readyz", periodSeconds=5, failureThreshold=2),
        "livenessProbe": probe("/livez", periodSeconds=10, failureThreshold=3),
        "securityContext": {"runAsNonRoot": True, "allowPrivilegeEscalation": False},
    }
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {**meta, "annotations": {"deploykit.io/memory-basis": basis,
                                             "deploykit.io/artifact": f"{entry.path} sha256 {entry.sha256}"}},
        "spec": {
            "replicas": opts.replicas,
            "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
            "template": {
                "metadata": {"labels": labels, "annotations": {
                    "prometheus.io/scrape": "true", "prometheus.io/port": str(PORT), "prometheus.io/path": "/metrics"}},
                "spec": {"containers": [container], "terminationGracePeriodSeconds": 30}},
        },
    }
    service = {
        "apiVersion": "v1", "kind": "Service", "metadata": meta,
        "spec": {"selector": {"app.kubernetes.io/name": name},
                 "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]},
    }
    out = [deployment, service]
    if opts.hpa:
        out.append({
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": meta,
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                     "minReplicas": opts.replicas, "maxReplicas": max(opts.max_replicas, opts.replicas),
                     "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                         "type": "Utilization", "averageUtilization": opts.target_cpu_percent}}}]},
        })
    return out, f"{m.model} as {prepared.choice.format} ({prepared.choice.reason}); image {image}; memory {memory} Mi"


def write_manifests(manifests: list[dict], out: Path) -> list[Path]:
    """One YAML file per object, named by kind (deployment.yaml, service.yaml, …)."""
    import yaml

    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create --out {out}: {exc.strerror}") from exc
    paths = []
    for doc in manifests:
        path = out / f"{doc['kind'].lower()}.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        paths.append(path)
    return paths

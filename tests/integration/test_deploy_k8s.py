"""`deploykit deploy k8s` writes manifests that pass the official Kubernetes 1.37 schemas (strict: no
unknown fields), validated offline with kubernetes-validate. No cluster exists here: they are validated,
not applied."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

kubernetes_validate = pytest.importorskip("kubernetes_validate")

K8S_VERSION = "1.37.0"


def _deploy(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deploykit", "deploy", "k8s", *map(str, args)], capture_output=True,
                          text=True, timeout=120)


def test_manifests_pass_the_kubernetes_schemas_and_probe_the_health_routes(mnist_models, tmp_path):
    proc = _deploy(mnist_models / "torch-mlp", "--out", tmp_path / "k8s", "--format", "onnx", "--workers", "2",
                   "--namespace", "ml", "--image", "registry.example/deploykit-torch-mlp:1")
    assert proc.returncode == 0, proc.stderr
    docs = {p.stem: yaml.safe_load(p.read_text()) for p in (tmp_path / "k8s").glob("*.yaml")}
    assert set(docs) == {"deployment", "service", "horizontalpodautoscaler"}
    for doc in docs.values():
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)  # raises ValidationError on any problem
    pod = docs["deployment"]["spec"]["template"]
    [container] = pod["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert {e["name"]: e["value"] for e in container["env"]} == {"DEPLOYKIT_FORMAT": "onnx", "DEPLOYKIT_WORKERS": "2"}
    assert container["resources"]["requests"]["memory"].endswith("Mi")
    assert pod["metadata"]["annotations"]["prometheus.io/path"] == "/metrics"
    assert docs["horizontalpodautoscaler"]["spec"]["scaleTargetRef"]["name"] == docs["deployment"]["metadata"]["name"]
    assert docs["service"]["spec"]["selector"] == docs["deployment"]["spec"]["selector"]["matchLabels"]
    assert all(d["metadata"]["namespace"] == "ml" for d in docs.values())


def test_the_validator_is_not_a_rubber_stamp(mnist_models, tmp_path):
    assert _deploy(mnist_models / "torch-mlp", "--out", tmp_path, "--no-hpa").returncode == 0
    assert not (tmp_path / "horizontalpodautoscaler.yaml").exists()
    doc = yaml.safe_load((tmp_path / "deployment.yaml").read_text())
    doc["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["port"] = {"bad": 1}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_a_bad_model_is_one_line_and_exit_2(tmp_path):
    proc = _deploy(tmp_path / "missing", "--out", tmp_path / "k8s")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "no such model folder" in proc.stderr
    assert not (tmp_path / "k8s").exists()

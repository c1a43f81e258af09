"""Deployment targets beyond one machine: `deploykit deploy k8s` writes Kubernetes manifests."""

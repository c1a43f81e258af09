"""Serving: a BentoML service for any exported artifact (`deploykit serve`, `bentoml serve`).

Heavy pieces (BentoML, the runtimes) are imported by the modules that need them, not here.
"""

__all__ = ["SERVICE_IMPORT", "REPO_SERVICE_IMPORT"]

SERVICE_IMPORT = "deploykit.serving.service:DeployKitService"
REPO_SERVICE_IMPORT = "serving.service:DeployKitService"  # from the repository root (bentofile.yaml)

"""Entry point for BentoML from the repository root: `bentoml serve serving.service:DeployKitService`
and `bentoml build -f serving/bentofile.yaml .`. The service lives in deploykit.serving.service."""

from deploykit.serving.service import DeployKitService

__all__ = ["DeployKitService"]

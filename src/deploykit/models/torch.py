"""The reference networks as torch nn.Modules (logits out; export wraps them with softmax)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["MLP", "CNN", "WithSoftmax", "AsIs", "for_export", "build"]


class MLP(nn.Module):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 256), nn.ReLU(), nn.Linear(256, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class CNN(nn.Module):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3), nn.ReLU(), nn.AvgPool2d(2),
            nn.Conv2d(32, 64, 3), nn.ReLU(), nn.AvgPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(64 * 5 * 5, 128), nn.ReLU(), nn.Linear(128, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class WithSoftmax(nn.Module):
    """What gets exported: probabilities, like the Keras models' softmax output."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(x), dim=1)


class AsIs(nn.Module):
    """A model that already returns probabilities, in the same one-module shape as WithSoftmax."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def for_export(model: nn.Module, output_kind: str) -> nn.Module:
    """What an exporter traces: softmax appended to logits, probabilities left as they are."""
    return (WithSoftmax if output_kind == "logits" else AsIs)(model)


def build(architecture: str, num_classes: int = 10, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return {"mlp": MLP, "cnn": CNN}[architecture](num_classes)

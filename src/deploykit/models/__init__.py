"""Reference architectures and their registry (the names the CLI and manifests use)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from deploykit.errors import unknown_name
from deploykit.manifest import InputSpec

__all__ = ["ModelSpec", "REFERENCE_MODELS", "get_model_spec", "resolve_models"]


@dataclass(frozen=True)
class ModelSpec:
    name: str
    framework: Literal["keras", "torch"]
    architecture: Literal["mlp", "cnn"]
    api: str  # how it is built: sequential | functional | subclass | nn.Module
    input: InputSpec
    description: str

    def build(self, num_classes: int = 10, seed: int = 0):
        """A fresh, untrained model (Keras 3 model or torch nn.Module returning logits)."""
        if self.framework == "keras":
            from deploykit.models import keras as km

            return km.build(self.api, self.architecture, num_classes, seed)
        from deploykit.models import torch as tm

        return tm.build(self.architecture, num_classes, seed)


def _spec(shape, layout) -> InputSpec:
    return InputSpec(name="input", shape=[None, *shape], layout=layout)


_MLP = "Flatten → Dense 256 relu → Dense 10 softmax"
_CNN = "Conv 32 3×3 → avg-pool 2 → Conv 64 3×3 → avg-pool 2 → Dense 128 → Dense 10 softmax (LeNet-style)"
REFERENCE_MODELS: dict[str, ModelSpec] = {
    s.name: s
    for s in (
        ModelSpec("keras-sequential", "keras", "mlp", "sequential", _spec((28, 28), "NHW"), f"{_MLP}, keras.Sequential"),
        ModelSpec("keras-functional", "keras", "mlp", "functional", _spec((28, 28), "NHW"), f"{_MLP}, Keras functional API"),
        ModelSpec("keras-subclass", "keras", "mlp", "subclass", _spec((28, 28), "NHW"), f"{_MLP}, keras.Model subclass"),
        ModelSpec("keras-cnn", "keras", "cnn", "sequential", _spec((28, 28, 1), "NHWC"), f"{_CNN}, keras.Sequential"),
        ModelSpec("torch-mlp", "torch", "mlp", "nn.Module", _spec((28, 28), "NHW"), f"{_MLP}, torch nn.Module"),
        ModelSpec("torch-cnn", "torch", "cnn", "nn.Module", _spec((1, 28, 28), "NCHW"), f"{_CNN}, torch nn.Module"),
    )
}


def get_model_spec(name: str) -> ModelSpec:
    if name not in REFERENCE_MODELS:
        raise unknown_name("model", name, REFERENCE_MODELS)
    return REFERENCE_MODELS[name]


def resolve_models(names: str | list[str] | None) -> list[ModelSpec]:
    """`all`, None, a comma list or a list of names → specs, in registry order for `all`."""
    if names is None or names == "all" or names == ["all"]:
        return list(REFERENCE_MODELS.values())
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    return [get_model_spec(n) for n in names]

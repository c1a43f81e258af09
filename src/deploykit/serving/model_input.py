"""What the served model takes, read from its manifest's input spec: per-sample shape, layout, value range.

Every route hands the engine the same tensor: float32, N × the manifest's per-sample shape
(``input.shape[1:]``, e.g. 28×28 for the reference MLPs, 96×96×3 for a user's NHWC model, 20 values
for a tensor model), values in the range the manifest's normalisation maps pixels 0..255 onto
(``pixel × pixel_scale + pixel_offset``: [0, 1] by default). The runtimes map that onto each
artifact's own tensor (deploykit.runtimes.base.to_input).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Optional

import numpy as np

from deploykit.evaldata import target_geometry
from deploykit.manifest import InputSpec

__all__ = ["ServedInput", "MNIST_INPUT"]


@dataclass(frozen=True)
class ServedInput:
    name: str
    shape: tuple[int, ...]  # per sample, without the batch dimension
    layout: str
    low: float
    high: float
    pixel_scale: float
    pixel_offset: float

    @classmethod
    def from_spec(cls, spec: InputSpec) -> "ServedInput":
        inner = spec.shape[1:]
        if not inner or any(d is None for d in inner):
            from deploykit.errors import ManifestError

            raise ManifestError(f"input {spec.name} has shape {spec.shape}: serving needs fixed per-sample dimensions")
        ends = sorted((spec.pixel_offset, 255 * spec.pixel_scale + spec.pixel_offset))
        return cls(spec.name, tuple(int(d) for d in inner), spec.layout, float(ends[0]), float(ends[1]),
                   spec.pixel_scale, spec.pixel_offset)

    # Computed once per server, not per request (cached_property writes the instance __dict__, which a
    # frozen dataclass allows): every request's validation reads them.
    @cached_property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @cached_property
    def geometry(self) -> Optional[tuple[int, int, int]]:
        """(H, W, C) of an image input; None for a flat (NC) tensor input."""
        return target_geometry(list(self.shape), self.layout)

    @cached_property
    def accepted(self) -> tuple[tuple[int, ...], ...]:
        """Per-sample shapes a JSON body may use: the model's own, H×W for a one-channel image, flat."""
        shapes = [self.shape]
        g = self.geometry
        if g is not None and g[2] == 1 and (g[0], g[1]) not in shapes:
            shapes.append((g[0], g[1]))
        if (self.size,) not in shapes:
            shapes.append((self.size,))
        return tuple(shapes)

    def describe_shapes(self) -> str:
        return " or ".join("×".join(map(str, s)) for s in self.accepted)

    def from_hwc(self, img: np.ndarray) -> np.ndarray:
        """One decoded H×W×C image → the per-sample shape (channels first for NCHW)."""
        if self.layout == "NCHW":
            img = img.transpose(2, 0, 1)
        return img.reshape(self.shape)

    def from_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """Pixels 0..255 (e.g. a UINT8 tensor) → model input, by the manifest's normalisation."""
        return (pixels.astype(np.float32) * np.float32(self.pixel_scale) + np.float32(self.pixel_offset))

    def warmup_batch(self, n: int = 1, seed: int = 0) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return (self.low + (self.high - self.low) * rng.random((n, *self.shape), dtype=np.float32)).astype(np.float32)


# The reference MNIST models' input (and the default where no manifest is at hand, e.g. unit tests).
MNIST_INPUT = ServedInput.from_spec(InputSpec(name="input", shape=[None, 28, 28], layout="NHW"))

"""Request bodies for the load test: real test digits when a model folder is given, else seeded
synthetic ones; encoded the way deploykit's serving endpoint reads them.

Body shapes (deploykit.serving.decode is the reader; tests/unit/test_load_payload.py feeds these
bodies through it):
- ``json``  → ``POST URL`` with ``{"inputs": [image]}``: one 28×28 image as 28 rows of 28 numbers in
  [0, 1] (pixel / 255, white digit on black). The serving endpoint's route is ``/predict``.
- ``image`` → ``POST URL`` with multipart/form-data holding one PNG file in the field ``image``
  (8-bit grayscale, white digit on black). The serving endpoint's route is ``/predict_image``.

Bodies are encoded once, before the run, so the load generator spends its time sending, not encoding.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from deploykit.errors import ManifestError, UsageError

__all__ = ["Payloads", "json_body", "image_body", "load_digits", "synthetic_digits", "build_payloads"]

IMAGE_FIELD = "image"
_SIDE = 28


@dataclass(frozen=True)
class Payloads:
    content_type: str
    bodies: list[bytes]
    source: str  # where the digits came from, for the results' notes


def json_body(image: np.ndarray) -> bytes:
    """One uint8 28×28 image → ``{"inputs": [[[row of 28 numbers in [0, 1]] × 28]]}``."""
    scaled = np.round(np.asarray(image, dtype=np.float64) / 255.0, 4)
    return json.dumps({"inputs": [scaled.tolist()]}, separators=(",", ":")).encode()


def image_body(image: np.ndarray, boundary: str) -> tuple[bytes, str]:
    """One uint8 28×28 image → (multipart/form-data body with one PNG in field 'image', its content type)."""
    from PIL import Image
    from urllib3.filepost import encode_multipart_formdata  # a well-kept encoder, not a hand-rolled one

    png = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8), mode="L").save(png, format="PNG")
    return encode_multipart_formdata({IMAGE_FIELD: ("digit.png", png.getvalue(), "image/png")}, boundary=boundary)


def synthetic_digits(n: int, seed: int) -> np.ndarray:
    """n seeded digit-like uint8 images (a bright stroke loop on black): right shape and range, no labels."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:_SIDE, 0:_SIDE].astype(np.float64)
    out = np.zeros((n, _SIDE, _SIDE), np.uint8)
    for i in range(n):
        cy, cx = rng.uniform(10, 18, 2)
        ry, rx = rng.uniform(4, 9), rng.uniform(2, 6)
        ring = np.abs(np.hypot((yy - cy) / ry, (xx - cx) / rx) - 1.0)
        out[i] = np.clip(255 * (1.0 - ring / 0.35), 0, 255).astype(np.uint8)
    return out


def load_digits(model_dir: Optional[str], n: int, seed: int) -> tuple[np.ndarray, str]:
    """Up to n real test digits from the model folder's reference inputs, else n synthetic ones."""
    if model_dir is None:
        return synthetic_digits(n, seed), f"{n} synthetic digits (seed {seed}); pass --model-dir for real test digits"
    from deploykit.manifest import REFERENCE_NAME, ModelManifest
    from deploykit.store import resolve_model_dir

    folder = resolve_model_dir(model_dir)
    manifest = ModelManifest.read(folder)
    path = Path(folder) / (manifest.reference or REFERENCE_NAME)
    try:
        with np.load(path) as ref:
            x = ref["x"]
    except (OSError, KeyError, ValueError) as exc:
        raise ManifestError(f"cannot read reference digits from {path}: {exc}") from exc
    if x.ndim != 3 or x.shape[1:] != (_SIDE, _SIDE) or len(x) == 0:
        raise UsageError(f"{path}: expected N×28×28 digits, found shape {x.shape}")
    if x.dtype != np.uint8:  # canonical float input in [0, 1]
        x = np.clip(np.round(x.astype(np.float64) * 255), 0, 255).astype(np.uint8)
    return x[:n], f"{min(n, len(x))} test digits from {path}"


def build_payloads(payload: str, model_dir: Optional[str], n: int, seed: int) -> Payloads:
    digits, source = load_digits(model_dir, n, seed)
    if payload == "json":
        return Payloads("application/json", [json_body(d) for d in digits], source)
    if payload == "image":
        boundary = f"deploykit{seed:08x}load"  # fixed, so every body shares one Content-Type header
        bodies = [image_body(d, boundary) for d in digits]
        return Payloads(bodies[0][1], [b for b, _ in bodies], source)
    raise UsageError(f"--payload {payload!r}: expected json or image")

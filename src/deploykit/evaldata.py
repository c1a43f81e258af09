"""A user's own evaluation data, and fitting images (theirs or a reference dataset's) to a model's input.

`--eval-data PATH` is either
- a folder with one sub-folder per class holding images (.png .jpg .jpeg .bmp .gif .webp), the
  torchvision ImageFolder / Keras `image_dataset_from_directory` layout: class names are the sorted
  sub-folder names, label i is the i-th of them; or
- an `.npz` with `x` (N×H×W, N×H×W×C, or N×features; uint8 pixels 0..255, or floats already in
  [0, 1]) and `y` (N integer labels), optionally `classes` (names, one per label).

`fit_images` maps images onto the model's per-sample input shape (`InputSpec.shape[1:]` and
layout): channels converted (1 → 3 by repetition, 3 → 1 by ITU-R 601 luma), the spatial size
changed only when asked (`pad`: zero padding, centred; `resize`: bilinear), and values scaled to
[0, 1] (pixel/255). The returned text says what was done; it goes into the manifest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from deploykit.errors import DataError, UsageError

__all__ = ["EvalData", "load_eval_data", "fit_images", "target_geometry", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


@dataclass
class EvalData:
    images: list[np.ndarray] = field(repr=False)  # float32 in [0, 1]: H×W×C images, or flat feature rows
    y: np.ndarray = field(repr=False)
    classes: list[str]
    location: str

    def __len__(self) -> int:
        return len(self.images)


def load_eval_data(path: Path) -> EvalData:
    path = Path(path)
    if path.is_dir():
        return _from_folder(path)
    if path.is_file() and path.suffix == ".npz":
        return _from_npz(path)
    raise UsageError(f"--eval-data {path}: expected a folder of class sub-folders or an .npz file with x and y")


def _from_folder(root: Path) -> EvalData:
    from PIL import Image, UnidentifiedImageError

    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise UsageError(f"--eval-data {root}: no class sub-folders (expected ROOT/<class>/<image>.png)")
    images, labels = [], []
    for label, name in enumerate(classes):
        for file in sorted(f for f in (root / name).iterdir() if f.suffix.lower() in IMAGE_SUFFIXES):
            try:
                with Image.open(file) as img:
                    img = img.convert("RGB" if img.mode not in ("1", "L", "LA", "I", "I;16", "F") else "L")
                    arr = np.asarray(img, np.float32) / 255
            except (OSError, UnidentifiedImageError) as exc:
                raise DataError(f"--eval-data: cannot read image {file}: {exc}") from exc
            images.append(arr[..., None] if arr.ndim == 2 else arr)
            labels.append(label)
    if not images:
        raise UsageError(f"--eval-data {root}: no images ({', '.join(IMAGE_SUFFIXES)}) in {len(classes)} class folders")
    return EvalData(images, np.asarray(labels, np.int64), classes, str(root))


def _from_npz(path: Path) -> EvalData:
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "x" not in npz or "y" not in npz:
                raise UsageError(f"--eval-data {path}: needs arrays x and y (has {', '.join(npz.files)})")
            x, y = npz["x"], npz["y"]
            names = [str(c) for c in npz["classes"]] if "classes" in npz else None
    except (OSError, ValueError) as exc:
        raise DataError(f"--eval-data {path}: unreadable .npz: {exc}") from exc
    if len(x) != len(y) or len(x) == 0 or y.ndim != 1 or y.dtype.kind not in "iu":
        raise DataError(f"--eval-data {path}: x {x.shape} and y {y.shape} must be N samples and N integer labels")
    if x.dtype == np.uint8:
        x = x.astype(np.float32) / 255
    elif x.dtype.kind == "f" and not (x.min() >= 0 and x.max() <= 1):
        raise DataError(f"--eval-data {path}: float x must lie in [0, 1] (pixel/255); got {x.min():.3g}..{x.max():.3g}")
    x = x.astype(np.float32)
    if x.ndim == 3:
        x = x[..., None]
    n_classes = int(y.max()) + 1
    classes = names if names is not None else [str(i) for i in range(n_classes)]
    if len(classes) < n_classes:
        raise DataError(f"--eval-data {path}: {len(classes)} class names for labels up to {n_classes - 1}")
    return EvalData(list(x), y.astype(np.int64), classes, str(path))


def target_geometry(inner: list[int], layout: str) -> Optional[tuple[int, int, int]]:
    """(H, W, C) of an image input, or None for a flat (NC) input."""
    if layout == "NHW":
        return inner[0], inner[1], 1
    if layout == "NHWC":
        return inner[0], inner[1], inner[2]
    if layout == "NCHW":
        return inner[1], inner[2], inner[0]
    return None


def _channels(img: np.ndarray, c: int) -> np.ndarray:
    if img.shape[-1] == c:
        return img
    if c == 3 and img.shape[-1] == 1:
        return np.repeat(img, 3, axis=-1)
    if c == 1 and img.shape[-1] == 3:
        return (img @ _LUMA)[..., None]
    raise UsageError(f"cannot convert {img.shape[-1]}-channel images to {c} channels")


def _pad(img: np.ndarray, h: int, w: int) -> np.ndarray:
    top, left = (h - img.shape[0]) // 2, (w - img.shape[1]) // 2
    out = np.zeros((h, w, img.shape[2]), np.float32)
    out[top : top + img.shape[0], left : left + img.shape[1]] = img
    return out


def _resize(img: np.ndarray, h: int, w: int) -> np.ndarray:
    from PIL import Image

    planes = [np.asarray(Image.fromarray(img[..., k]).resize((w, h), Image.Resampling.BILINEAR))
              for k in range(img.shape[2])]
    return np.clip(np.stack(planes, axis=-1), 0, 1).astype(np.float32)


def fit_images(images, inner: list[int], layout: str, *, pad: bool = False, resize: bool = False,
               channels: Optional[int] = None, what: str = "images") -> tuple[np.ndarray, Optional[str]]:
    """Images (H×W×C floats in [0,1]; or flat rows) → float32 N×inner, and the transform done (None: none)."""
    if pad and resize:
        raise UsageError("--pad and --resize exclude each other: choose one")
    geometry = target_geometry(list(inner), layout)
    first = np.asarray(images[0])
    if geometry is None:  # flat input: the samples must already hold that many values
        per = int(np.prod(inner))
        if any(int(np.prod(np.shape(i))) != per for i in images):
            raise UsageError(f"{what} of {int(np.prod(first.shape))} values per sample do not fit the model's "
                             f"flat input of {per}")
        return np.stack([np.asarray(i, np.float32).reshape(inner) for i in images]), None
    h, w, c = geometry
    if channels is not None and channels != c:
        raise UsageError(f"--channels {channels}: the model's input {inner} ({layout}) takes {c} channel(s)")
    if first.ndim != 3:
        raise UsageError(f"{what} of shape {first.shape} are not images; the model takes {layout} {inner}")
    done, out = set(), []
    for img in images:
        src_c = img.shape[-1]
        img = _channels(img, c)
        if src_c != c:
            done.add(f"{src_c} → {c} channel(s) ({'repeated' if c == 3 else 'luma'})")
        if img.shape[:2] != (h, w):
            size = f"{img.shape[0]}×{img.shape[1]} → {h}×{w}"
            if pad:
                if img.shape[0] > h or img.shape[1] > w:
                    raise UsageError(f"--pad: {what} of {img.shape[0]}×{img.shape[1]} are larger than the model's "
                                     f"{h}×{w}; use --resize")
                img = _pad(img, h, w)
                done.add(f"{size} by zero padding (centred)")
            elif resize:
                img = _resize(img, h, w)
                done.add(f"{size} by bilinear resize")
            else:
                raise UsageError(f"{what} are {img.shape[0]}×{img.shape[1]}, the model takes {h}×{w}: "
                                 "pass --pad (zero padding) or --resize (bilinear)")
        out.append(img)
    x = np.stack(out).astype(np.float32)
    if layout == "NCHW":
        x = x.transpose(0, 3, 1, 2)
    return x.reshape(len(x), *inner), ("; ".join(sorted(done)) or None)

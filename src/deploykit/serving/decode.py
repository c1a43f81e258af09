"""Request bodies → the model's input tensor (float32, N × the manifest's per-sample shape), or a BadRequest.

JSON: ``{"inputs": [sample, ...]}`` where a sample has the model's per-sample shape (from its manifest,
deploykit.serving.model_input): for the reference MNIST models 28 rows of 28 numbers, or one flat list
of 784 numbers; for a 96×96×3 model 96 rows of 96 triples (or 27,648 numbers). Values must lie in the
range the manifest's normalisation gives pixels 0..255 ([0, 1]: pixel / 255, by default). Values
outside it are *rejected*, not clipped: they almost always mean the client sent raw 0-255 pixels, and
clipping would turn that mistake into confident wrong answers.

Images (PNG or JPEG, any size, any colour mode) are converted the way the training data looks. For a
one-channel model (MNIST digits): EXIF orientation applied, transparency composited over white,
grayscale, polarity normalised to a light digit on a dark background, padded to a square with the
background, resized to the model's H×W, scaled to [0, 1]. Polarity (``invert``): ``auto`` inverts
when the image's border is light (mean of the outermost ring of pixels above 0.5), i.e. a dark digit
on light paper; ``always`` / ``never`` force it. For a three-channel model: RGB, transparency over
white, centre-cropped to the model's aspect ratio and resized to H×W (the usual classifier
preprocessing); ``invert=always`` inverts, ``auto`` leaves colour images as they are.
"""

from __future__ import annotations

import functools
import io
from typing import Annotated, Literal, Optional, Union

import msgspec
import numpy as np

from deploykit.serving.errors import BadRequest
from deploykit.serving.model_input import MNIST_INPUT, ServedInput

__all__ = [
    "IMAGE_SIDE",
    "Invert",
    "decode_json_batch",
    "decode_image",
    "image_to_canonical",
    "border_is_light",
    "check_batch_size",
    "check_samples",
    "decode_body",
    "sample_type",
    "range_message",
]

IMAGE_SIDE = 28  # the reference models' side (MNIST_INPUT)
Invert = Literal["auto", "always", "never"]


@functools.lru_cache(maxsize=16)
def sample_type(served: ServedInput, depth: Optional[int] = None):
    """The msgspec type of one sample (nested lists up to `depth` levels, numbers in the served range).

    msgspec validates types and ranges in C while it parses (3-4x faster than json.loads alone here),
    and its errors name the exact place: "Expected `float` <= 1.0 - at `$.inputs[0][5]`". It allows one
    list type per union, so each level is "a number or a list" and the shape is checked after parsing.
    """
    value = Annotated[float, msgspec.Meta(ge=served.low, le=served.high)]
    depth = depth or max(len(s) for s in served.accepted)
    elem = value
    for _ in range(depth - 1):
        elem = Union[value, list[elem]]
    return list[elem]


@functools.lru_cache(maxsize=16)
def _decoder(served: ServedInput) -> msgspec.json.Decoder:
    body = msgspec.defstruct("PredictBody", [("inputs", list[sample_type(served)])], forbid_unknown_fields=True)
    return msgspec.json.Decoder(body)


def range_message(served: ServedInput, message: str) -> str:
    """msgspec's range error, saying what the range means."""
    hint = " (send pixel/255)" if (served.low, served.high) == (0.0, 1.0) else ""
    return f"values must be in [{served.low:g}, {served.high:g}]{hint}: {message}"


def check_batch_size(n: int, max_images: int) -> None:
    if n == 0:
        raise BadRequest(422, "empty_batch", "no images: send at least one image")
    if n > max_images:
        raise BadRequest(413, "batch_too_large", f"{n} images in one request; the limit is {max_images}")


def decode_json_batch(body: bytes, max_images: int, served: ServedInput = MNIST_INPUT) -> np.ndarray:
    """JSON body → float32 N × served.shape. Raises BadRequest (400/413/422) naming the problem."""
    if not body:
        raise BadRequest(400, "invalid_json", 'empty body: send {"inputs": [image, ...]}')
    parsed = decode_body(_decoder(served), body, served, 422, 'send {"inputs": [image, ...]}')
    # No NaN/infinity check needed: JSON has no NaN or Infinity literals (msgspec rejects them as
    # malformed), and numbers that overflow (1e999) fail the range check above.
    return check_samples(parsed.inputs, max_images, served)


def decode_body(decoder: msgspec.json.Decoder, body: bytes, served: ServedInput, invalid_status: int, hint: str):
    """msgspec decoding with its errors as BadRequest: malformed JSON 400, the wrong structure
    `invalid_status` (values out of range say the range, a missing field says `hint`)."""
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        message = str(exc)
        if f"<= {float(served.high)!r}" in message or f">= {float(served.low)!r}" in message:
            message = range_message(served, message)
        elif message.startswith("Object missing required field"):
            message = f"{message}: {hint}"
        raise BadRequest(invalid_status, "invalid_input", message) from None
    except msgspec.DecodeError as exc:
        # NaN/Infinity are not JSON: they land here as malformed JSON, with the byte position.
        raise BadRequest(400, "invalid_json", f"{exc}") from None


def check_samples(samples: list, max_images: int, served: ServedInput) -> np.ndarray:
    """Parsed samples (nested lists) → float32 N × served.shape, or 413/422 naming the problem."""
    check_batch_size(len(samples), max_images)
    try:
        x = np.asarray(samples, dtype=np.float32)
    except ValueError:
        x = None  # ragged: samples or rows of different lengths, or rows mixed with single numbers
    if x is None or x.shape[1:] not in served.accepted:
        raise BadRequest(422, "invalid_shape", _shape_problem(samples, served))
    return x.reshape(len(samples), *served.shape)


def _shape_problem(samples: list, served: ServedInput) -> str:
    """Name the first sample whose shape is wrong (only on the error path, so plain Python is fine)."""
    noun = "image" if served.geometry is not None else "input"
    want = f"each {noun} must be {served.describe_shapes()} numbers"

    def depth(v) -> int:
        return 1 + depth(v[0]) if isinstance(v, list) and v else int(isinstance(v, list))

    def mismatch(value: list, dims: tuple[int, ...], where: str) -> Optional[str]:
        nested = [isinstance(v, list) for v in value]
        if any(nested) and not all(nested):
            return f"{where} mixes rows and single numbers"
        if len(value) != dims[0]:
            return f"{where} has {len(value)} {'rows' if len(dims) > 1 else 'values'}"
        if len(dims) > 1:
            for r, row in enumerate(value):
                problem = mismatch(row, dims[1:], f"{where} row {r}")
                if problem:
                    return problem
        return None

    for i, sample in enumerate(samples):
        levels = depth(sample)
        dims = next((s for s in served.accepted if len(s) == levels), None)
        problem = (f"{noun} {i} is nested {levels} deep" if dims is None
                   else mismatch(sample, dims, f"{noun} {i}"))
        if problem:
            return f"{want}; {problem}"
    return f"{want}; the {noun}s mix shapes: send them all in one shape"


# -- images ----------------------------------------------------------------------------------------
_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg"}
# Images with a longer side of 2 × this or more are first shrunk by an integer factor (box average)
# to a longer side of at least this, so that padding to a square and the float copies stay small
# (a 16000×1000 image padded as float32 was 1 GB); smaller images are processed exactly as before.
WORK_SIDE = 256


def decode_image(data: bytes, *, max_pixels: int, invert: Invert = "auto",
                 served: ServedInput = MNIST_INPUT) -> np.ndarray:
    """PNG/JPEG bytes → float32 sample of served.shape (28×28 by default), values in [0, 1] mapped to
    the served range. Raises BadRequest (413/415/422)."""
    from PIL import Image, UnidentifiedImageError

    geometry = served.geometry
    if geometry is None:
        raise BadRequest(415, "not_an_image_model", f"the model takes a tensor of {served.size} values, not an "
                                                    "image: send JSON to /predict or /v2/models/…/infer")
    if not data:
        raise BadRequest(422, "corrupt_image", "empty image file")
    # Pillow signals a malformed file with many exception types (OSError, ValueError, SyntaxError,
    # struct.error, IndexError, EOFError, …, depending on the decoder and where the bytes go wrong).
    # At this boundary every one of them means the same thing, a bad upload: a 4xx, not a 500.
    try:
        img = Image.open(io.BytesIO(data))  # reads the header only
    except UnidentifiedImageError:
        raise BadRequest(415, "unsupported_image", "not a PNG or JPEG image") from None
    except Image.DecompressionBombError as exc:
        raise BadRequest(413, "image_too_large", str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - see above
        raise BadRequest(422, "corrupt_image", f"unreadable image: {exc}") from None
    if img.format not in _FORMATS:
        raise BadRequest(415, "unsupported_image", f"{img.format} images are not supported; send PNG or JPEG")
    w, h = img.size
    if w * h > max_pixels:  # checked before decoding: a small file can declare a huge canvas
        raise BadRequest(413, "image_too_large", f"image is {w}x{h} pixels; the limit is {max_pixels} pixels")
    work = _work_side(geometry)
    try:
        if img.format == "JPEG" and max(w, h) >= 2 * work:
            img.draft(img.mode, (work, work))  # the decoder scales by 1/2..1/8: less to decode
        img.load()
        hwc = image_to_canonical(img, invert=invert, size=geometry[:2], channels=geometry[2])
    except Exception as exc:  # noqa: BLE001 - see above
        raise BadRequest(422, "corrupt_image", f"unreadable {img.format} image: {exc}") from None
    unit = (served.pixel_scale, served.pixel_offset) == (1 / 255, 0.0)  # exact: no round trip through pixels
    sample = hwc if unit else served.from_pixels(hwc * 255.0)
    return served.from_hwc(sample if sample.ndim == 3 else sample[..., None])


def _work_side(geometry: tuple[int, int, int]) -> int:
    return max(WORK_SIDE, 2 * max(geometry[0], geometry[1]))


def image_to_canonical(img, *, invert: Invert = "auto", size: tuple[int, int] = (IMAGE_SIDE, IMAGE_SIDE),
                       channels: int = 1) -> np.ndarray:
    """A decoded PIL image → float32 in [0, 1]: H×W (one channel: light digit on dark background) or H×W×3."""
    from PIL import Image, ImageOps

    img = ImageOps.exif_transpose(img)
    factor = max(img.size) // _work_side((*size, channels))
    if factor >= 2:
        if img.mode in ("P", "1"):
            img = img.convert("RGBA" if "transparency" in img.info else "L")
        elif img.mode.startswith("I;16"):
            img = img.convert("I")
        img = img.reduce(factor)
    if channels == 3:
        return _rgb(img, invert, size)
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit grayscale: scale by its range, not clip
        gray = np.asarray(img, dtype=np.float32) / 65535.0
    else:
        gray = np.asarray(_over_white(img).convert("L"), dtype=np.float32) / 255.0
    gray = np.clip(gray, 0.0, 1.0)
    if invert == "always" or (invert == "auto" and border_is_light(gray)):
        gray = 1.0 - gray
    h, w = gray.shape
    if (h, w) == tuple(size):
        return gray.astype(np.float32, copy=False)
    side = max(h, w)
    if side != min(h, w):  # pad to a square with the (now dark) background so the digit keeps its shape
        square = np.zeros((side, side), np.float32)
        top, left = (side - h) // 2, (side - w) // 2
        square[top : top + h, left : left + w] = gray
        gray = square
    small = Image.fromarray(gray).resize((size[1], size[0]), Image.Resampling.LANCZOS)
    return np.clip(np.asarray(small, dtype=np.float32), 0.0, 1.0)


def _over_white(img):
    """Transparency composited over white (paper)."""
    from PIL import Image

    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return img


def _rgb(img, invert: Invert, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image, ImageOps

    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        img = Image.fromarray((np.asarray(img, dtype=np.float32) / 257.0).clip(0, 255).astype(np.uint8))
    img = _over_white(img).convert("RGB")
    if img.size != (size[1], size[0]):
        img = ImageOps.fit(img, (size[1], size[0]), Image.Resampling.BILINEAR)
    rgb = np.asarray(img, dtype=np.float32) / 255.0
    return 1.0 - rgb if invert == "always" else rgb


def border_is_light(gray: np.ndarray) -> bool:
    """True when the mean of the outermost ring of pixels is above 0.5: a light background."""
    if gray.shape[0] < 3 or gray.shape[1] < 3:
        return float(gray.mean()) > 0.5
    ring = np.concatenate([gray[0], gray[-1], gray[1:-1, 0], gray[1:-1, -1]])
    return float(ring.mean()) > 0.5

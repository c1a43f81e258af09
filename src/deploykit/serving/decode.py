"""Request bodies → canonical model input (float32, N×28×28, values in [0, 1]), or a BadRequest.

JSON: ``{"inputs": [image, ...]}`` where an image is 28 rows of 28 numbers or one flat list of 784
numbers, each in [0, 1] (pixel / 255, white digit on black, as the training data). Values outside
[0, 1] are *rejected*, not clipped: they almost always mean the client sent raw 0-255 pixels, and
clipping would turn that mistake into confident wrong answers.

Images (PNG or JPEG, any size, any colour mode) are converted the way the training data looks:
EXIF orientation applied, transparency composited over white, grayscale, polarity normalised to a
light digit on a dark background, padded to a square with the background, resized to 28×28, scaled
to [0, 1]. Polarity (``invert``): ``auto`` inverts when the image's border is light (mean of the
outermost ring of pixels above 0.5), i.e. a dark digit on light paper; ``always`` / ``never`` force it.
"""

from __future__ import annotations

import io
from typing import Annotated, Literal, Union

import msgspec
import numpy as np

from deploykit.serving.errors import BadRequest

__all__ = [
    "IMAGE_SIDE",
    "Invert",
    "decode_json_batch",
    "decode_image",
    "image_to_canonical",
    "border_is_light",
    "check_batch_size",
]

IMAGE_SIDE = 28
_PIXELS = IMAGE_SIDE * IMAGE_SIDE
Invert = Literal["auto", "always", "never"]

# msgspec validates types and ranges in C while it parses (3-4x faster than json.loads alone here),
# and its errors name the exact place: "Expected `float` <= 1.0 - at `$.inputs[0][5]`".
_Pixel = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]


class _PredictBody(msgspec.Struct, forbid_unknown_fields=True):
    # An image is a list of numbers (flat) or a list of rows; msgspec allows one list type per union,
    # so the row/pixel choice is made per element and the shape is checked after parsing.
    inputs: list[list[Union[_Pixel, list[_Pixel]]]]


_decoder = msgspec.json.Decoder(_PredictBody)


def check_batch_size(n: int, max_images: int) -> None:
    if n == 0:
        raise BadRequest(422, "empty_batch", "no images: send at least one image")
    if n > max_images:
        raise BadRequest(413, "batch_too_large", f"{n} images in one request; the limit is {max_images}")


def decode_json_batch(body: bytes, max_images: int) -> np.ndarray:
    """JSON body → float32 N×28×28. Raises BadRequest (400/413/422) naming the problem."""
    if not body:
        raise BadRequest(400, "invalid_json", 'empty body: send {"inputs": [image, ...]}')
    try:
        parsed = _decoder.decode(body)
    except msgspec.ValidationError as exc:
        message = str(exc)
        if "<= 1.0" in message or ">= 0.0" in message:
            message = f"pixel values must be in [0, 1] (send pixel/255): {message}"
        elif message.startswith("Object missing required field"):
            message = f'{message}: send {{"inputs": [image, ...]}}'
        raise BadRequest(422, "invalid_input", message) from None
    except msgspec.DecodeError as exc:
        # NaN/Infinity are not JSON: they land here as malformed JSON, with the byte position.
        raise BadRequest(400, "invalid_json", f"{exc}") from None
    images = parsed.inputs
    check_batch_size(len(images), max_images)
    try:
        x = np.asarray(images, dtype=np.float32)
    except ValueError:
        x = None  # ragged: images or rows of different lengths, or rows mixed with flat pixels
    if x is None or not (x.shape[1:] == (_PIXELS,) or x.shape[1:] == (IMAGE_SIDE, IMAGE_SIDE)):
        raise BadRequest(422, "invalid_shape", _shape_problem(images))
    # No NaN/infinity check needed: JSON has no NaN or Infinity literals (msgspec rejects them as
    # malformed), and numbers that overflow (1e999) fail the range check above.
    return x.reshape(len(images), IMAGE_SIDE, IMAGE_SIDE)


def _shape_problem(images: list) -> str:
    """Name the first image whose shape is wrong (only on the error path, so plain Python is fine)."""
    want = f"each image must be {IMAGE_SIDE} rows of {IMAGE_SIDE} numbers or {_PIXELS} numbers"
    for i, image in enumerate(images):
        nested = [isinstance(v, list) for v in image]
        if all(nested):
            if len(image) != IMAGE_SIDE:
                return f"{want}; image {i} has {len(image)} rows"
            for r, row in enumerate(image):
                if len(row) != IMAGE_SIDE:
                    return f"{want}; image {i} row {r} has {len(row)} values"
        elif any(nested):
            return f"{want}; image {i} mixes rows and single numbers"
        elif len(image) != _PIXELS:
            return f"{want}; image {i} has {len(image)} values"
    return want


# -- images ----------------------------------------------------------------------------------------
_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg"}
# Images with a longer side of 2 × this or more are first shrunk by an integer factor (box average)
# to a longer side of at least this, so that padding to a square and the float copies stay small
# (a 16000×1000 image padded as float32 was 1 GB); smaller images are processed exactly as before.
WORK_SIDE = 256


def decode_image(data: bytes, *, max_pixels: int, invert: Invert = "auto") -> np.ndarray:
    """PNG/JPEG bytes → float32 28×28 in [0, 1]. Raises BadRequest (413/415/422)."""
    from PIL import Image, UnidentifiedImageError

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
    try:
        if img.format == "JPEG" and max(w, h) >= 2 * WORK_SIDE:
            img.draft(img.mode, (WORK_SIDE, WORK_SIDE))  # the decoder scales by 1/2..1/8: less to decode
        img.load()
        return image_to_canonical(img, invert=invert)
    except Exception as exc:  # noqa: BLE001 - see above
        raise BadRequest(422, "corrupt_image", f"unreadable {img.format} image: {exc}") from None


def image_to_canonical(img, *, invert: Invert = "auto") -> np.ndarray:
    """A decoded PIL image → float32 28×28 in [0, 1], light digit on dark background."""
    from PIL import Image, ImageOps

    img = ImageOps.exif_transpose(img)
    factor = max(img.size) // WORK_SIDE
    if factor >= 2:
        if img.mode in ("P", "1"):
            img = img.convert("RGBA" if "transparency" in img.info else "L")
        elif img.mode.startswith("I;16"):
            img = img.convert("I")
        img = img.reduce(factor)
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit grayscale: scale by its range, not clip
        gray = np.asarray(img, dtype=np.float32) / 65535.0
    else:
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            rgba = img.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            img = Image.alpha_composite(background, rgba)
        gray = np.asarray(img.convert("L"), dtype=np.float32) / 255.0
    gray = np.clip(gray, 0.0, 1.0)
    if invert == "always" or (invert == "auto" and border_is_light(gray)):
        gray = 1.0 - gray
    h, w = gray.shape
    if (h, w) == (IMAGE_SIDE, IMAGE_SIDE):
        return gray.astype(np.float32, copy=False)
    side = max(h, w)
    if side != min(h, w):  # pad to a square with the (now dark) background so the digit keeps its shape
        square = np.zeros((side, side), np.float32)
        top, left = (side - h) // 2, (side - w) // 2
        square[top : top + h, left : left + w] = gray
        gray = square
    small = Image.fromarray(gray).resize((IMAGE_SIDE, IMAGE_SIDE), Image.Resampling.LANCZOS)
    return np.clip(np.asarray(small, dtype=np.float32), 0.0, 1.0)


def border_is_light(gray: np.ndarray) -> bool:
    """True when the mean of the outermost ring of pixels is above 0.5: a light background."""
    if gray.shape[0] < 3 or gray.shape[1] < 3:
        return float(gray.mean()) > 0.5
    ring = np.concatenate([gray[0], gray[-1], gray[1:-1, 0], gray[1:-1, -1]])
    return float(ring.mean()) > 0.5

"""Request decoding and validation of the prediction endpoints (pure: no server, no model)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from deploykit.serving.decode import border_is_light, decode_image, decode_json_batch
from deploykit.serving.errors import MAX_MESSAGE_CHARS, BadRequest, error_body

RNG = np.random.default_rng(0)


def _digit() -> np.ndarray:
    """A light stroke on a dark background, like an MNIST digit (uint8 28×28)."""
    img = np.zeros((28, 28), np.uint8)
    img[6:22, 12:16] = 255
    img[6:9, 8:16] = 200
    return img


def _body(images) -> bytes:
    return json.dumps({"inputs": images}).encode()


def _bad(body: bytes, max_images: int = 8) -> BadRequest:
    with pytest.raises(BadRequest) as info:
        decode_json_batch(body, max_images)
    return info.value


# -- JSON ---------------------------------------------------------------------------------------------
def test_nested_and_flat_images_decode_to_the_same_canonical_batch():
    x = RNG.random((3, 28, 28)).astype(np.float32)
    nested = decode_json_batch(_body(x.tolist()), 8)
    flat = decode_json_batch(_body(x.reshape(3, 784).tolist()), 8)
    assert nested.shape == flat.shape == (3, 28, 28) and nested.dtype == np.float32
    np.testing.assert_array_equal(nested, x)
    np.testing.assert_array_equal(flat, x)


def test_integers_zero_and_one_are_accepted():
    x = decode_json_batch(_body([[0] * 783 + [1]]), 8)
    assert x[0, 27, 27] == 1.0 and x.sum() == 1.0


@pytest.mark.parametrize("images, code, words", [
    ([[[0.0] * 28] * 27], "invalid_shape", "image 0 has 27 rows"),
    ([[0.0] * 783], "invalid_shape", "image 0 has 783 values"),
    ([[0.0] * 784, [0.0] * 785], "invalid_shape", "image 1 has 785 values"),
    ([[[0.0] * 28] * 27 + [[0.0] * 27]], "invalid_shape", "row 27 has 27 values"),
    ([[0.0] * 392 + [[0.0] * 392]], "invalid_shape", "mixes rows"),
    ([[0.5] * 783 + ["a"]], "invalid_input", "got `str`"),
    ([[0.5] * 783 + [True]], "invalid_input", "got `bool`"),
    ([[0.5] * 783 + [None]], "invalid_input", "got `null`"),
    ([[0.5] * 783 + [1.5]], "invalid_input", "[0, 1]"),
    ([[-0.1] + [0.5] * 783], "invalid_input", "[0, 1]"),
    ([[255.0] * 784], "invalid_input", "pixel/255"),
])
def test_bad_images_are_422_naming_the_problem(images, code, words):
    err = _bad(_body(images))
    assert (err.status, err.code) == (422, code)
    assert words in err.message


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_rejected_as_malformed_json(literal):
    err = _bad(('{"inputs": [[' + "0.1, " * 783 + literal + "]]}").encode())
    assert (err.status, err.code) == (400, "invalid_json")


def test_a_number_that_overflows_is_rejected():
    err = _bad(('{"inputs": [[' + "0.1, " * 783 + "1e999]]}").encode())
    assert err.status == 422 and "out of range" in err.message


def test_empty_batch_and_batch_over_the_limit():
    assert (_bad(_body([])).status, _bad(_body([])).code) == (422, "empty_batch")
    err = _bad(_body([[0.0] * 784] * 9), max_images=8)
    assert (err.status, err.code) == (413, "batch_too_large") and "9 images" in err.message and "8" in err.message


@pytest.mark.parametrize("body, status, code, words", [
    (b"", 400, "invalid_json", "empty body"),
    (b"{not json", 400, "invalid_json", "malformed"),
    (b"[1, 2]", 422, "invalid_input", "Expected `object`"),
    (b'{"images": []}', 422, "invalid_input", "images"),
    (b"{}", 422, "invalid_input", "inputs"),
    (b'{"inputs": 3}', 422, "invalid_input", "$.inputs"),
])
def test_bodies_that_are_not_the_schema(body, status, code, words):
    err = _bad(body)
    assert (err.status, err.code) == (status, code)
    assert words in err.message


def test_error_bodies_stay_small_whatever_the_message():
    body = error_body("invalid_input", "x" * 10_000)
    assert len(body) < 320
    assert json.loads(body)["error"]["message"].endswith("…")
    assert len(json.loads(body)["error"]["message"]) == MAX_MESSAGE_CHARS


# -- images -------------------------------------------------------------------------------------------
def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_a_28x28_grayscale_png_decodes_exactly_like_the_training_data():
    digit = _digit()
    x = decode_image(_encode(Image.fromarray(digit), "PNG"), max_pixels=10**6)
    np.testing.assert_array_equal(x, digit.astype(np.float32) / 255.0)


def test_dark_digit_on_light_paper_is_inverted_by_the_border_rule():
    digit = _digit()
    inverted = Image.fromarray(255 - digit)
    x = decode_image(_encode(inverted, "PNG"), max_pixels=10**6, invert="auto")
    np.testing.assert_allclose(x, digit / 255.0, atol=1e-6)
    kept = decode_image(_encode(inverted, "PNG"), max_pixels=10**6, invert="never")
    np.testing.assert_allclose(kept, (255 - digit) / 255.0, atol=1e-6)
    forced = decode_image(_encode(Image.fromarray(digit), "PNG"), max_pixels=10**6, invert="always")
    np.testing.assert_allclose(forced, 1 - digit / 255.0, atol=1e-6)


def test_a_large_colour_jpeg_becomes_28x28_in_range_with_the_digit_where_it_was():
    digit = _digit()
    big = Image.fromarray(digit).resize((280, 280), Image.Resampling.NEAREST)
    rgb = Image.merge("RGB", [big, big, big.point(lambda v: v // 2)])
    x = decode_image(_encode(rgb, "JPEG", quality=95), max_pixels=10**6)
    assert x.shape == (28, 28) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    assert x[digit > 0].mean() > 0.5 > x[digit == 0].mean()


def test_a_wide_image_is_padded_square_not_stretched():
    digit = _digit()
    wide = np.zeros((28, 84), np.uint8)
    wide[:, 28:56] = digit
    x = decode_image(_encode(Image.fromarray(wide), "PNG"), max_pixels=10**6)
    assert x.shape == (28, 28)
    assert x[:9].max() < 0.05 and x[19:].max() < 0.05  # top and bottom thirds are padding
    assert x[9:19].max() > 0.5


def test_transparent_background_is_composited_over_white_then_inverted():
    rgba = np.zeros((28, 28, 4), np.uint8)
    rgba[..., 3] = 0  # fully transparent paper
    rgba[_digit() > 0] = (0, 0, 0, 255)  # black ink
    x = decode_image(_encode(Image.fromarray(rgba, "RGBA"), "PNG"), max_pixels=10**6)
    assert x[_digit() > 0].min() > 0.99 and x[_digit() == 0].max() < 0.01


def test_16_bit_png_is_scaled_by_its_range():
    img16 = (_digit().astype(np.uint16) * 257)
    x = decode_image(_encode(Image.fromarray(img16), "PNG"), max_pixels=10**6)
    np.testing.assert_allclose(x, _digit() / 255.0, atol=1e-4)


@pytest.mark.parametrize("make, status, code", [
    (lambda: _encode(Image.fromarray(_digit()), "GIF"), 415, "unsupported_image"),
    (lambda: _encode(Image.fromarray(_digit()), "BMP"), 415, "unsupported_image"),
    (lambda: b"definitely not an image", 415, "unsupported_image"),
    (lambda: _encode(Image.fromarray(_digit()), "PNG")[:60], 422, "corrupt_image"),
    (lambda: _encode(Image.fromarray(_digit()), "JPEG")[:200], 422, "corrupt_image"),
    (lambda: b"", 422, "corrupt_image"),
])
def test_unsupported_and_corrupt_images(make, status, code):
    with pytest.raises(BadRequest) as info:
        decode_image(make(), max_pixels=10**6)
    assert (info.value.status, info.value.code) == (status, code)


def test_an_image_over_the_pixel_limit_is_refused_before_decoding():
    data = _encode(Image.new("L", (200, 100)), "PNG")
    with pytest.raises(BadRequest) as info:
        decode_image(data, max_pixels=10_000)
    assert (info.value.status, info.value.code) == (413, "image_too_large")
    assert "200x100" in info.value.message


def test_border_rule():
    assert not border_is_light(_digit() / 255.0)
    assert border_is_light(1 - _digit() / 255.0)
    assert border_is_light(np.ones((2, 2)))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_damaged_files_are_always_a_client_error(fmt):
    """Seeded mutations of a valid file: truncation, flipped bytes, garbage spliced in. Whatever Pillow
    raises inside, the answer is a BadRequest (4xx) or a valid 28×28 image, never another exception."""
    rng = np.random.default_rng(1)
    good = _encode(Image.fromarray(_digit()).resize((64, 64)), fmt)
    outcomes = set()
    for _ in range(300):
        data = bytearray(good)
        kind = rng.integers(3)
        if kind == 0:
            data = data[: rng.integers(1, len(data))]
        elif kind == 1:
            for i in rng.integers(0, len(data), rng.integers(1, 16)):
                data[i] = rng.integers(256)
        else:
            i = rng.integers(0, len(data))
            data[i:i] = rng.integers(0, 256, rng.integers(1, 64)).astype(np.uint8).tobytes()
        try:
            x = decode_image(bytes(data), max_pixels=10**6)
            assert x.shape == (28, 28) and 0 <= x.min() and x.max() <= 1
            outcomes.add("decoded")
        except BadRequest as exc:
            assert 400 <= exc.status < 500
            outcomes.add(exc.code)
    assert "corrupt_image" in outcomes or "unsupported_image" in outcomes


def test_a_huge_canvas_is_shrunk_before_padding_so_memory_stays_small():
    import tracemalloc

    buf = io.BytesIO()
    canvas = np.zeros((1000, 16000), np.uint8)
    canvas[:, 7000:9000] = 255  # a light band in the middle: 3.5 × 1.75 pixels at 28×28
    Image.fromarray(canvas).save(buf, format="PNG")
    tracemalloc.start()
    x = decode_image(buf.getvalue(), max_pixels=20_000_000)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # Padded to a float32 square first, this was 16000² × 4 bytes = 1 GB of numpy memory.
    assert peak < 20 << 20, f"{peak / 2**20:.0f} MiB"
    assert x.shape == (28, 28) and x[14, 14] > 0.5 and x[0, 0] == 0.0

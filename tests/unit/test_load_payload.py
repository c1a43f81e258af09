"""Load-test bodies are what deploykit's serving endpoint reads: fed through its own decoders."""

import asyncio
import json

import numpy as np
import pytest

from deploykit.loadtest.payload import build_payloads, json_body, load_digits, synthetic_digits
from deploykit.errors import ManifestError

decode = pytest.importorskip("deploykit.serving.decode")


def test_json_body_is_accepted_by_the_serving_decoder_and_round_trips():
    digits = synthetic_digits(3, seed=0)
    for d in digits:
        x = decode.decode_json_batch(json_body(d), max_images=64)
        assert x.shape == (1, 28, 28) and x.dtype == np.float32
        np.testing.assert_allclose(x[0], d / 255.0, atol=1e-4)
    assert set(json.loads(json_body(digits[0]))) == {"inputs"}


def test_image_body_is_a_multipart_png_the_serving_endpoint_parses():
    from starlette.datastructures import Headers, UploadFile
    from starlette.formparsers import MultiPartParser

    p = build_payloads("image", None, 2, seed=3)
    assert p.content_type.startswith("multipart/form-data; boundary=")

    async def files(body):
        async def stream():
            yield body

        form = await MultiPartParser(Headers({"content-type": p.content_type}), stream()).parse()
        return [(k, await v.read()) for k, v in form.multi_items() if isinstance(v, UploadFile)]

    for body, digit in zip(p.bodies, synthetic_digits(2, seed=3)):
        (field, png), = asyncio.run(files(body))
        assert field == "image"
        x = decode.decode_image(png, max_pixels=10_000, invert="never")
        np.testing.assert_allclose(x, digit / 255.0, atol=1e-6)  # PNG is lossless


def test_synthetic_digits_are_seeded_digit_like_images():
    a, b = synthetic_digits(8, seed=1), synthetic_digits(8, seed=1)
    assert a.shape == (8, 28, 28) and a.dtype == np.uint8 and np.array_equal(a, b)
    assert not np.array_equal(a, synthetic_digits(8, seed=2))
    assert (a[:, 0, :] == 0).all() and a.max() >= 200  # dark border, bright stroke: like MNIST


def test_real_digits_come_from_the_model_folders_reference(tmp_path):
    from deploykit.manifest import REFERENCE_NAME, InputSpec, ModelManifest

    x = (np.arange(5 * 28 * 28) % 256).astype(np.uint8).reshape(5, 28, 28)
    np.savez(tmp_path / REFERENCE_NAME, x=x, y=np.arange(5), probs=np.zeros((5, 10), np.float32))
    ModelManifest(model="m", framework="torch", architecture="mlp", reference=REFERENCE_NAME,
                  input=InputSpec(name="x", shape=[None, 28, 28], layout="NHW")).write(tmp_path)
    digits, source = load_digits(str(tmp_path), 3, seed=0)
    assert np.array_equal(digits, x[:3]) and "3 test digits" in source
    body = build_payloads("json", str(tmp_path), 2, seed=0).bodies[1]
    np.testing.assert_allclose(decode.decode_json_batch(body, 64)[0], x[1] / 255.0, atol=1e-4)


def test_a_folder_without_a_manifest_is_refused(tmp_path):
    with pytest.raises(ManifestError, match="manifest.json"):
        load_digits(str(tmp_path), 3, seed=0)

"""One shared suite over every registered format, and a guard that every format has a case here."""

import numpy as np
import pytest

from deploykit.export import EXPORTERS
from deploykit.manifest import ModelManifest
from deploykit.runtimes import load_artifact

# format → the reference models whose run must carry a passed artifact of it.
FORMAT_CASES = {
    "savedmodel": ["keras-sequential", "keras-functional", "keras-subclass", "keras-cnn"],
    "tflite-fp32": ["keras-sequential", "keras-functional", "keras-subclass", "keras-cnn", "torch-mlp", "torch-cnn"],
    "tflite-fp16": ["keras-sequential", "keras-cnn"],
    "tflite-dynamic": ["keras-sequential", "keras-cnn"],
    "tflite-int8": ["keras-sequential", "keras-cnn"],
    "tflite-qat": ["keras-cnn"],
    "onnx": ["keras-sequential", "keras-subclass", "keras-cnn", "torch-mlp", "torch-cnn"],
    "onnx-int8": ["keras-cnn", "torch-mlp", "torch-cnn"],
    "torchscript": ["torch-mlp", "torch-cnn"],
}


def test_every_registered_format_has_a_case():
    missing = sorted(set(EXPORTERS) - set(FORMAT_CASES))
    assert not missing, f"formats without a test case in FORMAT_CASES: {missing}"


@pytest.mark.parametrize("fmt", sorted(EXPORTERS))
def test_format(fmt, mnist_models):
    cls = EXPORTERS[fmt]
    x = np.random.default_rng(1).random((7, 28, 28), dtype=np.float32)
    for model in FORMAT_CASES[fmt]:
        model_dir = mnist_models / model
        manifest = ModelManifest.read(model_dir)
        entry = manifest.artifact(fmt)
        assert entry.status == "passed", (model, entry.error)
        assert entry.runtime == cls.runtime
        with load_artifact(model_dir, entry, manifest) as predictor:
            batch = predictor.predict(x)
            singles = np.concatenate([predictor.predict(x[i:i + 1]) for i in range(len(x))])
        assert batch.shape == (7, 10) and batch.dtype == np.float32
        assert np.isfinite(batch).all()
        # A dynamic batch gives the same answers as one sample at a time.
        np.testing.assert_allclose(batch, singles, atol=1e-5 if cls.precision != "int8" else 1 / 128)
        if cls.precision != "int8":
            np.testing.assert_allclose(batch.sum(1), 1, atol=1e-2)

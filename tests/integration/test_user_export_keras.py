"""The softmax rule is the same for Keras: a Keras model emitting logits gets a softmax, one ending in
softmax is taken as it is."""

import numpy as np
import pytest

from deploykit.errors import UsageError
from deploykit.outputs import softmax
from deploykit.runtimes import load_artifact
from deploykit.user_export import export_user_model, load_user_model


def _model(probs: bool):
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1), name="image")
    z = keras.layers.Dense(5)(keras.layers.Flatten()(inputs))
    z = keras.layers.Rescaling(6.0)(z)
    return keras.Model(inputs, keras.layers.Softmax()(z) if probs else z)


@pytest.mark.parametrize("probs", [True, False], ids=["ends-in-softmax", "logits"])
def test_keras_outputs_are_taken_as_the_model_gives_them(probs, tmp_path):
    model = _model(probs)
    path = tmp_path / "k.keras"
    model.save(path)
    manifest, model_dir = export_user_model(path, formats="onnx,tflite-fp32", out=tmp_path / "out")
    assert manifest.output_kind == ("probs" if probs else "logits")
    x = np.random.default_rng(0).random((9, 8, 8, 1), dtype=np.float32)
    raw = np.asarray(model(x))
    expected = raw if probs else softmax(raw)
    for entry in manifest.artifacts:
        assert entry.status == "passed", entry.error
        with load_artifact(model_dir, entry, manifest) as predictor:
            np.testing.assert_allclose(predictor.predict(x), expected, atol=1e-5)


def test_a_savedmodel_input_shape_that_does_not_fit_is_one_usage_error(tmp_path):
    model = _model(True)
    model.export(str(tmp_path / "sm"), format="tf_saved_model", verbose=False)
    with pytest.raises(UsageError, match=r"--input-shape 28,28,1 does not fit sm's input \['N', 8, 8, 1\]"):
        load_user_model(tmp_path / "sm", [28, 28, 1])


def test_the_cli_shows_no_tensorflow_start_up_lines(tmp_path):
    """TensorFlow 2.21 writes absl INFO lines (oneDNN notice, CUDA stub, cuInit) to fd 2 before any log
    setting applies, TF_CPP_MIN_LOG_LEVEL included: the CLI imports it muted, so a user error stays one line."""
    import subprocess
    import sys

    _model(True).export(str(tmp_path / "sm"), format="tf_saved_model", verbose=False)
    proc = subprocess.run([sys.executable, "-m", "deploykit", "export", str(tmp_path / "sm"), "--input-shape",
                           "28,28,1", "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.count("\n") == 1 and "does not fit" in proc.stderr, proc.stderr[-2000:]

"""What a .tflite's input layout is recorded as: onnx2tf moves an NCHW image's channel last."""

from pathlib import Path

import numpy as np

from deploykit.export.base import ExportContext
from deploykit.export.tflite import _layout
from deploykit.manifest import InputSpec


def _ctx(shape, layout):
    return ExportContext(model=None, framework="torch", model_name="m", architecture="cnn",
                         input=InputSpec(name="input", shape=shape, layout=layout), out_dir=Path("."),
                         calib_x=np.zeros((0, 28, 28), np.float32))


def test_channels_moved_last_is_recorded_as_nhwc():
    assert _layout([None, 28, 28, 1], _ctx([None, 1, 28, 28], "NCHW")) == "NHWC"
    assert _layout([None, 32, 32, 3], _ctx([None, 3, 32, 32], "NCHW")) == "NHWC"


def test_an_unchanged_input_keeps_the_models_layout():
    assert _layout([None, 3, 32, 32], _ctx([None, 3, 32, 32], "NCHW")) == "NCHW"  # kept NCHW
    assert _layout([None, 28, 28], _ctx([None, 28, 28], "NHW")) == "NHW"
    assert _layout([None, 28, 28, 1], _ctx([None, 28, 28, 1], "NHWC")) == "NHWC"

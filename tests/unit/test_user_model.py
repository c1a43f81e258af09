import zipfile

import pytest

from deploykit.errors import UsageError
from deploykit.user_model import _fitted_shape, check_source, infer_layout


def test_kinds_are_told_by_path_and_corrupt_files_caught_before_loading(tmp_path):
    (tmp_path / "sm").mkdir()
    (tmp_path / "sm" / "saved_model.pb").write_bytes(b"")
    assert check_source(tmp_path / "sm") == "keras"
    with zipfile.ZipFile(tmp_path / "ok.pt", "w") as z:
        z.writestr("data.pkl", b"")
    assert check_source(tmp_path / "ok.pt") == "torch"
    (tmp_path / "bad.keras").write_bytes(b"PK\x03\x04 truncated")
    (tmp_path / "bad.h5").write_bytes(b"not hdf5")
    (tmp_path / "m.onnx").write_bytes(b"")
    for name, message in (("bad.keras", "not a zip file"), ("bad.h5", "HDF5"), ("m.onnx", "unknown model type"),
                          ("missing.pt", "no model at")):
        with pytest.raises(UsageError, match=message):
            check_source(tmp_path / name)


def test_a_given_input_shape_must_agree_with_the_declared_one():
    assert _fitted_shape([None, None, 3], [96, 96, 3], "m") == [96, 96, 3]
    assert _fitted_shape([32, 32, 1], None, "m") == [32, 32, 1]
    with pytest.raises(UsageError, match=r"--input-shape 28,28,1 does not fit lenet's input \['N', 32, 32, 1\]"):
        _fitted_shape([32, 32, 1], [28, 28, 1], "lenet")
    with pytest.raises(UsageError, match="free dimensions"):
        _fitted_shape([None, None, 3], None, "m")


def test_layouts():
    assert [infer_layout(s) for s in ([784], [28, 28], [1, 28, 28], [32, 32, 3], [3, 96, 96])] == \
        ["NC", "NHW", "NCHW", "NHWC", "NCHW"]

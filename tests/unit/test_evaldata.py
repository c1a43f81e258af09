import numpy as np
import pytest
from PIL import Image

from deploykit.errors import DataError, UsageError
from deploykit.evaldata import fit_images, load_eval_data


def _imgs(n, h, w, c=1, seed=0):
    return list(np.random.default_rng(seed).random((n, h, w, c), dtype=np.float32))


def test_pad_centres_with_zeros_and_says_so():
    x, how = fit_images(_imgs(2, 28, 28), [32, 32, 1], "NHWC", pad=True)
    assert x.shape == (2, 32, 32, 1) and how == "28×28 → 32×32 by zero padding (centred)"
    assert x[:, :2].max() == 0 and x[:, 30:].max() == 0
    np.testing.assert_array_equal(x[0, 2:30, 2:30], _imgs(2, 28, 28)[0])


def test_resize_channels_and_nchw():
    x, how = fit_images(_imgs(3, 28, 28), [3, 14, 14], "NCHW", resize=True)
    assert x.shape == (3, 3, 14, 14)
    np.testing.assert_array_equal(x[:, 0], x[:, 2])  # 1 → 3 channels by repetition
    assert "bilinear" in how and "1 → 3" in how


def test_size_mismatch_without_a_transform_is_a_usage_error():
    with pytest.raises(UsageError, match="--pad .* or --resize"):
        fit_images(_imgs(1, 28, 28), [32, 32, 1], "NHWC")
    with pytest.raises(UsageError, match="larger"):
        fit_images(_imgs(1, 40, 40), [32, 32, 1], "NHWC", pad=True)
    with pytest.raises(UsageError, match="--channels 1"):
        fit_images(_imgs(1, 8, 8), [8, 8, 3], "NHWC", channels=1)


def test_flat_inputs_take_images_of_the_same_size():
    x, how = fit_images(_imgs(2, 28, 28), [784], "NC")
    assert x.shape == (2, 784) and how is None
    with pytest.raises(UsageError, match="flat input of 12"):
        fit_images(_imgs(2, 28, 28), [12], "NC")


def test_image_folder_classes_are_sorted_folder_names(tmp_path):
    for cls, value in (("zebra", 200), ("ant", 10)):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.fromarray(np.full((5, 6), value, np.uint8)).save(tmp_path / cls / f"{i}.png")
    (tmp_path / "ant" / "notes.txt").write_text("not an image")
    data = load_eval_data(tmp_path)
    assert data.classes == ["ant", "zebra"] and list(data.y) == [0, 0, 0, 1, 1, 1]
    assert data.images[0].shape == (5, 6, 1) and data.images[3].max() == pytest.approx(200 / 255)


def test_a_broken_image_and_a_bad_npz_are_data_errors(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="x.png"):
        load_eval_data(tmp_path)
    np.savez(tmp_path / "d.npz", x=np.zeros((3, 4), np.float32) + 2, y=np.array([0, 1, 1]))
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        load_eval_data(tmp_path / "d.npz")


def test_npz_with_uint8_pixels_and_class_names(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.full((4, 3, 3), 255, np.uint8), y=np.array([0, 1, 0, 1]),
             classes=np.array(["cat", "dog"]))
    data = load_eval_data(tmp_path / "d.npz")
    assert data.classes == ["cat", "dog"] and data.images[0].max() == 1.0 and data.images[0].shape == (3, 3, 1)

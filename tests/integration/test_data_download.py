"""deploykit.data downloads from a real HTTP server on a loopback port: checksum, cache,
404, timeout and mirror order. The server serves small IDX files this test makes."""

from __future__ import annotations

import gzip
import hashlib
import threading
import time
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from deploykit.data import DATASETS, FileSpec, load_dataset
from deploykit.errors import DataError

SLEEP_S = 2.0  # the "slow" mirror answers after this; the client gives up after 0.5 s


def idx_gz(arr: np.ndarray) -> bytes:
    arr = np.asarray(arr, dtype=np.uint8)
    header = (0x0800 + arr.ndim).to_bytes(4, "big")
    header += b"".join(d.to_bytes(4, "big") for d in arr.shape)
    return gzip.compress(header + arr.tobytes(), mtime=0)


class Mirror:
    """A ThreadingHTTPServer on 127.0.0.1: ``files`` maps URL path -> bytes, ``hits`` logs
    every request; paths under /slow/ sleep before answering."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.hits: list[str] = []
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                mirror.hits.append(self.path)
                if self.path.startswith("/slow/"):
                    time.sleep(SLEEP_S)
                body = mirror.files.get(self.path)
                try:
                    if body is None:
                        self.send_error(404)
                        return
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and left: expected in the timeout case

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        # A short poll interval keeps shutdown() (once per test) from costing 0.5 s.
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def mirror():
    m = Mirror()
    yield m
    m.close()


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KERAS_HOME", raising=False)
    monkeypatch.delenv("DEPLOYKIT_OFFLINE", raising=False)
    monkeypatch.setenv("DEPLOYKIT_CACHE", str(tmp_path / "unused-cache"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # a proxy set in CI must not see loopback
    monkeypatch.setenv("no_proxy", "127.0.0.1")


@pytest.fixture
def payload():
    """The 4 gz files (100 train / 20 test images) and a spec pinning their SHA-256."""
    rng = np.random.default_rng(0)
    arrays = {
        "train_images": rng.integers(0, 256, (100, 28, 28), dtype=np.uint8),
        "train_labels": np.arange(100) % 10,
        "test_images": rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
        "test_labels": np.arange(20) % 10,
    }
    base = DATASETS["mnist"]
    blobs = {base.files[k].filename: idx_gz(a) for k, a in arrays.items()}
    files = {k: FileSpec(base.files[k].filename,
                         hashlib.sha256(blobs[base.files[k].filename]).hexdigest())
             for k in arrays}
    # No fallback, no npm and no system folder: every outcome here comes from the mirror.
    spec = replace(base, files=files, system_dirs=(), fallback=None, npm_package=None)
    return spec, blobs, arrays


def serve(mirror: Mirror, prefix: str, blobs: dict[str, bytes]) -> str:
    for name, data in blobs.items():
        mirror.files[f"{prefix}/{name}"] = data
    return f"{mirror.url}{prefix}/"


def fetch(spec, cache: Path, mirrors, **kw):
    return load_dataset(spec.name, spec=spec, cache_dir=cache, mirrors=tuple(mirrors), **kw)


def test_download_verifies_caches_and_is_not_repeated(tmp_path, mirror, payload):
    spec, blobs, arrays = payload
    base = serve(mirror, "/mnist", blobs)
    said = []
    ds = fetch(spec, tmp_path / "cache", [base], progress=said.append)
    assert (ds.source, ds.location) == ("download", base)
    np.testing.assert_array_equal(ds.x_train, arrays["train_images"])
    np.testing.assert_array_equal(ds.y_test, arrays["test_labels"])
    assert ds.y_train.dtype == np.int64
    assert len(mirror.hits) == 4 and sum("downloading" in m for m in said) == 4
    cached = sorted(p.name for p in (tmp_path / "cache" / "mnist").iterdir())
    assert cached == sorted([*blobs, "ORIGIN"])  # the verified files and where they came from, no temp leftovers
    assert (tmp_path / "cache" / "mnist" / "ORIGIN").read_text().strip() == base
    for name, data in blobs.items():
        assert (tmp_path / "cache" / "mnist" / name).read_bytes() == data

    again = fetch(spec, tmp_path / "cache", [base])
    assert again.source == "cache" and len(mirror.hits) == 4  # no second HTTP request
    assert again.origin == base
    np.testing.assert_array_equal(again.x_test, ds.x_test)


def test_next_mirror_is_tried_after_a_404(tmp_path, mirror, payload):
    spec, blobs, _ = payload
    good = serve(mirror, "/good", blobs)
    ds = fetch(spec, tmp_path / "cache", [f"{mirror.url}/missing/", good])
    assert (ds.source, ds.location) == ("download", good)


def test_checksum_mismatch_names_the_file_and_caches_nothing(tmp_path, mirror, payload):
    spec, blobs, _ = payload
    name = spec.files["train_images"].filename
    tampered = dict(blobs)
    tampered[name] = idx_gz(np.zeros((100, 28, 28), np.uint8))  # valid IDX, wrong bytes
    base = serve(mirror, "/mnist", tampered)
    with pytest.raises(DataError) as exc:
        fetch(spec, tmp_path / "cache", [base])
    msg = str(exc.value)
    assert "\n" not in msg
    assert f"{base}{name}" in msg and "failed its SHA-256 check" in msg
    assert spec.files["train_images"].sha256 in msg
    folder = tmp_path / "cache" / "mnist"
    assert not folder.exists() or list(folder.iterdir()) == []  # nothing half-verified left


def test_404_names_the_url(tmp_path, mirror, payload):
    spec = payload[0]
    base = f"{mirror.url}/nothing-here/"
    with pytest.raises(DataError) as exc:
        fetch(spec, tmp_path / "cache", [base])
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith("no copy of mnist found")
    assert f"{base}{spec.files['train_images'].filename}: HTTP 404" in msg
    assert mirror.hits == ["/nothing-here/" + spec.files["train_images"].filename]  # stops early


def test_timeout_is_a_clear_error(tmp_path, mirror, payload):
    spec, blobs, _ = payload
    base = serve(mirror, "/slow", blobs)
    start = time.perf_counter()
    with pytest.raises(DataError) as exc:
        fetch(spec, tmp_path / "cache", [base], download_timeout=0.5)
    elapsed = time.perf_counter() - start
    msg = str(exc.value)
    assert f"{base}{spec.files['train_images'].filename}: timed out after 0.5 s" in msg
    assert elapsed < SLEEP_S, f"gave up after {elapsed:.1f} s, not 0.5 s"


def test_download_disabled_never_calls_the_mirror(tmp_path, mirror, payload):
    spec, blobs, _ = payload
    base = serve(mirror, "/mnist", blobs)
    with pytest.raises(DataError, match="download disabled"):
        fetch(spec, tmp_path / "cache", [base], allow_download=False)
    assert mirror.hits == []

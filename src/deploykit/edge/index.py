"""Which versions of a package the package index holds, asked of pip (`pip index versions`).

A runtime version that does not exist must be a usage error naming the versions that do, not a
silent static check; and advice must name only versions that install. pip answers for one platform
at a time (its own by default), so the caller names the platform it means: this host (where the
isolated environment is built, and where a user converts) or a device's. Answers are cached for a
day under the runtimes cache; an index that cannot be reached is reported as such, never guessed.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Optional

from deploykit.edge.envs import runtimes_cache_dir

__all__ = ["IndexAnswer", "index_versions", "device_platforms", "verify_version", "INDEX_TIMEOUT_S"]

INDEX_TIMEOUT_S = 60
CACHE_TTL_S = 24 * 3600
# pip matches one exact platform tag per --platform: name the manylinux levels a device's glibc
# takes (ai-edge-litert's aarch64 wheels are manylinux_2_27+, tflite-runtime's manylinux2014).
_GLIBC_LEVELS = ("2014", "_2_27", "_2_28", "_2_31", "_2_34")


@dataclass(frozen=True)
class IndexAnswer:
    package: str
    where: str  # "this host" or "aarch64, Python 3.7"
    versions: Optional[list[str]]  # newest first; [] = none for that platform; None = index not reached
    error: Optional[str] = None  # one line when versions is None

    def has(self, version: str) -> Optional[bool]:
        return None if self.versions is None else version in self.versions


def device_platforms(arch: str) -> tuple[str, ...]:
    """pip --platform tags for a Linux device of this architecture."""
    return tuple(f"manylinux{level}_{arch}" for level in _GLIBC_LEVELS) + (f"linux_{arch}",)


def _cache_path(package: str, arch: Optional[str], python: Optional[str]):
    host = f"host-py{sys.version_info.major}{sys.version_info.minor}"
    key = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{package}-{arch}-py{python}" if arch else f"{package}-{host}")
    return runtimes_cache_dir() / "index" / f"{key}.json"


def index_versions(package: str, *, arch: Optional[str] = None, python: Optional[str] = None) -> IndexAnswer:
    """Versions of `package` with a wheel for this host (no arch given) or for a Linux `arch` device
    running Python `python`."""
    where = f"{arch} Linux, Python {python}" if arch else "this host"
    path = _cache_path(package, arch, python)
    try:
        cached = json.loads(path.read_text())
        if time.time() - cached["at"] < CACHE_TTL_S:
            return IndexAnswer(package, where, cached["versions"])
    except (OSError, ValueError, KeyError):
        pass
    cmd = [sys.executable, "-m", "pip", "index", "versions", package, "--disable-pip-version-check",
           "--timeout", "10", "--retries", "1"]
    if arch:
        cmd += [a for tag in device_platforms(arch) for a in ("--platform", tag)]
        cmd += ["--python-version", python, "--only-binary=:all:"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=INDEX_TIMEOUT_S)
    except (subprocess.TimeoutExpired, OSError) as exc:
        return IndexAnswer(package, where, None, f"asking the package index about {package} failed: {exc}")
    m = re.search(r"Available versions: (.+)", proc.stdout)
    if proc.returncode == 0 and m:
        versions = [v.strip() for v in m.group(1).split(",") if v.strip()]
    elif "No matching distribution" in proc.stderr and "Could not fetch" not in proc.stderr:
        versions = []  # the index answered: nothing for that platform
    else:
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith("WARNING")]
        return IndexAnswer(package, where, None, f"the package index could not be reached to list {package} "
                           f"versions ({(lines[-1] if lines else 'pip gave no reason')[:200]})")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"at": time.time(), "versions": versions}))
    return IndexAnswer(package, where, versions)


def verify_version(package: str, version: str, *, arch: str = "aarch64", python: Optional[str] = None) -> list[str]:
    """Notes about `package==version`; a UsageError when the index holds it neither for this host nor
    for the device platform (arch, python): a typo must not read as a device-only version."""
    from deploykit.errors import UsageError

    python = python or f"{sys.version_info.major}.{sys.version_info.minor}"
    host = index_versions(package)
    if host.has(version):
        return []
    device = index_versions(package, arch=arch, python=python)
    if device.has(version):
        return [f"{package}=={version} exists on the package index for {device.where} only, not for this host"]
    answers = [a for a in (host, device) if a.versions is not None]
    if len(answers) < 2:
        return [next(a.error for a in (host, device) if a.versions is None)
                + f"; {package}=={version} is not verified to exist"]
    listed = "; ".join(f"for {a.where}: {', '.join(a.versions[:12]) or 'none'}" for a in answers)
    raise UsageError(f"{package}=={version} does not exist on the package index ({listed})")

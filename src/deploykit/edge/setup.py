"""`deploykit edge setup --target ssh://…`: make the device ready for the runner.

Raspberry Pi OS and Debian 12 mark their Python "externally managed" (PEP 668): `pip install numpy`
is refused there, so the runner's needs go into a venv of deploykit's own on the device,
``~/.deploykit/venv`` (`transport.DEVICE_VENV`), which `edge bench` then uses when --python is not given.
The venv is built beside its final place and renamed into it only when pip succeeded, so a failed
setup never leaves a half-built venv that bench would pick up.

Versions are the ones the device's Python can install: the package index is asked for the device's
architecture and Python (`deploykit.edge.index`), never this host's.
"""

from __future__ import annotations

import asyncio
import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from deploykit.edge.envs import RuntimeSpec, parse_runtime_spec
from deploykit.edge.index import index_versions
from deploykit.edge.session import run_session
from deploykit.edge.transport import DEVICE_VENV, EdgeConnectionError, SSHTransport, parse_ssh_target
from deploykit.errors import RuntimeUnavailable, UsageError

__all__ = ["SetupSettings", "SetupResult", "run_setup", "choose_packages"]

PIP_TIMEOUT_S = 1800.0  # a Pi on a slow link downloads numpy and a runtime
# What the device's Python is, and whether pip would be refused there (PEP 668's marker file).
_PROBE = ("import json, os, platform, sys, sysconfig; "
          "marker = os.path.join(sysconfig.get_path('stdlib'), 'EXTERNALLY-MANAGED'); "
          "print(json.dumps({'python': platform.python_version(), 'arch': platform.machine(), "
          "'executable': sys.executable, 'externally_managed': os.path.exists(marker), "
          "'in_venv': sys.prefix != sys.base_prefix}))")


@dataclass
class SetupSettings:
    target: str
    runtime: Optional[str] = None  # NAME==VERSION; default: the newest TFLite runtime the device's Python installs
    onnx: bool = False  # also onnxruntime (ONNX artifacts, PyTorch models)
    identity: Optional[Path] = None
    known_hosts: Optional[Path] = None
    trust_new_host: bool = False
    python: str = "python3"  # the device's Python the venv is made from


@dataclass
class SetupResult:
    where: str
    venv: str  # on the device
    python: dict  # the probe of the device's own Python
    packages: list[str]  # what was installed (pip specs)
    facts: dict  # the runner's facts, run from the new venv


def _newest(package: str, arch: str, python: str) -> Optional[str]:
    answer = index_versions(package, arch=arch, python=python)
    if answer.versions is None:
        raise RuntimeUnavailable(f"cannot choose a {package} version for {arch} Python {python}: {answer.error}")
    return answer.versions[0] if answer.versions else None


def choose_packages(settings: SetupSettings, arch: str, python: str) -> list[str]:
    """pip specs for the device: numpy, a TFLite runtime (and onnxruntime), versions its Python installs."""
    if settings.runtime:
        spec = parse_runtime_spec(settings.runtime)
        if spec.package not in ("tflite-runtime", "ai-edge-litert"):
            raise UsageError(f"--runtime {settings.runtime}: the device's TFLite runtime is expected (tflite-runtime or "
                             "ai-edge-litert); add --onnx for onnxruntime")
        answer = index_versions(spec.package, arch=arch, python=python)
        if answer.has(spec.version) is False:
            raise UsageError(f"{spec} has no wheel for {arch} Python {python} (versions there: "
                             f"{', '.join(answer.versions[:12]) or 'none'})")
    else:
        spec = None
        for package in ("tflite-runtime", "ai-edge-litert"):  # what Pi images run first; the newer one after
            version = _newest(package, arch, python)
            if version:
                spec = RuntimeSpec(package, version)
                break
        if spec is None:
            raise RuntimeUnavailable(f"no TFLite runtime has a wheel for {arch} Python {python}")
    packages = [str(spec), spec.numpy_requirement]
    if settings.onnx:
        version = _newest("onnxruntime", arch, python)
        if not version:
            raise RuntimeUnavailable(f"onnxruntime has no wheel for {arch} Python {python}")
        packages.append(f"onnxruntime=={version}")
    return packages


def _one_line(text: str) -> str:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip() and not ln.startswith("WARNING")]
    errors = [ln for ln in lines if ln.startswith("ERROR")]
    return (errors[0] if errors else lines[-1] if lines else "no error output")[:300]


async def _setup(settings: SetupSettings, note) -> SetupResult:
    target = parse_ssh_target(settings.target)
    transport = SSHTransport(target, identity=settings.identity, known_hosts=settings.known_hosts,
                             trust_new_host=settings.trust_new_host, python=settings.python, notify=note)
    await transport.start()
    try:
        probe = await transport.run(["-c", _PROBE], 120)
        if probe.returncode != 0:
            raise RuntimeUnavailable(f"{transport.where} has no working {settings.python} "
                                     f"({_one_line(probe.stderr)}); install python3 there or pass --python PATH")
        py = _last_json(probe.stdout, transport.where)
        major_minor = ".".join(py["python"].split(".")[:2])
        packages = choose_packages(settings, py["arch"], major_minor)
        if py["externally_managed"]:
            note(f"{settings.python} on {transport.where} is externally managed (PEP 668): installing into a venv")
        note(f"installing {' '.join(packages)} into ~/{DEVICE_VENV} on {transport.where} (Python {py['python']}, {py['arch']})")
        venv, tmp = f"$HOME/{DEVICE_VENV}", f"$HOME/{DEVICE_VENV}.tmp-$$"
        # The venv is made under a temporary name and renamed when pip succeeded; the old one goes only then.
        cmd = (f'set -e; mkdir -p "$HOME/.deploykit"; rm -rf "{tmp}"; '
               f'{settings.python} -m venv "{tmp}" || {{ echo "ERROR: {settings.python} -m venv failed: on Debian / '
               f'Raspberry Pi OS install python3-venv (sudo apt install python3-venv)" >&2; exit 1; }}; '
               f'"{tmp}/bin/python" -m pip install -q --disable-pip-version-check --no-input '
               + " ".join(shlex.quote(p) for p in packages)
               + f' || {{ rm -rf "{tmp}"; exit 1; }}; rm -rf "{venv}"; mv "{tmp}" "{venv}"; echo "{venv}"')
        # venvs keep absolute paths in their scripts, but bin/python (all the runner uses) works after a rename.
        done = await transport.shell(cmd, PIP_TIMEOUT_S)
        if done.returncode != 0:
            raise RuntimeUnavailable(f"setting up ~/{DEVICE_VENV} on {transport.where} failed: {_one_line(done.stderr)}")
        lines = done.stdout.strip().splitlines()
        if not lines:
            raise EdgeConnectionError(f"{transport.where}: the venv set-up printed nothing (a login shell eating output?)")
        venv_path = lines[-1]
    finally:
        await transport.close()
    # Prove it: the runner's facts, read with the new venv's Python (what bench will run).
    check = SSHTransport(target, identity=settings.identity, known_hosts=settings.known_hosts,
                         python=f"{venv_path}/bin/python", notify=note)
    kinds = ["tflite", "onnx"] if settings.onnx else ["tflite"]
    session = await run_session(check, [], mode="facts", kinds=kinds)
    return SetupResult(where=transport.where, venv=venv_path, python=py, packages=packages, facts=session.facts)


def _last_json(stdout: str, where: str) -> dict:
    """The probe's answer: its last line of output, as JSON."""
    lines = stdout.strip().splitlines()
    try:
        return json.loads(lines[-1]) if lines else json.loads("")
    except json.JSONDecodeError as exc:
        raise EdgeConnectionError(f"{where}: the device's Python answered the probe with no JSON: {exc}") from exc


def run_setup(settings: SetupSettings, reporter=None) -> SetupResult:
    note = reporter.note if reporter else (lambda msg: None)
    return asyncio.run(_setup(settings, note))

"""Where the runner runs: a temporary folder on this machine, or one on a device over SSH.

Both transports have the same small async interface (put files, run the runner, fetch its result,
clean up), so `edge check`, `edge bench --target local` and `edge bench --target ssh://…` share one
session (`deploykit.edge.session`).

SSH uses asyncssh (already deploykit's `edge` extra). Host keys are always verified against a
known_hosts file (default ~/.ssh/known_hosts). A host that is not in it is refused, with its key
fingerprint in the message; `--trust-new-host` records it (trust on first use) and prints the
fingerprint. A host whose key differs from the recorded one is refused whatever the flags say.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import shutil
import signal as signal_mod
import sys
import tempfile
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional
from urllib.parse import unquote, urlsplit

from deploykit.errors import DeployKitError, MissingDependency, UsageError

__all__ = ["EdgeConnectionError", "DeviceRunError", "RunResult", "Transport", "LocalTransport", "SSHTarget",
           "SSHTransport", "parse_ssh_target", "default_known_hosts", "DEVICE_VENV"]


class EdgeConnectionError(DeployKitError):
    """The device could not be reached, did not prove its identity, refused the login, or dropped the connection."""


class DeviceRunError(DeployKitError):
    """The runner did not complete on the device (killed, timed out, crashed)."""


@dataclass
class RunResult:
    returncode: Optional[int]
    signal: Optional[str]
    stdout: str
    stderr: str

    def last_line(self) -> str:
        lines = [ln.strip() for ln in (self.stderr or "").splitlines() if ln.strip()]
        return lines[-1] if lines else ""


class Transport(ABC):
    where: str  # for messages: "this machine", "pi@raspberrypi:22"

    async def start(self) -> None:
        """Connect and make the work folder."""

    @abstractmethod
    async def put(self, local: Path, name: str) -> None: ...

    @abstractmethod
    async def put_bytes(self, data: bytes, name: str) -> None: ...

    @abstractmethod
    async def get_bytes(self, name: str) -> bytes: ...

    @abstractmethod
    async def run(self, args: list[str], timeout: float) -> RunResult:
        """Run `PYTHON args…` in the work folder."""

    async def close(self) -> None:
        """Remove the work folder and disconnect (best effort after a failure)."""


def _signal_name(num: int) -> str:
    try:
        return signal_mod.Signals(num).name.removeprefix("SIG")
    except ValueError:
        return str(num)


class LocalTransport(Transport):
    """A temporary folder here; the runner runs under `python` (deploykit's own Python, or the
    python of an isolated runtime environment) with a clean PYTHONPATH, so it imports what a device
    would: its runtime and numpy, and no deploykit."""

    def __init__(self, python: Path | str = sys.executable):
        self.python = str(python)
        self.where = "this machine"
        self.dir: Optional[Path] = None

    async def start(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="deploykit-edge-"))

    async def put(self, local: Path, name: str) -> None:
        shutil.copyfile(local, self.dir / name)

    async def put_bytes(self, data: bytes, name: str) -> None:
        (self.dir / name).write_bytes(data)

    async def get_bytes(self, name: str) -> bytes:
        try:
            return (self.dir / name).read_bytes()
        except FileNotFoundError as exc:
            raise DeviceRunError(f"the runner wrote no {name}") from exc

    async def run(self, args: list[str], timeout: float) -> RunResult:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        proc = await asyncio.create_subprocess_exec(
            self.python, *args, cwd=self.dir, env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except asyncio.TimeoutError as exc:
            proc.kill()
            await proc.wait()
            raise DeviceRunError(f"the runner did not finish within {timeout:.0f} s on {self.where}") from exc
        except BaseException:  # Ctrl-C: do not leave the runner behind
            proc.kill()
            await proc.wait()
            raise
        rc = proc.returncode
        return RunResult(returncode=rc if rc >= 0 else None, signal=_signal_name(-rc) if rc < 0 else None,
                         stdout=out.decode(errors="replace"), stderr=err.decode(errors="replace"))

    async def close(self) -> None:
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)


# -- SSH ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SSHTarget:
    user: Optional[str]
    host: str
    port: int

    @property
    def where(self) -> str:
        return f"{self.user + '@' if self.user else ''}{self.host}:{self.port}"

    @property
    def known_hosts_name(self) -> str:
        """How OpenSSH writes this host in known_hosts."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"


def parse_ssh_target(text: str) -> SSHTarget:
    """'ssh://USER@HOST[:PORT]' → SSHTarget."""
    parts = urlsplit(text)
    if parts.scheme != "ssh" or not parts.hostname:
        raise UsageError(f"--target {text!r}: expected ssh://USER@HOST[:PORT] or local")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.password:
        raise UsageError(f"--target {text!r}: expected ssh://USER@HOST[:PORT] (no path, password or query)")
    try:
        port = parts.port or 22
    except ValueError as exc:
        raise UsageError(f"--target {text!r}: bad port") from exc
    return SSHTarget(user=unquote(parts.username) if parts.username else None, host=parts.hostname, port=port)


def default_known_hosts() -> Path:
    return Path.home() / ".ssh" / "known_hosts"


_PYTHON_RE = re.compile(r"[\w./~+-]+")
# Where `deploykit edge setup` makes the device's venv; without --python the runner runs there when it
# exists (else the device's python3).
DEVICE_VENV = ".deploykit/venv"  # under the login's $HOME
_DEFAULT_PYTHON = f'P="$HOME/{DEVICE_VENV}/bin/python"; [ -x "$P" ] || P=python3;'



def _asyncssh():
    try:
        import asyncssh
    except ImportError as exc:
        raise MissingDependency("asyncssh", "edge") from exc
    return asyncssh


class SSHTransport(Transport):
    def __init__(self, target: SSHTarget, *, identity: Optional[Path] = None, known_hosts: Optional[Path] = None,
                 trust_new_host: bool = False, python: Optional[str] = None, connect_timeout: float = 20.0,
                 notify: Callable[[str], None] = lambda msg: None):
        if python is not None and not _PYTHON_RE.fullmatch(python):
            raise UsageError(f"--python {python!r}: expected a command name or path")
        if identity is not None and not Path(identity).is_file():
            raise UsageError(f"--identity {identity}: no such key file")
        self.target = target
        self.identity = Path(identity) if identity else None
        self.known_hosts = Path(known_hosts) if known_hosts else default_known_hosts()
        self.trust_new_host = trust_new_host
        self.python = python
        self.connect_timeout = connect_timeout
        self.notify = notify
        self.where = target.where
        self.conn = None
        self.sftp = None
        self.dir: Optional[str] = None

    # connection and host keys
    def _known(self):
        asyncssh = _asyncssh()
        try:
            text = self.known_hosts.read_text()
        except FileNotFoundError:
            text = ""
        except OSError as exc:
            raise EdgeConnectionError(f"cannot read known_hosts {self.known_hosts}: {exc}") from exc
        try:
            return asyncssh.import_known_hosts(text)
        except (ValueError, asyncssh.KeyImportError) as exc:
            raise EdgeConnectionError(f"cannot parse known_hosts {self.known_hosts}: {exc}") from exc

    def _host_is_known(self, known) -> bool:
        trusted, trusted_ca, revoked, *_ = known.match(self.target.host, self.target.host, self.target.port)
        return bool(trusted or trusted_ca or revoked)

    def _options(self, known) -> dict:
        opts = dict(host=self.target.host, port=self.target.port, known_hosts=known,
                    connect_timeout=self.connect_timeout, keepalive_interval=5, keepalive_count_max=4)
        if self.target.user:
            opts["username"] = self.target.user
        if self.identity:
            opts.update(client_keys=[str(self.identity)], agent_path=None)
        return opts

    async def _server_key(self):
        asyncssh = _asyncssh()
        try:
            return await asyncio.wait_for(asyncssh.get_server_host_key(self.target.host, self.target.port),
                                          self.connect_timeout)
        except (OSError, asyncssh.Error, asyncio.TimeoutError) as exc:
            raise EdgeConnectionError(f"cannot reach {self.where}: {exc or type(exc).__name__}") from exc

    def _record(self, key) -> str:
        line = " ".join(key.export_public_key("openssh").decode().split()[:2])
        self.known_hosts.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        existing = self.known_hosts.read_text() if self.known_hosts.exists() else ""
        sep = "" if not existing or existing.endswith("\n") else "\n"
        with open(self.known_hosts, "a") as f:
            f.write(f"{sep}{self.target.known_hosts_name} {line}\n")
        os.chmod(self.known_hosts, 0o600)
        return line.split()[0]

    async def _connect(self):
        asyncssh = _asyncssh()
        known = self._known()
        try:
            return await asyncssh.connect(**self._options(known))
        except asyncssh.HostKeyNotVerifiable as exc:
            host = self.target.known_hosts_name
            if self._host_is_known(known):
                raise EdgeConnectionError(
                    f"host key of {self.where} does not match the one recorded in {self.known_hosts}: refusing "
                    f"to connect (another machine answers at that address, or the device was reinstalled; if "
                    f"you know it was, remove the old key with ssh-keygen -R '{host}' -f {self.known_hosts})"
                ) from exc
            key = await self._server_key()
            fingerprint = f"{key.get_algorithm()} {key.get_fingerprint('sha256')}"
            if not self.trust_new_host:
                raise EdgeConnectionError(
                    f"{self.where} is not in {self.known_hosts}; its host key is {fingerprint}. Check that "
                    f"fingerprint on the device (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub) and rerun with "
                    f"--trust-new-host to record it") from exc
            self._record(key)
            self.notify(f"trusted new host {host}: {fingerprint} (recorded in {self.known_hosts})")
            try:
                return await asyncssh.connect(**self._options(self._known()))
            except asyncssh.HostKeyNotVerifiable as exc2:  # the key changed between the two connections
                raise EdgeConnectionError(f"host key of {self.where} changed while connecting; refusing") from exc2
        except asyncssh.PermissionDenied as exc:
            who = self.target.user or "the default user"
            key = f"key {self.identity}" if self.identity else "your default keys / agent"
            raise EdgeConnectionError(
                f"login refused: {self.where} did not accept {who} with {key} (is the public key in that "
                f"user's ~/.ssh/authorized_keys on the device?)") from exc
        except (OSError, asyncssh.Error, asyncio.TimeoutError) as exc:
            raise EdgeConnectionError(f"cannot connect to {self.where}: {exc or type(exc).__name__}") from exc

    async def start(self) -> None:
        asyncssh = _asyncssh()
        self.conn = await self._connect()
        try:
            made = await self.conn.run('mktemp -d "${TMPDIR:-/tmp}/deploykit-edge.XXXXXX"', check=False, timeout=60)
            if made.exit_status != 0 or not (made.stdout or "").strip():
                raise EdgeConnectionError(f"cannot make a work folder on {self.where}: "
                                          f"{(made.stderr or '').strip()[:200] or 'mktemp failed'}")
            self.dir = made.stdout.strip().splitlines()[-1]
            self.sftp = await self.conn.start_sftp_client()
        except (OSError, asyncssh.Error) as exc:
            raise EdgeConnectionError(f"connection to {self.where} failed while setting up: {exc}") from exc

    def _path(self, name: str) -> str:
        return f"{self.dir}/{name}"

    def _lost(self, doing: str, exc: BaseException) -> EdgeConnectionError:
        return EdgeConnectionError(f"connection to {self.where} lost while {doing}: {exc or type(exc).__name__}")

    async def put(self, local: Path, name: str) -> None:
        asyncssh = _asyncssh()
        try:
            await self.sftp.put(str(local), self._path(name))
        except (OSError, asyncssh.Error) as exc:
            raise self._lost(f"copying {Path(local).name}", exc) from exc

    async def put_bytes(self, data: bytes, name: str) -> None:
        asyncssh = _asyncssh()
        try:
            async with self.sftp.open(self._path(name), "wb") as f:
                await f.write(data)
        except (OSError, asyncssh.Error) as exc:
            raise self._lost(f"copying {name}", exc) from exc

    async def get_bytes(self, name: str) -> bytes:
        asyncssh = _asyncssh()
        try:
            async with self.sftp.open(self._path(name), "rb") as f:
                return await f.read()
        except asyncssh.SFTPNoSuchFile as exc:
            raise DeviceRunError(f"the runner wrote no {name} on {self.where}") from exc
        except (OSError, asyncssh.Error) as exc:
            raise self._lost(f"fetching {name}", exc) from exc

    async def run(self, args: list[str], timeout: float) -> RunResult:
        # `python` is not quoted so that ~/venv/bin/python expands; it is checked against _PYTHON_RE.
        python = self.python or '"$P"'
        cmd = (f"{'' if self.python else _DEFAULT_PYTHON} cd {shlex.quote(self.dir)} && exec {python} "
               + " ".join(shlex.quote(a) for a in args))
        return await self.shell(cmd, timeout)

    async def shell(self, cmd: str, timeout: float) -> RunResult:
        """Run a shell command line on the device (the runner, or `edge setup`'s venv and pip)."""
        asyncssh = _asyncssh()
        try:
            done = await self.conn.run(cmd, check=False, timeout=timeout)
        except asyncssh.TimeoutError as exc:
            raise DeviceRunError(f"the runner did not finish within {timeout:.0f} s on {self.where}") from exc
        except (OSError, asyncssh.Error) as exc:
            raise self._lost("the runner was running", exc) from exc
        sig = done.exit_signal[0] if done.exit_signal else None
        if done.exit_status is None and sig is None:
            raise self._lost("the runner was running", ConnectionError("the session ended without an exit status"))
        return RunResult(returncode=done.exit_status if sig is None else None, signal=sig,
                         stdout=str(done.stdout or ""), stderr=str(done.stderr or ""))

    async def close(self) -> None:
        asyncssh = _asyncssh()
        if self.conn is None:
            return
        try:
            if self.sftp is not None:
                self.sftp.exit()
            if self.dir:
                await self.conn.run(f"rm -rf {shlex.quote(self.dir)}", check=False, timeout=30)
        except (OSError, asyncssh.Error):
            pass  # the connection is already gone: nothing more to clean from here
        finally:
            self.conn.close()
            try:
                await asyncio.wait_for(self.conn.wait_closed(), 10)
            except (asyncio.TimeoutError, OSError, asyncssh.Error):
                pass

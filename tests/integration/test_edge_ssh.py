"""`deploykit edge bench` over SSH against a real OpenSSH server on a loopback port.

The "device" is Debian's sshd started by the test with keys the test makes. When the tests run as
root (CI), the login is a throwaway local user with an empty home and /bin/sh, whose PATH (set in
authorized_keys) holds only a venv with numpy + tflite-runtime 2.14.0: no deploykit, nothing of the
host's environment. A second key logs in with a bare Python (no numpy, no runtime).

Built from Debian's /usr/bin/python3 (readable by that user; deploykit's own Python lives under
/root). As a non-root user the tests log in as that user and name the device Python by path.
"""

import getpass
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest

from deploykit.results import read_results

psutil = pytest.importorskip("psutil")

SSHD = Path("/usr/sbin/sshd")
pytestmark = pytest.mark.skipif(
    not SSHD.exists() or shutil.which("ssh-keygen") is None,
    reason="unavailable: OpenSSH server not installed (apt-get install openssh-server)")

DEVICE_RUNTIME = ("tflite-runtime==2.14.0", "numpy<2")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "deploykit-test", "-f", str(path)],
                   check=True, capture_output=True)
    return path


def _pub(path: Path) -> str:
    return " ".join(Path(f"{path}.pub").read_text().split()[:2])


def _fingerprint(path: Path) -> str:
    out = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", f"{path}.pub"], check=True, capture_output=True, text=True)
    return out.stdout.split()[1]  # 256 SHA256:… comment (ED25519)


@dataclass
class Device:
    root: Path
    port: int
    user: str
    key: Path  # logs in with numpy + tflite-runtime 2.14.0 on PATH
    bare_key: Path  # logs in with a Python that has neither
    wrong_key: Path  # not authorized
    host_key: Path
    known_hosts: Path
    sshd: subprocess.Popen
    python: str  # what --python names on the device
    bare_python: str
    system_key: Optional[Path] = None  # root only: logs in with Debian's own, externally-managed python3
    home: Optional[Path] = None

    @property
    def target(self) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}"

    def descendants(self):
        try:
            return psutil.Process(self.sshd.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []


def _venv(base: str, path: Path, *packages: str) -> Path:
    subprocess.run([base, "-m", "venv", *([] if packages else ["--without-pip"]), str(path)], check=True,
                   capture_output=True, timeout=300)
    if packages:
        subprocess.run([str(path / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        *packages], check=True, capture_output=True, timeout=900)
    return path


def _wait_for_port(port: int, proc: subprocess.Popen, log: Path, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"sshd did not listen on {port} within {timeout} s")


@pytest.fixture(scope="module")
def device():
    root = Path(tempfile.mkdtemp(prefix="deploykit-edge-device-"))
    root.chmod(0o755)
    as_root = os.geteuid() == 0
    user = None
    sshd = None
    try:
        base = "/usr/bin/python3" if as_root and Path("/usr/bin/python3").exists() else sys.executable
        full = _venv(base, root / "device-env", *DEVICE_RUNTIME)
        bare = _venv(base, root / "bare-env")
        keys = root / "keys"
        keys.mkdir()
        host_key, key, bare_key, wrong_key, system_key = (_keygen(keys / n) for n in ("host", "client", "bare", "wrong", "system"))
        if as_root:
            user = f"dkedge{secrets.token_hex(3)}"
            home = root / "home"
            subprocess.run(["useradd", "--no-create-home", "--home-dir", str(home), "--shell", "/bin/sh",
                            "--password", "*", user], check=True, capture_output=True)
            home.mkdir()
            shutil.chown(home, user)
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation dir, as Debian's unit makes it
        login = user or getpass.getuser()
        auth = root / "authorized_keys"
        auth.write_text(
            f'environment="PATH={full}/bin:/usr/bin:/bin" {_pub(key)}\n'
            f'environment="PATH={bare}/bin:/usr/bin:/bin" {_pub(bare_key)}\n'
            f'environment="PATH=/usr/bin:/bin" {_pub(system_key)}\n')
        subprocess.run(["chmod", "-R", "a+rX", str(root / "device-env"), str(root / "bare-env"), str(auth)], check=True)
        port = _free_port()
        config = root / "sshd_config"
        config.write_text("\n".join([
            f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {host_key}", f"PidFile {root / 'sshd.pid'}",
            f"AuthorizedKeysFile {auth}", "StrictModes no", "UsePAM no", "PasswordAuthentication no",
            "KbdInteractiveAuthentication no", "PubkeyAuthentication yes", "PermitRootLogin prohibit-password",
            "PermitUserEnvironment yes", "Subsystem sftp internal-sftp", "LogLevel VERBOSE", ""]))
        log = root / "sshd.log"
        sshd = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)], stdout=open(log, "w"),
                                stderr=subprocess.STDOUT)
        _wait_for_port(port, sshd, log)
        known = root / "known_hosts"
        known.write_text(f"[127.0.0.1]:{port} {_pub(host_key)}\n")
        yield Device(root=root, port=port, user=login, key=key, bare_key=bare_key, wrong_key=wrong_key,
                     host_key=host_key, known_hosts=known, sshd=sshd,
                     python="python3" if as_root else str(full / "bin" / "python3"),
                     bare_python="python3" if as_root else str(bare / "bin" / "python3"),
                     system_key=system_key if as_root else None, home=home if as_root else None)
    finally:
        if sshd is not None:
            for child in psutil.Process(sshd.pid).children(recursive=True) if sshd.poll() is None else []:
                child.kill()
            sshd.terminate()
            sshd.wait(10)
        if user:
            subprocess.run(["userdel", user], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def edge_bench(device: Device, model_dir: Path, out: Path, *extra: str, key=None, known_hosts=None, python=None,
               wait=True, formats="tflite-fp32", min_time="0.1"):
    cmd = [sys.executable, "-m", "deploykit", "edge", "bench", str(model_dir), "--target", device.target,
           "--identity", str(key or device.key), "--known-hosts", str(known_hosts or device.known_hosts),
           "--python", python or device.python, "--formats", formats, "--min-time", min_time, "--warmup", "0.05",
           "--samples", "100", "--out", str(out), *extra]
    if not wait:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def assert_one_line_error(proc, *needles):
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def test_bench_on_the_device(device, mnist_models, tmp_path):
    out = tmp_path / "edge.json"
    before = set(Path("/tmp").glob("deploykit-edge.*"))
    proc = edge_bench(device, mnist_models / "keras-cnn", out, "--threads", "1,2",
                      formats="tflite-fp32,tflite-int8,tflite-dynamic", min_time="0.2")
    assert proc.returncode == 0, proc.stderr
    results = read_results(out)  # schema-valid
    assert results.kind == "edge-bench"
    m = results.machine
    # Device facts come from the device's Python, not from deploykit's.
    assert m.extra["runtime"] == {"package": "tflite-runtime", "module": "tflite_runtime.interpreter", "version": "2.14.0"}
    assert m.extra["numpy"].startswith("1.")
    assert m.cores_logical >= 1 and m.memory_bytes > 0 and m.os and m.cpu_model
    assert m.extra["state_before"]["source"] in ("vcgencmd", "sysfs") and m.extra["state_after"]["time"] > m.extra["state_before"]["time"]
    records = {(r.format, r.threads): r for r in results.records}
    for fmt in ("tflite-fp32", "tflite-int8"):
        for t in (1, 2):
            r = records[(fmt, t)]
            assert r.target == "edge:127.0.0.1" and not r.emulated and r.status == "ok"
            assert r.runtime == "tflite-runtime" and r.runtime_version == "2.14.0"
            assert r.latency.samples > 0 and r.latency.p50_us > 0 and r.windows >= 3 and r.load_ms > 0
            assert r.compat["verdict"] == "compatible" and r.top1_agreement >= 0.98
            assert r.extra["state_before"] and r.extra["state_after"]
    assert records[("tflite-fp32", 1)].extra["xnnpack"] is True  # the runtime's default delegate, seen in its log
    dynamic = records[("tflite-dynamic", 1)]
    assert dynamic.status == "failed" and dynamic.compat["verdict"] == "incompatible"
    assert "FULLY_CONNECTED version 12" in dynamic.reason and "deploy tflite-fp32, tflite-int8 instead" in dynamic.reason
    assert set(Path("/tmp").glob("deploykit-edge.*")) <= before  # the device's work folder is gone

    # `deploykit report` merges the device as one more target beside the CPU of this machine.
    cpu = tmp_path / "cpu.json"
    bench = subprocess.run([sys.executable, "-m", "deploykit", "bench", str(mnist_models / "keras-cnn"), "--formats",
                            "tflite-fp32", "--batch-sizes", "1", "--min-time", "0.1", "--no-model-files", "--out", str(cpu)],
                           capture_output=True, text=True, timeout=600)
    assert bench.returncode == 0, bench.stderr
    report = subprocess.run([sys.executable, "-m", "deploykit", "report", str(cpu), str(out)], capture_output=True,
                            text=True, timeout=300)
    assert report.returncode == 0, report.stderr
    assert "edge:127.0.0.1" in report.stdout and "| cpu" in report.stdout
    assert "incompatible" in report.stdout


def test_unknown_host_is_refused_then_trusted_on_request(device, mnist_models, tmp_path):
    known = tmp_path / "ssh" / "known_hosts"  # does not exist yet
    out = tmp_path / "edge.json"
    fingerprint = _fingerprint(device.host_key)
    proc = edge_bench(device, mnist_models / "keras-cnn", out, known_hosts=known)
    assert_one_line_error(proc, f"127.0.0.1:{device.port} is not in {known}", fingerprint, "--trust-new-host")
    assert not out.exists() and not known.exists()

    proc = edge_bench(device, mnist_models / "keras-cnn", out, "--trust-new-host", known_hosts=known)
    assert proc.returncode == 0, proc.stderr
    assert "trusted new host" in proc.stdout and fingerprint in proc.stdout.replace("\n", "")
    assert known.read_text().split() == f"[127.0.0.1]:{device.port} {_pub(device.host_key)}".split()
    assert read_results(out).records[0].status == "ok"


def test_changed_host_key_is_refused_even_when_trusting(device, mnist_models, tmp_path):
    impostor = _keygen(tmp_path / "impostor")
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{device.port} {_pub(impostor)}\n")
    out = tmp_path / "edge.json"
    for extra in ((), ("--trust-new-host",)):
        proc = edge_bench(device, mnist_models / "keras-cnn", out, *extra, known_hosts=known)
        assert_one_line_error(proc, "does not match the one recorded", "refusing", "ssh-keygen -R")
        assert not out.exists()
    assert known.read_text() == f"[127.0.0.1]:{device.port} {_pub(impostor)}\n"  # never rewritten


def test_refused_login(device, mnist_models, tmp_path):
    out = tmp_path / "edge.json"
    proc = edge_bench(device, mnist_models / "keras-cnn", out, key=device.wrong_key)
    assert_one_line_error(proc, "login refused", f"{device.user}@127.0.0.1:{device.port}", str(device.wrong_key))
    assert not out.exists()


def test_missing_runtime_on_the_device(device, mnist_models, tmp_path):
    out = tmp_path / "edge.json"
    proc = edge_bench(device, mnist_models / "keras-cnn", out, key=device.bare_key, python=device.bare_python)
    assert_one_line_error(proc, "lacks what the runner needs", "numpy (pip install numpy)",
                          "a TFLite runtime", "pip install tflite-runtime")
    assert not out.exists()


def _wait_for_runner(device: Device, timeout=120.0):
    """The device's runner process measuring the first artifact (not the facts run)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in device.descendants():
            try:
                if "runner.py" in p.cmdline() and "job-0.json" in p.cmdline():
                    return p
            except psutil.NoSuchProcess:
                continue
        time.sleep(0.1)
    raise AssertionError("the runner never started on the device")


def test_a_runtime_crash_is_that_artifacts_result(device, mnist_models, tmp_path):
    """SIGSEGV is how an old runtime dies on a model it mishandles: that artifact is recorded as
    incompatible (crashed) and the others are still measured."""
    out = tmp_path / "edge.json"
    proc = edge_bench(device, mnist_models / "keras-cnn", out, wait=False, min_time="3", formats="tflite-fp32,tflite-int8")
    try:
        runner = _wait_for_runner(device)
        time.sleep(0.5)
        runner.send_signal(signal.SIGSEGV)
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    records = {r.format: r for r in read_results(out).records}
    crashed = records["tflite-fp32"]
    assert crashed.status == "failed" and crashed.compat["verdict"] == "incompatible"
    assert "the runtime crashed (signal SEGV) while measuring tflite-fp32" in crashed.reason
    assert records["tflite-int8"].status == "ok" and records["tflite-int8"].latency.samples > 0


@pytest.mark.parametrize("how", ["kill-runner", "drop-connection"])
def test_interrupted_run_leaves_no_results(device, mnist_models, tmp_path, how):
    out = tmp_path / "edge.json"
    before = set(Path("/tmp").glob("deploykit-edge.*"))
    proc = edge_bench(device, mnist_models / "keras-cnn", out, wait=False, min_time="30")
    try:
        runner = _wait_for_runner(device)
        time.sleep(1.0)  # inside the measurement windows
        session = device.descendants()  # everything of this connection, collected while it is still ours
        if how == "kill-runner":
            runner.send_signal(signal.SIGKILL)
        else:  # the sshd processes serving this connection die: the client sees the connection drop
            for p in session:
                if p.pid != runner.pid and p.name() == "sshd":
                    p.send_signal(signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for p in locals().get("session", []):  # an orphaned runner is still one we started
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        # A dropped connection leaves the device's work folder behind (nobody is left to remove it).
        for left in set(Path("/tmp").glob("deploykit-edge.*")) - before:
            if left.stat().st_uid == pwd.getpwnam(device.user).pw_uid:
                shutil.rmtree(left, ignore_errors=True)
    result = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    if how == "kill-runner":
        assert_one_line_error(result, "killed by signal KILL", "measuring tflite-fp32", "no results written")
    else:
        assert_one_line_error(result, f"connection to {device.user}@127.0.0.1:{device.port} lost")
    assert not out.exists()
    assert not list(tmp_path.glob(".edge.json*"))  # no temp file of an atomic write either


def _ssh(device: Device, key: Path, command: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ssh", "-i", str(key), "-p", str(device.port), "-o", f"UserKnownHostsFile={device.known_hosts}",
                           "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", f"{device.user}@127.0.0.1", command],
                          capture_output=True, text=True, timeout=120)


# slow: ~40 s, most of it pip downloading numpy, tflite-runtime and onnxruntime into the device's venv.
# Run: pytest -m slow tests/integration/test_edge_ssh.py
@pytest.mark.slow
def test_setup_on_an_externally_managed_python_then_bench_tflite_and_onnx_without_python(device, mnist_models, tmp_path):
    """Debian's own python3 refuses `pip install` (PEP 668); `edge setup` makes ~/.deploykit/venv with
    tflite-runtime 2.14.0, numpy and onnxruntime, and `edge bench` (no --python) runs there: a Keras
    TFLite artifact and a PyTorch model's ONNX artifact in one results file."""
    if device.system_key is None or shutil.which("ssh") is None:
        pytest.skip("unavailable: needs root (a throwaway user whose only Python is Debian's) and the ssh client")
    refused = _ssh(device, device.system_key, "python3 -m pip install --dry-run numpy")
    assert refused.returncode != 0 and "externally-managed-environment" in refused.stdout + refused.stderr
    common = ["--target", device.target, "--identity", str(device.system_key), "--known-hosts", str(device.known_hosts)]

    setup = subprocess.run([sys.executable, "-m", "deploykit", "edge", "setup", *common, "--runtime",
                            "tflite-runtime==2.14.0", "--onnx"], capture_output=True, text=True, timeout=1200)
    assert setup.returncode == 0, setup.stderr[-3000:]
    out = " ".join(setup.stdout.split())
    venv = device.home / ".deploykit" / "venv"
    assert f"venv {venv}" in out and "tflite-runtime 2.14.0" in out and "onnxruntime" in out, out
    assert "externally managed" in out
    assert (venv / "bin" / "python").exists()
    assert [p.name for p in (device.home / ".deploykit").iterdir()] == ["venv"]  # no half-built leftovers

    results_path = tmp_path / "edge.json"
    bench = subprocess.run([sys.executable, "-m", "deploykit", "edge", "bench", str(mnist_models / "keras-cnn"),
                            str(mnist_models / "torch-mlp"), *common, "--formats", "tflite-fp32,onnx", "--min-time",
                            "0.1", "--warmup", "0.05", "--samples", "100", "--out", str(results_path)],
                           capture_output=True, text=True, timeout=600)
    assert bench.returncode == 0, bench.stderr[-3000:]
    results = read_results(results_path)
    assert results.machine.extra["runtimes"]["onnx"]["package"] == "onnxruntime"
    by_key = {(r.model, r.format): r for r in results.records}
    assert set(by_key) == {(m, f) for m in ("keras-cnn", "torch-mlp") for f in ("tflite-fp32", "onnx")}
    for r in results.records:  # the PyTorch-made .tflite (onnx2tf) loads in the device's tflite-runtime too
        want = ("tflite-runtime", "2.14.0") if r.format == "tflite-fp32" else ("onnxruntime", r.runtime_version)
        assert (r.runtime, r.runtime_version) == want, (r.model, r.format)
        assert r.status == "ok" and r.compat["verdict"] == "compatible" and r.top1_agreement >= 0.98, r.reason
        assert r.latency.p50_us > 0 and not r.emulated
    report = subprocess.run([sys.executable, "-m", "deploykit", "report", str(results_path)], capture_output=True,
                            text=True, timeout=300)
    assert report.returncode == 0, report.stderr
    rows = [ln for ln in report.stdout.splitlines() if "edge:127.0.0.1" in ln]
    assert any("| onnx |" in ln for ln in rows) and any("| tflite-fp32 |" in ln for ln in rows), rows
    assert any("| torch-mlp |" in ln and "| tflite-fp32 |" in ln for ln in rows), rows  # beside keras-cnn's

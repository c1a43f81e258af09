"""deploykit's device runner: loads TFLite artifacts, checks them and times them on the machine it runs on.

Copied to a device (over SSH) or into an isolated runtime environment, together with deploykit's
measurement protocol (`protocol.py`), and run there as ``python3 runner.py JOB.json``. It needs only
Python ≥ 3.7, numpy and a TFLite runtime: no deploykit install. So this file imports nothing from
deploykit, and its syntax stays within Python 3.6 so that an old device Python gets the one-line
"needs Python ≥ 3.7" message rather than a SyntaxError.

What stays on the host: the manifest, the input mapping (`deploykit.runtimes.base.to_input` prepares
the input tensor there; the runner receives the tensor as .npy) and parity (the runner returns the raw
output tensor). One implementation of each, and the device only runs what is timed on any machine:
``set_tensor → invoke → get_tensor`` in `Model.run`, the one TFLite call path: the runtime registry's
LiteRT predictor (`deploykit.runtimes.litert_rt`, which `deploykit bench` times) wraps this same class.

Job (JSON): mode "facts" | "check" | "bench"; out (result file, written atomically); runtime (None, a
package name or NAME==VERSION); for check/bench: artifact {format, path, input (.npy of the prepared
tensor), ops [{index, name, version, version_offset}] (from the host's flatbuffer parse, for probing
missing op versions)}; for bench: threads, batch_sizes, cpus (pin to these cores), protocol settings.

Exit codes: 0 result written (an artifact that fails to load is a result, not an error); 2 bad job;
3 something the device lacks (Python, numpy, a TFLite runtime, the asked runtime version): one line on
stderr starting with "deploykit-runner: missing:".
"""

import base64
import io
import json
import os
import platform
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time

__all__ = ["main", "device_facts", "device_state", "find_runtime", "import_runtime", "open_model", "Model", "Missing",
           "parse_load_error", "EXIT_MISSING", "EXIT_USAGE"]

RUNNER_VERSION = 1
EXIT_OK = 0
EXIT_USAGE = 2
EXIT_MISSING = 3
MISSING_PREFIX = "deploykit-runner: missing:"

# Import order: the slim device runtime first (what Pi images carry), then LiteRT, then full TensorFlow.
RUNTIMES = (
    ("tflite-runtime", "tflite_runtime.interpreter"),
    ("ai-edge-litert", "ai_edge_litert.interpreter"),
    ("tensorflow", "tensorflow.lite"),
)
# ONNX artifacts (PyTorch models reach a Pi this way too): ONNX Runtime, which has aarch64 wheels.
ONNX_RUNTIMES = (("onnxruntime", "onnxruntime"),)
KINDS = {"tflite": RUNTIMES, "onnx": ONNX_RUNTIMES}
EDGETPU_LIBRARY = "libedgetpu.so.1"
MAX_PROBES = 64  # interpreter constructions per artifact when listing missing op versions

# arm64 kernels report only a part number in /proc/cpuinfo; these are Arm's published part numbers
# of the cores on the boards deploykit has profiles for (and their neighbours).
ARM_PARTS = {
    "0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55", "0xd07": "Cortex-A57",
    "0xd08": "Cortex-A72", "0xd09": "Cortex-A73", "0xd0a": "Cortex-A75", "0xd0b": "Cortex-A76",
    "0xd0c": "Neoverse-N1", "0xd0d": "Cortex-A77", "0xd41": "Cortex-A78", "0xd4b": "Cortex-A78C",
    "0xc07": "Cortex-A7", "0xc0f": "Cortex-A15",
}
# vcgencmd get_throttled bits (Raspberry Pi firmware documentation).
THROTTLE_BITS = {
    0: "under-voltage now", 1: "arm frequency capped now", 2: "throttled now", 3: "soft temperature limit now",
    16: "under-voltage occurred", 17: "arm frequency capping occurred", 18: "throttling occurred",
    19: "soft temperature limit occurred",
}

_MISSING_OP = re.compile(r"Didn't find op for builtin opcode '(\w+)' version '(\d+)'")
_CUSTOM_OP = re.compile(r"(?:Encountered unresolved custom op|unresolved custom op): ?'?([\w.\-/]+)")
_CODE_RANGE = re.compile(r"builtin_code out of range: (\d+)")


class Missing(Exception):
    """Something the device lacks; main() prints it as one line and exits EXIT_MISSING."""


# -- dependencies ------------------------------------------------------------------------------------
def check_python():
    if sys.version_info < (3, 7):
        raise Missing("Python >= 3.7 (this is Python {}); install python3.8 or newer and pass its path "
                      "with --python".format(platform.python_version()))


def check_numpy():
    try:
        import numpy  # noqa: F401
    except ImportError:
        return "numpy (pip install numpy)"
    return None


class Runtime(object):
    def __init__(self, package, module, version, interpreter_cls, load_delegate):
        self.package = package
        self.module = module
        self.version = version
        self.Interpreter = interpreter_cls
        self.load_delegate = load_delegate

    def describe(self):
        return {"package": self.package, "module": self.module, "version": self.version}


def _package_version(package, module_obj):
    version = getattr(module_obj, "__version__", None)
    if version:
        return str(version)
    try:
        from importlib.metadata import version as dist_version  # Python ≥ 3.8
        return dist_version(package)
    except Exception:  # noqa: BLE001 - metadata absent or Python 3.7: the version is then unknown, not fatal
        return "unknown"


def kind_of(path):
    """"onnx" for .onnx artifacts, else "tflite": which family of runtimes loads the file."""
    return "onnx" if path.endswith(".onnx") else "tflite"


def import_runtime(package, module):
    import importlib

    if package == "onnxruntime":
        ort = importlib.import_module(module)
        return Runtime(package, module, ort.__version__, ort.InferenceSession, None)
    if package == "tensorflow":
        tf = importlib.import_module("tensorflow")
        return Runtime(package, module, tf.__version__, tf.lite.Interpreter, tf.lite.experimental.load_delegate)
    mod = importlib.import_module(module)
    top = importlib.import_module(module.split(".")[0])
    return Runtime(package, module, _package_version(package, top), mod.Interpreter,
                   getattr(mod, "load_delegate", None))


def spec_for(kind, spec):
    """The part of a job's runtime spec that applies to this kind of artifact (None: first found).
    `spec` is one spec, or {kind: spec}; a TFLite spec says nothing about ONNX artifacts and back."""
    if isinstance(spec, dict):
        return spec.get(kind)
    if not spec:
        return None
    name = spec.split("==", 1)[0]
    if any(name == r[0] for r in KINDS[kind]):
        return spec
    if any(name == r[0] for table in KINDS.values() for r in table):
        return None  # the other kind's runtime
    return spec  # a name the runner does not know: find_runtime says so


def find_runtime(spec, kind="tflite"):
    """The runtime to use for `kind` artifacts: `spec` None (first found), a package name, or NAME==VERSION."""
    table = KINDS[kind]
    name, want = (spec.split("==", 1) + [None])[:2] if spec else (None, None)
    candidates = [r for r in table if name is None or r[0] == name]
    if name is not None and not candidates:
        raise Missing("runtime {!r} is not one the runner knows ({})".format(name, ", ".join(r[0] for r in table)))
    tried = []
    for package, module in candidates:
        try:
            rt = import_runtime(package, module)
        except ImportError as exc:
            tried.append("{} ({})".format(module, exc))
            continue
        if want and rt.version != want:
            raise Missing("{}=={} (the device has {} {}): pip install {}=={}".format(
                package, want, package, rt.version, package, want))
        return rt
    if name:
        raise Missing("{} (pip install {}{})".format(name, name, "==" + want if want else ""))
    if kind == "onnx":
        raise Missing("ONNX Runtime (tried onnxruntime): pip install onnxruntime")
    raise Missing("a TFLite runtime (tried {}): {}".format(", ".join(m for _, m in RUNTIMES), install_advice()))


def install_advice(version_info=None):
    """pip commands that install a TFLite runtime on this Python: tflite-runtime has wheels for
    Python 3.7-3.11 only, ai-edge-litert for 3.9 and later (asked of the package index for aarch64)."""
    v = tuple(version_info or sys.version_info)[:2]
    options = (["pip install tflite-runtime"] if (3, 7) <= v <= (3, 11) else []) + \
              (["pip install ai-edge-litert"] if v >= (3, 9) else [])
    return ", or ".join(options) or "no TFLite runtime has a wheel for Python {}.{}".format(*v)


# -- device facts ---------------------------------------------------------------------------------------
def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read().rstrip(b"\0").decode("utf-8", "replace").strip()
    except OSError:
        return None


def _cpu_model():
    text = _read("/proc/cpuinfo") or ""
    fields = {}
    parts = []
    for line in text.splitlines():
        if ":" in line:
            key, value = [s.strip() for s in line.split(":", 1)]
            fields.setdefault(key.lower(), value)
            if key.lower() == "cpu part":
                parts.append(value.lower())
    for key in ("model name", "hardware", "model", "cpu model"):
        if fields.get(key):
            name = fields[key]
            break
    else:
        name = None
    cores = sorted(set(ARM_PARTS.get(p, "arm part " + p) for p in parts))
    if cores and (name is None or "raspberry" in name.lower() or name.lower().startswith("bcm")):
        name = "{}{}".format(" + ".join(cores), " ({})".format(name) if name else "")
    return name or platform.processor() or platform.machine()


def _memory_bytes():
    for line in (_read("/proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return None


def _os_name():
    for line in (_read("/etc/os-release") or "").splitlines():
        if line.startswith("PRETTY_NAME="):
            return "{} (kernel {})".format(line.split("=", 1)[1].strip('"'), platform.release())
    return "{} {}".format(platform.system(), platform.release())


def _edgetpu_present():
    import ctypes

    try:
        ctypes.CDLL(EDGETPU_LIBRARY)
    except OSError:
        return False
    return True


def device_facts(runtime=None):
    """What the results say about the device: board, CPU, cores, memory, OS, Python, numpy, runtime."""
    import numpy

    cpufreq = "/sys/devices/system/cpu/cpu0/cpufreq/"
    max_khz = _read(cpufreq + "cpuinfo_max_freq")
    facts = {
        "hostname": socket.gethostname(),
        "board": _read("/proc/device-tree/model"),
        "cpu_model": _cpu_model(),
        "arch": platform.machine(),
        "cores_logical": os.cpu_count() or 1,
        "memory_bytes": _memory_bytes(),
        "os": _os_name(),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "runtime": runtime.describe() if runtime else None,
        "cpu_governor": _read(cpufreq + "scaling_governor"),
        "cpu_max_hz": int(max_khz) * 1000 if max_khz and max_khz.isdigit() else None,
        "edgetpu_library": _edgetpu_present(),
        "runner_version": RUNNER_VERSION,
    }
    why = {"board": "no /proc/device-tree/model (not a device-tree board)",
           "cpu_governor": "no cpufreq in " + cpufreq, "cpu_max_hz": "no cpufreq in " + cpufreq,
           "memory_bytes": "no MemTotal in /proc/meminfo"}
    facts["not_available"] = {k: "not available: " + reason for k, reason in why.items() if facts.get(k) is None}
    return facts


def _vcgencmd(*args):
    try:
        out = subprocess.run(["vcgencmd"] + list(args), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             timeout=5, universal_newlines=True)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def device_state():
    """Clock, temperature and throttling now: vcgencmd where present (Raspberry Pi), else sysfs."""
    state = {"time": time.time()}
    if shutil.which("vcgencmd"):
        state["source"] = "vcgencmd"
        clock = _vcgencmd("measure_clock", "arm")  # frequency(48)=1500398464
        if clock and "=" in clock:
            state["arm_clock_hz"] = int(clock.split("=", 1)[1])
        temp = _vcgencmd("measure_temp")  # temp=45.2'C
        m = re.search(r"([\d.]+)", temp or "")
        if m:
            state["temp_c"] = float(m.group(1))
        throttled = _vcgencmd("get_throttled")  # throttled=0x50000
        if throttled and "=" in throttled:
            bits = int(throttled.split("=", 1)[1], 16)
            state["throttled"] = hex(bits)
            state["throttled_flags"] = [text for bit, text in sorted(THROTTLE_BITS.items()) if bits >> bit & 1]
            state["throttled_now"] = bool(bits & 0xF)  # bits 0-3 are "now"; 16-19 "occurred since boot"
        return _mark_missing(state, {"arm_clock_hz": "vcgencmd answered no CPU clock",
                                     "temp_c": "vcgencmd answered no temperature"})
    state["throttled_now"] = None  # only Raspberry Pi firmware records throttling
    state["source"] = "sysfs"
    cur = _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq")
    if cur and cur.isdigit():
        state["arm_clock_hz"] = int(cur) * 1000
    temps = []
    base = "/sys/class/thermal"
    try:
        zones = sorted(z for z in os.listdir(base) if z.startswith("thermal_zone"))
    except OSError:
        zones = []
    for zone in zones:
        value = _read(os.path.join(base, zone, "temp"))
        if value and value.lstrip("-").isdigit():
            temps.append((int(value) / 1000.0, _read(os.path.join(base, zone, "type"))))
    if temps:
        hottest = max(temps)
        state["temp_c"], state["temp_zone"] = hottest
    state = _mark_missing(state, {"arm_clock_hz": "no vcgencmd and no cpufreq (/sys/devices/system/cpu/cpu0/cpufreq)",
                                  "temp_c": "no vcgencmd and no thermal zone in " + base})
    state["not_available"]["throttled"] = "not available: no vcgencmd (throttling is recorded by Raspberry Pi firmware only)"
    return state


def _mark_missing(state, why):
    """Facts the device cannot give are named with the reason, not left out or zero."""
    state["not_available"] = {k: "not available: " + reason for k, reason in why.items() if k not in state}
    return state


# -- loading ----------------------------------------------------------------------------------------
class _CaptureStderr(object):
    """Collect what native code writes to fd 2 (TFLite's INFO/ERROR lines) instead of mixing it into ours."""

    def __enter__(self):
        sys.stderr.flush()
        self._file = tempfile.TemporaryFile()
        self._saved = os.dup(2)
        os.dup2(self._file.fileno(), 2)
        self.text = ""
        return self

    def __exit__(self, *exc):
        sys.stderr.flush()
        os.dup2(self._saved, 2)
        os.close(self._saved)
        self._file.seek(0)
        self.text = self._file.read().decode("utf-8", "replace")
        self._file.close()
        return False


def parse_load_error(message):
    """A runtime's load error → {"kind": "missing-op"|"custom-op"|"unknown-op"|"other", ...}."""
    m = _MISSING_OP.search(message)
    if m:
        return {"kind": "missing-op", "op": m.group(1), "version": int(m.group(2))}
    m = _CUSTOM_OP.search(message)
    if m:
        return {"kind": "custom-op", "op": m.group(1).rstrip(".")}
    m = _CODE_RANGE.search(message)
    if m:
        return {"kind": "unknown-op", "builtin_code": int(m.group(1))}
    return {"kind": "other"}


def _numpy_abi_problem(exc):
    """tflite-runtime ≤ 2.14 was built for NumPy 1.x: under NumPy 2 its first call fails with a
    SystemError whose context is "numpy.core.multiarray failed to import" (seen here)."""
    seen = exc
    for _ in range(5):
        if seen is None:
            return False
        if "multiarray failed to import" in str(seen) or "_ARRAY_API" in str(seen):
            return True
        seen = seen.__context__
    return False


def _construct(runtime, model_content, threads, delegates):
    kwargs = {"model_content": model_content}
    if threads:
        kwargs["num_threads"] = threads
    if delegates:
        kwargs["experimental_delegates"] = delegates
    try:
        return runtime.Interpreter(**kwargs), None
    except (ValueError, RuntimeError, SystemError) as exc:
        if _numpy_abi_problem(exc):
            import numpy

            raise Missing("numpy<2 ({} {} was built for NumPy 1.x, the device has numpy {}): "
                          "pip install 'numpy<2'".format(runtime.package, runtime.version, numpy.__version__))
        return None, str(exc).strip()


def probe_missing_ops(runtime, model, ops, first_error):
    """Every builtin op version of the model the runtime lacks, not only the first one it names.

    The runtime stops at the first op it cannot resolve. To find the rest, patch that opcode's version
    field in a copy of the model (in place, as flatbuffers' generated `mutate_version` does; the host
    sends each field's byte offset from its parse of the schema) to the highest version the runtime
    resolves, and load again. That version is found by bisection: TFLite's op resolvers register each
    builtin for a contiguous range of versions from 1. Only interpreter construction (op resolution)
    runs on a patched model: it is never allocated or invoked.
    Returns [{op, version, runtime_max_version}]; a custom op, or an op the runtime has no code for,
    ends the list (patching cannot get past those)."""
    buf = bytearray(model)
    lacking = []
    error = first_error
    probes = [0]

    def resolves(entries, name, version):
        for entry in entries:
            struct.pack_into("<i", buf, entry["version_offset"], version)
        probes[0] += 1
        _, err = _construct(runtime, bytes(buf), None, None)
        again = parse_load_error(err or "")
        return not (again["kind"] == "missing-op" and again["op"] == name and again["version"] == version), err

    while error and probes[0] < MAX_PROBES:
        info = parse_load_error(error)
        if info["kind"] == "custom-op":
            lacking.append({"op": info["op"], "custom": True, "runtime_max_version": None})
            break
        if info["kind"] == "unknown-op":
            names = [o for o in ops if o.get("builtin_code") == info["builtin_code"]]
            lacking.append({"op": names[0]["name"] if names else "builtin code {}".format(info["builtin_code"]),
                            "version": names[0]["version"] if names else None, "runtime_max_version": None,
                            "note": "the runtime has no kernel for this op at any version"})
            break
        if info["kind"] != "missing-op":
            break
        entries = [o for o in ops if o["name"] == info["op"] and o["version"] == info["version"]
                   and o.get("version_offset") is not None]
        record = {"op": info["op"], "version": info["version"], "runtime_max_version": None}
        lacking.append(record)
        if not entries:
            break
        lo, hi, best, best_error = 1, info["version"] - 1, None, None
        while lo <= hi and probes[0] < MAX_PROBES:
            mid = (lo + hi) // 2
            ok, err = resolves(entries, info["op"], mid)
            if ok:
                best, best_error, lo = mid, err, mid + 1
            else:
                hi = mid - 1
        if best is None:
            break
        for entry in entries:  # leave the copy at the best version: its load error is the next op's
            struct.pack_into("<i", buf, entry["version_offset"], best)
        record["runtime_max_version"] = best
        error = best_error
    return lacking


# -- running --------------------------------------------------------------------------------------------
def _encode_array(a):
    import numpy as np

    f = io.BytesIO()
    np.save(f, a, allow_pickle=False)
    return base64.b64encode(f.getvalue()).decode("ascii")


class Model(object):
    """One interpreter, run: THE TFLite call path of deploykit. `deploykit.runtimes.litert_rt` wraps
    this class for the runtime registry (validation, serving, `deploykit bench`) and the runner uses it
    on devices, so what is timed there and here is the same code. It lives in this file because the
    runner must stay self-contained (numpy and a TFLite runtime only).

    Resized only when the batch size changes (a resize re-plans memory); a fixed-batch artifact is
    padded to its batch, and larger batches run in chunks of it."""

    def __init__(self, interpreter):
        self.interpreter = interpreter
        interpreter.allocate_tensors()
        self._in = interpreter.get_input_details()[0]
        self._out = interpreter.get_output_details()[0]["index"]
        self._batch = int(self._in["shape"][0])
        signature = self._in.get("shape_signature", self._in["shape"])
        self.fixed_batch = None if int(signature[0]) == -1 else self._batch

    def run(self, tensor):
        import numpy as np

        n = tensor.shape[0]
        if self.fixed_batch and n != self.fixed_batch:
            if n < self.fixed_batch:
                pad = np.zeros((self.fixed_batch - n,) + tensor.shape[1:], tensor.dtype)
                return self.run(np.concatenate([tensor, pad]))[:n]
            return np.concatenate([self.run(tensor[i:i + self.fixed_batch]) for i in range(0, n, self.fixed_batch)])
        if n != self._batch:
            # Only the batch dimension changes, and only on a dynamic-batch artifact (-1 in its
            # signature): what strict=True would enforce; left off since old runtimes lack the keyword.
            self.interpreter.resize_tensor_input(self._in["index"], list(tensor.shape))
            self.interpreter.allocate_tensors()
            self._batch = n
        self.interpreter.set_tensor(self._in["index"], tensor)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self._out)  # a copy already (every TFLite Python binding copies)


class OnnxModel(object):
    """One ONNX Runtime session, run: THE ONNX call path of deploykit (`deploykit.runtimes.
    onnxruntime_rt` wraps it; the runner uses it on devices). Numpy in, numpy out: ORT copies results
    back to host memory, so no explicit sync is needed."""

    fixed_batch = None  # the exporters write a dynamic batch axis

    def __init__(self, session):
        self.session = session
        self._input = session.get_inputs()[0].name
        self._output = [session.get_outputs()[0].name]

    def run(self, tensor):
        return self.session.run(self._output, {self._input: tensor})[0]


def onnx_session(runtime, source, threads=None, providers=("CPUExecutionProvider",)):
    """An ONNX Runtime session on `source` (path or bytes); raises the backend's own errors."""
    import importlib

    ort = importlib.import_module(runtime.module)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    return ort.InferenceSession(source, sess_options=opts, providers=list(providers))


def open_model(runtime, model_content, threads=None, delegates=None):
    """(Model or None, load error or None): construct, allocate and wrap an interpreter (or session)."""
    if runtime.package == "onnxruntime":
        try:
            return OnnxModel(onnx_session(runtime, model_content, threads)), None
        except Exception as exc:  # noqa: BLE001 - ORT's errors (InvalidProtobuf, Fail, …) have no common base: a load verdict
            return None, "{}: {}".format(type(exc).__name__, str(exc).strip())
    interpreter, error = _construct(runtime, model_content, threads, delegates)
    if interpreter is None:
        return None, error
    try:
        return Model(interpreter), None
    except (ValueError, RuntimeError) as exc:
        return None, str(exc).strip()


def _delegates(runtime, path):
    """The Edge TPU delegate for *_edgetpu.tflite artifacts: (delegates, None) or (None, why unavailable)."""
    if not path.endswith("_edgetpu.tflite"):
        return [], None
    if runtime.load_delegate is None:
        return None, "{} {} cannot load delegates".format(runtime.package, runtime.version)
    try:
        return [runtime.load_delegate(EDGETPU_LIBRARY)], None
    except (ValueError, OSError, RuntimeError) as exc:
        return None, "Edge TPU delegate {} unavailable on this device: {}".format(EDGETPU_LIBRARY, str(exc).strip()[:200])


def load(runtime, model_content, threads, delegates):
    """(Model or None, error or None, load_ms, native log lines)."""
    with _CaptureStderr() as cap:
        t0 = time.perf_counter_ns()
        model, error = open_model(runtime, model_content, threads, delegates)
        load_ms = (time.perf_counter_ns() - t0) / 1e6
    return model, error, load_ms, [ln for ln in cap.text.splitlines() if ln.strip()]


class StateSampler(object):
    """--sustained: clock and temperature every `every_s` seconds while a measurement runs, so that
    heat soak shows. A thread that sleeps between reads (sysfs, or vcgencmd on a Pi); off when None."""

    def __init__(self, every_s):
        import threading

        self.every_s = every_s
        self.samples = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True) if every_s else None

    def _loop(self):
        t0 = time.time()
        while True:
            s = device_state()
            self.samples.append({"t_s": round(s["time"] - t0, 3), "arm_clock_hz": s.get("arm_clock_hz"),
                                 "temp_c": s.get("temp_c"), "throttled_now": s.get("throttled_now")})
            if self._stop.wait(self.every_s):
                return

    def __enter__(self):
        if self._thread:
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self._thread:
            self._stop.set()
            self._thread.join()
        return False


OP_PROFILE_CALLS = 100
TFLITE_NO_OP_PROFILER = ("not available: the TFLite Python interpreters (tflite-runtime, ai-edge-litert) expose no "
                         "per-operator profiler (TFLite's benchmark_model --enable_op_profiling=true has one)")


def onnx_op_profile(runtime, model_content, threads, tensor, calls=OP_PROFILE_CALLS, top=5):
    """Per-operator time from ONNX Runtime's own profiler (SessionOptions.enable_profiling): the
    kernel time of every node over `calls` runs, summed per operator type, largest first. A session
    of its own, after the timed runs: profiling slows the calls it records."""
    import importlib

    ort = importlib.import_module(runtime.module)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.enable_profiling = True
    opts.profile_file_prefix = "deploykit-ort-profile"
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    model = OnnxModel(ort.InferenceSession(model_content, sess_options=opts, providers=["CPUExecutionProvider"]))
    for _ in range(calls):
        model.run(tensor)
    path = model.session.end_profiling()
    try:
        with open(path) as f:
            events = json.load(f)
    finally:
        os.remove(path)
    per_op = {}
    for e in events:
        if e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time"):
            op = (e.get("args") or {}).get("op_name", "?")
            per_op[op] = per_op.get(op, 0) + int(e.get("dur", 0))
    total = sum(per_op.values()) or 1
    ranked = sorted(per_op.items(), key=lambda kv: -kv[1])
    return {"source": "onnxruntime profiler (per-node kernel time, summed per op type)", "calls": calls,
            "batch": int(tensor.shape[0]),
            "top": [{"op": op, "us_per_call": round(us / calls, 3), "share": round(us / total, 4)}
                    for op, us in ranked[:top]]}


def _take(x, batch):
    import numpy as np

    if batch <= len(x):
        return np.ascontiguousarray(x[:batch])
    reps = -(-batch // len(x))
    return np.ascontiguousarray(np.concatenate([x] * reps)[:batch])


def run_artifact(job, runtime):
    import numpy as np
    import protocol

    art = job["artifact"]
    mode = job["mode"]
    result = {"format": art["format"], "path": art["path"], "runtime": runtime.describe(),
              "state_before": device_state()}
    cpus = job.get("cpus")
    if cpus:
        try:
            os.sched_setaffinity(0, set(cpus))
            result["pinned_cpus"] = sorted(os.sched_getaffinity(0))
        except (AttributeError, OSError) as exc:
            result["pinning_error"] = str(exc)
    with open(art["path"], "rb") as f:
        model_content = f.read()
    delegates, why = _delegates(runtime, art["path"]) if kind_of(art["path"]) == "tflite" else ([], None)
    if delegates is None:
        result["load"] = {"ok": False, "unavailable": why}
        result["state_after"] = device_state()
        return result
    threads = job.get("threads") or [None]
    model, error, load_ms, log = load(runtime, model_content, threads[0], delegates)
    result["load"] = {"ok": model is not None, "load_ms": load_ms, "native_log": log[-20:],
                      "xnnpack": any("XNNPACK" in ln for ln in log), "edgetpu": bool(delegates)}
    if model is None:
        result["load"]["error"] = error
        result["load"]["kind"] = parse_load_error(error or "")["kind"]
        if result["load"]["kind"] in ("missing-op", "custom-op", "unknown-op"):
            result["load"]["lacking_ops"] = probe_missing_ops(runtime, model_content, art.get("ops") or [], error)
        result["state_after"] = device_state()
        return result
    x = np.load(art["input"], allow_pickle=False)
    result["fixed_batch"] = model.fixed_batch
    with _CaptureStderr() as cap:
        outputs = model.run(x)
    result["load"]["xnnpack"] = result["load"]["xnnpack"] or "XNNPACK" in cap.text
    result["outputs"] = _encode_array(outputs)
    result["samples"] = int(len(x))
    if mode == "bench":
        runs = []
        settings = job.get("protocol", {})
        for i, t in enumerate(threads):
            if i > 0:
                model, error, load_ms, _ = load(runtime, model_content, t, delegates)
                if model is None:  # loaded once already: a failure now is not a compatibility verdict
                    runs.append({"threads": t, "error": error})
                    continue
            for batch in job.get("batch_sizes") or [1]:
                tensor = _take(x, batch)

                def call(model=model, tensor=tensor):
                    return model.run(tensor)

                _, first_ms = protocol.first_call(call)
                with StateSampler(job.get("sample_every_s")) as sampler:
                    m = protocol.measure(call, **settings)
                runs.append({"threads": t, "batch": batch, "load_ms": load_ms, "first_inference_ms": first_ms,
                             "measure": m, "state_samples": sampler.samples})
        result["runs"] = runs
        if job.get("op_profile"):
            if runtime.package == "onnxruntime":
                result["op_profile"] = onnx_op_profile(runtime, model_content, threads[0], _take(x, 1))
            else:
                result["op_profile"] = {"not_available": TFLITE_NO_OP_PROFILER}
    result["peak_rss_bytes"] = protocol.peak_rss_bytes()
    result["state_after"] = device_state()
    return result


def _write_json(path, obj):
    """Temp file + rename in the same folder: the host never fetches half a result."""
    tmp = "{}.{}.tmp".format(path, os.getpid())
    with open(tmp, "w") as f:
        json.dump(obj, f)
    os.replace(tmp, path)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        sys.stderr.write("usage: runner.py JOB.json\n")
        return EXIT_USAGE
    try:
        with open(argv[0]) as f:
            job = json.load(f)
        mode = job["mode"]
        out = job["out"]
    except (OSError, ValueError, KeyError) as exc:
        sys.stderr.write("deploykit-runner: bad job {}: {}\n".format(argv[0], exc))
        return EXIT_USAGE
    if mode not in ("facts", "check", "bench"):
        sys.stderr.write("deploykit-runner: unknown mode {!r}\n".format(mode))
        return EXIT_USAGE
    try:
        check_python()
        missing = [m for m in [check_numpy()] if m]
        if mode == "facts":
            runtimes = {}
            for kind in job.get("kinds") or ["tflite"]:  # every kind of artifact the session will send
                try:
                    runtimes[kind] = find_runtime(spec_for(kind, job.get("runtime")), kind)
                except Missing as exc:
                    missing.append(str(exc))
            if missing:
                raise Missing("; ".join(missing))
            first = list(runtimes.values())[0]
            result = {"facts": device_facts(first), "state": device_state()}
            result["facts"]["runtimes"] = {kind: rt.describe() for kind, rt in runtimes.items()}
        else:
            kind = kind_of(job["artifact"]["path"])
            try:
                runtime = find_runtime(spec_for(kind, job.get("runtime")), kind)
            except Missing as exc:
                missing.append(str(exc))
            if missing:
                raise Missing("; ".join(missing))
            result = run_artifact(job, runtime)
    except Missing as exc:
        sys.stderr.write("{} {}\n".format(MISSING_PREFIX, exc))
        return EXIT_MISSING
    result["runner_version"] = RUNNER_VERSION
    _write_json(out, result)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

"""One runner session: copy the runner and the measurement protocol, read the device's facts, then
check or measure each artifact in its own runner process, and bring the results back.

One process per artifact (as `deploykit bench` does): a runtime that crashes on one artifact takes
down that process only, and each artifact gets its own peak-memory figure.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from deploykit.errors import RuntimeUnavailable
from deploykit.manifest import ArtifactEntry
from deploykit.edge import runner as runner_module
from deploykit.edge.tflite_file import TfliteInfo
from deploykit.edge.transport import DeviceRunError, RunResult, SSHTransport, Transport

__all__ = ["PreparedArtifact", "SessionResult", "run_session", "runner_files", "FACTS_TIMEOUT_S", "CRASH_SIGNALS"]

FACTS_TIMEOUT_S = 180.0  # Python + numpy + runtime import on a slow board, cold caches
LOAD_ALLOWANCE_S = 240.0  # import, load, probe and the parity run on a slow board


@dataclass
class PreparedArtifact:
    entry: ArtifactEntry
    path: Path  # verified against the manifest's sha256
    info: TfliteInfo
    tensor: np.ndarray  # reference inputs mapped with deploykit.runtimes.base.to_input

    def remote_name(self, i: int) -> str:
        """The file's name keeps its ending: the runner picks the Edge TPU delegate by `_edgetpu.tflite`."""
        return f"artifact-{i}-{self.path.name}"


@dataclass
class SessionResult:
    facts: dict
    state: dict
    results: list[dict] = field(default_factory=list)  # runner results, in the order of the artifacts


def runner_files() -> list[Path]:
    """What goes to the device: the runner and the measurement protocol it imports as `protocol`."""
    from deploykit.bench import protocol

    return [Path(runner_module.__file__), Path(protocol.__file__)]


# Signals a process raises on itself when native code fails (a runtime crashing on a model it does not
# support): the artifact's result, not an interruption. Any other signal (KILL, TERM, HUP, INT) means the
# run was stopped from outside, and the session ends with an error.
CRASH_SIGNALS = ("SEGV", "ABRT", "BUS", "ILL", "FPE")


def _crash_result(art: PreparedArtifact, res: RunResult, runtime: dict, doing: str) -> dict:
    last = res.last_line()[:300]
    return {"format": art.entry.format, "runtime": runtime, "crashed": res.signal,
            "load": {"ok": False, "kind": "crash",
                     "error": f"the runtime crashed (signal {res.signal}) while {doing}" + (f": {last}" if last else "")}}


def _check_run(transport: Transport, res: RunResult, doing: str) -> None:
    if res.signal:
        raise DeviceRunError(f"the runner on {transport.where} was killed by signal {res.signal} while {doing}; "
                             "no results written")
    if res.returncode == runner_module.EXIT_MISSING:
        line = res.last_line().removeprefix(runner_module.MISSING_PREFIX).strip()
        # On Raspberry Pi OS / Debian 12 a bare `pip install` is refused (externally-managed): a venv is the way.
        hint = (f"; `deploykit edge setup --target ssh://{transport.where}` makes a venv there with them"
                if isinstance(transport, SSHTransport) else "")
        raise RuntimeUnavailable(f"{transport.where} lacks what the runner needs: {line}{hint}")
    if res.returncode == 127:
        raise RuntimeUnavailable(f"{transport.where} has no Python to run the runner ({res.last_line()[:200]}); "
                                 "install python3 or pass --python PATH")
    if res.returncode != 0:
        raise DeviceRunError(f"the runner failed on {transport.where} while {doing} (exit {res.returncode}): "
                             f"{res.last_line()[:300] or 'no error output'}")


def _npy(a: np.ndarray) -> bytes:
    f = io.BytesIO()
    np.save(f, np.ascontiguousarray(a), allow_pickle=False)
    return f.getvalue()


async def run_session(
    transport: Transport,
    artifacts: list[PreparedArtifact],
    *,
    mode: str,
    runtime: Optional[str] = None,
    threads: Optional[list[int]] = None,
    batch_sizes: Optional[list[int]] = None,
    cpus: Optional[list[int]] = None,
    protocol_settings: Optional[dict] = None,
    run_timeout_s: float = LOAD_ALLOWANCE_S,
    progress: Callable[[str], None] = lambda msg: None,
    kinds: Optional[list[str]] = None,
    sample_every_s: Optional[float] = None,
    op_profile: bool = False,
) -> SessionResult:
    """Run the runner for every artifact on `transport`; raise (and leave nothing half-done on the
    host) when the device lacks something or the session breaks."""
    await transport.start()
    try:
        for f in runner_files():
            await transport.put(f, f.name)
        # every kind of artifact sent (TFLite, ONNX) needs its runtime there: all are asked for up front
        kinds = kinds or sorted({runner_module.kind_of(a.path.name) for a in artifacts}) or ["tflite"]
        job = {"mode": "facts", "out": "facts.json", "runtime": runtime, "kinds": kinds}
        await transport.put_bytes(json.dumps(job).encode(), "job-facts.json")
        _check_run(transport, await transport.run(["runner.py", "job-facts.json"], FACTS_TIMEOUT_S), "reading device facts")
        first = json.loads(await transport.get_bytes("facts.json"))
        session = SessionResult(facts=first["facts"], state=first["state"])
        for i, art in enumerate(artifacts):
            await transport.put(art.path, art.remote_name(i))
            await transport.put_bytes(_npy(art.tensor), f"input-{i}.npy")
            job = {"mode": mode, "out": f"result-{i}.json", "runtime": runtime, "cpus": cpus,
                   "threads": threads, "batch_sizes": batch_sizes, "protocol": protocol_settings or {},
                   "sample_every_s": sample_every_s, "op_profile": op_profile,
                   "artifact": {"format": art.entry.format, "path": art.remote_name(i), "input": f"input-{i}.npy",
                                "ops": art.info.as_job_ops()}}
            await transport.put_bytes(json.dumps(job).encode(), f"job-{i}.json")
            res = await transport.run(["runner.py", f"job-{i}.json"], run_timeout_s)
            doing = f"{'measuring' if mode == 'bench' else 'checking'} {art.entry.format}"
            if res.signal in CRASH_SIGNALS:
                session.results.append(_crash_result(art, res, session.facts.get("runtime") or {}, doing))
                progress(f"{art.entry.format}: crashed")
                continue
            _check_run(transport, res, doing)
            session.results.append(json.loads(await transport.get_bytes(f"result-{i}.json")))
            progress(f"{art.entry.format}: {'loads' if (session.results[-1].get('load') or {}).get('ok') else 'does not load'}")
        return session
    finally:
        await transport.close()

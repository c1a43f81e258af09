"""One record in a fresh Python process (`python -m deploykit.bench.worker JOB_JSON OUT [SPAWN_NS]`).

Why a process per record:
- Cold start is only cold once per process: a second SavedModel loaded into a process that already
  imported and initialised TensorFlow loads faster than the first, so `load_ms` and
  `first_inference_ms` would depend on the order of the records.
- The resident-memory high-water mark (VmHWM) never goes down, so a per-record peak needs its own process.
- Thread settings are process-wide and some are fixed once set (TensorFlow's pools after its first op;
  `torch.set_num_threads`): a `--threads` sweep in one process would not do what it says.
- A runtime that crashes (a segfault in native code) takes down its worker, not the benchmark: the
  record says "failed" with the worker's last error line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from deploykit.errors import DeployKitError, RuntimeUnavailable
from deploykit.manifest import ArtifactEntry, ModelManifest
from deploykit.results import BenchRecord

from deploykit.bench.measure import base_record, measure_artifact
from deploykit.bench.settings import BenchJob

__all__ = ["run_in_worker"]

_WORKER_START_ALLOWANCE_S = 240.0  # import + load + first call before measuring starts (TF on a Pi is slow)


def run_in_worker(job: BenchJob, manifest: ModelManifest, entry: ArtifactEntry) -> BenchRecord:
    """Measure `job` in a fresh process; a crash or a timeout becomes a "failed" record with the reason."""
    timeout = _WORKER_START_ALLOWANCE_S + job.max_time_s + 10 * job.window_s
    with tempfile.TemporaryDirectory(prefix="deploykit-bench-") as tmp:
        out = Path(tmp) / "record.json"
        err = Path(tmp) / "stderr.txt"
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
        cmd = [sys.executable, "-m", "deploykit.bench.worker", json.dumps(asdict(job)), str(out),
               str(time.monotonic_ns())]
        with open(err, "w") as err_f:
            try:
                proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err_f,
                                      env=env, timeout=timeout)
            except subprocess.TimeoutExpired:
                return BenchRecord(**base_record(manifest, entry, job, status="failed",
                                                  reason=f"worker timed out after {timeout:.0f} s"))
        if out.is_file():
            return BenchRecord.model_validate_json(out.read_text())
        lines = [ln for ln in err.read_text(errors="replace").splitlines() if ln.strip()]
        last = lines[-1].strip() if lines else "no error output"
        return BenchRecord(**base_record(manifest, entry, job, status="failed",
                                          reason=f"worker exited with {proc.returncode}: {last[:400]}"))


def _worker_main(argv: list[str]) -> int:
    # argv[2]: the parent's monotonic clock at spawn (CLOCK_MONOTONIC is system-wide, so the two
    # processes' readings subtract): interpreter start + deploykit's own imports.
    started_ms = (time.monotonic_ns() - int(argv[2])) / 1e6 if len(argv) > 2 else None
    job = BenchJob(**json.loads(argv[0]))
    out = Path(argv[1])
    try:
        record = measure_artifact(job, isolation="fresh process", process_start_ms=started_ms)
    except RuntimeUnavailable as exc:
        manifest = ModelManifest.read(job.model_dir)
        record = BenchRecord(**base_record(manifest, manifest.artifact(job.format), job, status="unavailable",
                                            reason=str(exc)))
    except DeployKitError as exc:  # e.g. a checksum mismatch: the artifact is not what the manifest says
        manifest = ModelManifest.read(job.model_dir)
        record = BenchRecord(**base_record(manifest, manifest.artifact(job.format), job, status="failed",
                                            reason=str(exc)))
    out.write_text(record.model_dump_json())
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1:]))

"""The `deploykit serve` command (registered in deploykit.cli): check, print the choice, then serve with BentoML.

Before anything starts it resolves the model (folder or BentoML tag), chooses the artifact
(`--format auto`: the fastest that passed validation, see selection.py), verifies its sha256 and
checks its runtime; any problem is one line and exit code 2. Then it runs BentoML's own server for
deploykit.serving.service in this process (Ctrl-C stops it), passing the settings as bento arguments,
exactly as `bentoml serve deploykit.serving.service:DeployKitService --arg ...` would.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import typer

__all__ = ["serve_cmd", "settings_from_options"]


def settings_from_options(model: str, config: Optional[Path], options: dict):
    """Settings with this precedence: command-line options > --config file > DEPLOYKIT_* > defaults."""
    from deploykit.serving.config import ServeSettings, read_config_file

    args: dict = read_config_file(config) if config else {}
    args.update({k: v for k, v in options.items() if v is not None})
    args["model"] = str(Path(model).resolve()) if Path(model).exists() else model  # workers may run elsewhere
    return ServeSettings.from_sources(args, os.environ)


def serve_cmd(
    model: str = typer.Argument(..., help="Model folder (with manifest.json) or BentoML model tag (e.g. mnist-torch-mlp)."),
    format: Optional[str] = typer.Option(None, "--format", "-f", help="Artifact format, or 'auto' (default): the fastest that passed validation, from MODEL_DIR/bench.json when present, else the documented order."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(3000, "--port", "-p", min=0, max=65535, help="Port to listen on."),
    workers: Optional[int] = typer.Option(None, "--workers", "-w", min=1, help="Server processes, each with its own predictor (default 1)."),
    max_batch_size: Optional[int] = typer.Option(None, "--max-batch-size", min=2, help="Adaptive batching: most images per model call (default 64)."),
    max_latency_ms: Optional[int] = typer.Option(None, "--max-latency-ms", min=1, help="Adaptive batching: a request queued longer gets 503 + Retry-After (default 500)."),
    bench_results: Optional[Path] = typer.Option(None, "--bench-results", help="Results JSON of `deploykit bench` for --format auto (default: MODEL_DIR/bench.json)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="Runtime threads per worker (default 1)."),
    device: Optional[str] = typer.Option(None, "--device", "-d", help="cpu (default) or cuda."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML/JSON file of serving settings (keys of deploykit.serving.config.ServeSettings); options given here win."),
):
    """Serve a model over HTTP with BentoML: POST /predict (JSON) and /predict_image (PNG/JPEG)."""
    from deploykit.console import console
    from deploykit.serving.startup import check_port_free, prepare

    settings = settings_from_options(model, config, {
        "format": format, "workers": workers, "max_batch_size": max_batch_size, "max_latency_ms": max_latency_ms,
        "bench_results": bench_results, "threads": threads, "device": device,
    })
    prepared = prepare(settings)
    from deploykit.runtimes.probe import probe_in_child

    # Load it once in a child before BentoML starts: a damaged file or a native runtime crash is
    # one line and exit 2 here, not a server that starts and never becomes ready.
    probe_in_child(prepared.model_dir, prepared.choice.format, settings.device, settings.threads)
    console.print(f"deploykit: {prepared.describe()}", markup=False, soft_wrap=True)
    # Workers serve exactly what was checked and printed, even if bench results change meanwhile.
    settings = settings.model_copy(update={"format": prepared.choice.format})

    from bentoml._internal.utils.args import set_arguments

    set_arguments(settings.as_args())  # read by deploykit.serving.service on import, here and in workers
    from deploykit.serving.service import DeployKitService

    console.print(f"deploykit: http://{host}:{port}  (POST /predict, POST /predict_image, GET /readyz, /metrics, docs at /)",
                  markup=False, soft_wrap=True)
    check_port_free(host, port)
    with _own_metrics_dir():
        DeployKitService.serve_http(host=host, port=port)


@contextmanager
def _own_metrics_dir():
    """A Prometheus multiprocess folder of this server's own. BentoML's default is one folder per
    BENTOML_HOME, emptied by every server that starts: two servers on one machine would mix their
    metrics, and the second to start would delete the first one's."""
    import shutil
    import tempfile

    from bentoml._internal.configuration.containers import BentoMLContainer

    path = tempfile.mkdtemp(prefix="deploykit-metrics-")
    BentoMLContainer.prometheus_multiproc_dir.set(path)  # what serve_http passes to its workers
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


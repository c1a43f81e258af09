"""`bentoml build` with serving/bentofile.yaml, for real and offline; serving the built bento; the image.

The store entry is saved by a subprocess like the others here, so that every BentoML process of the
test agrees on BENTOML_HOME (the session's temporary home, from conftest).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from conftest import free_port
from test_serving_support import ROOT, start, stop, wait_all_ready

STORE_NAME = "servetest-torch-mlp"


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kw)


@pytest.fixture(scope="module")
def bento(mnist_models, tmp_path_factory):
    model = tmp_path_factory.mktemp("bento-model") / "torch-mlp"
    shutil.copytree(mnist_models / "torch-mlp", model)
    save = _run([sys.executable, "-c", "import sys; from deploykit.manifest import ModelManifest; "
                 "from deploykit.store import save_to_bentoml; "
                 f"print(save_to_bentoml(sys.argv[1], ModelManifest.read(sys.argv[1]), {STORE_NAME!r}))", str(model)])
    assert save.returncode == 0, save.stderr
    model_tag = save.stdout.strip().splitlines()[-1]
    build = _run([sys.executable, "-m", "bentoml", "build", "-f", "serving/bentofile.yaml", ".",
                  "--arg", f"model={STORE_NAME}", "--output", "tag"], cwd=ROOT)
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
    tag = build.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    return {"tag": tag, "model_tag": model_tag, "model_dir": model}


def test_bentoml_build_packs_the_service_the_code_and_the_chosen_model(bento):
    info = _run([sys.executable, "-m", "bentoml", "get", bento["tag"], "-o", "json"])
    assert info.returncode == 0, info.stderr
    meta = json.loads(info.stdout)
    assert meta["service"] == "serving.service:DeployKitService"
    assert meta["args"]["model"] == STORE_NAME
    packed = {m["tag"] for m in meta.get("models", [])} | {m["tag"] for s in meta.get("services", []) for m in s.get("models", [])}
    assert bento["model_tag"] in packed, packed
    path = Path(_run([sys.executable, "-m", "bentoml", "get", bento["tag"], "-o", "path"]).stdout.strip())
    src = path / "src"
    assert (src / "serving" / "service.py").is_file() and (src / "deploykit" / "serving" / "service.py").is_file()
    requirements = (path / "env/python/requirements.txt").read_text()
    assert "onnxruntime==1.32.0" in requirements and "msgspec==0.22.0" in requirements


@pytest.mark.slow
def test_the_built_bento_serves_its_packed_model(bento, tmp_path):
    port = free_port()
    cmd = [sys.executable, "-m", "bentoml", "serve", bento["tag"], "--host", "127.0.0.1", "--port", str(port)]
    server = start("bento", cmd, port, bento["model_dir"], "auto", tmp_path)
    try:
        wait_all_ready([server], timeout_s=180)
        x = np.load(bento["model_dir"] / "reference.npz")["x"][:4].astype(np.float32) / 255.0
        r = httpx.post(server.url + "/predict", json={"inputs": x.tolist()}, timeout=30)
        assert r.status_code == 200, r.text
        from deploykit.manifest import ModelManifest
        from deploykit.serving.selection import choose_format

        chosen = choose_format(bento["model_dir"], ModelManifest.read(bento["model_dir"])).format  # format: auto
        assert (r.json()["model"], r.json()["format"]) == ("torch-mlp", chosen)
        assert STORE_NAME in server.output()
    finally:
        stop(server)


def _docker_unavailable() -> str | None:
    if shutil.which("docker") is None:
        return "unavailable: no docker client on this machine"
    out = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        return f"unavailable: no Docker engine ({(out.stderr.strip().splitlines() or ['docker info failed'])[-1]})"
    return None


@pytest.mark.slow
def test_the_dockerfile_builds_an_image_that_serves(mnist_models, tmp_path):
    reason = _docker_unavailable()
    if reason:
        pytest.skip(reason)
    context = tmp_path / "context"
    shutil.copytree(ROOT / "src" / "deploykit", context / "src" / "deploykit", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "serving", context / "serving", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(mnist_models / "torch-mlp", context / "model")
    shutil.copy(ROOT / "Dockerfile", context / "Dockerfile")
    image = f"deploykit-serve-test:{int(time.time())}"
    build = subprocess.run(["docker", "build", "-t", image, "--build-arg", "MODEL_DIR=model", str(context)],
                           capture_output=True, text=True, timeout=1800)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    port = free_port()
    run = subprocess.run(["docker", "run", "-d", "--rm", "-p", f"127.0.0.1:{port}:3000", image],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    container = run.stdout.strip()
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(1)
        r = httpx.post(f"http://127.0.0.1:{port}/predict", json={"inputs": [[0.0] * 784]}, timeout=30)
        assert r.status_code == 200, r.text
    finally:
        subprocess.run(["docker", "rm", "-f", container], capture_output=True, timeout=60)
        subprocess.run(["docker", "rmi", "-f", image], capture_output=True, timeout=120)

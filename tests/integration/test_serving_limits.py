"""Limits that protect a serving worker, over real HTTP on loopback: stalled uploads, image decoding
off the event loop, a huge-canvas PNG, early 413s, JSON 404/405, a port in use, and `bentoml serve`
refusing a tampered artifact in a few lines. One `bentoml serve` server (ONNX MLP) for the module."""

from __future__ import annotations

import io
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from PIL import Image

from conftest import free_port
from test_serving_support import ROOT, bentoml_serve_cmd, start, stop, wait_all_ready

BODY_TIMEOUT_S = 3
MAX_UPLOADS = 32
MAX_BODY = 200_000
GOOD = b'{"inputs": [[' + b",".join([b"0.0"] * 784) + b"]]}"


@pytest.fixture(scope="module")
def server(mnist_models, tmp_path_factory):
    logs = tmp_path_factory.mktemp("limits-logs")
    port = free_port()
    args = {"model": mnist_models / "torch-mlp", "format": "onnx", "body_timeout_s": BODY_TIMEOUT_S,
            "max_uploads": MAX_UPLOADS, "max_body_bytes": MAX_BODY}
    s = start("limits", bentoml_serve_cmd(port, args), port, mnist_models / "torch-mlp", "onnx", logs)
    try:
        wait_all_ready([s])
        yield s
    finally:
        stop(s)


def _p99(xs: list[float]) -> float:
    return float(np.percentile(xs, 99)) if xs else float("inf")


def _stalled(url: str, n: int) -> list[socket.socket]:
    """n connections that send headers and part of a declared body, then nothing."""
    host, port = url.removeprefix("http://").split(":")
    socks = []
    for _ in range(n):
        s = socket.create_connection((host, int(port)), timeout=5)
        s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 50000\r\n\r\n" + b'{"inputs": [[' + b"0.0," * 200)
        socks.append(s)
    return socks


def test_stalled_uploads_do_not_lock_out_normal_requests(server):
    socks = _stalled(server.url, 140)
    try:
        time.sleep(0.5)  # every stalled request is in its handler now
        latencies, statuses = [], []

        def one(_):
            with httpx.Client(timeout=5) as c:
                t = time.perf_counter()
                r = c.post(server.url + "/predict", content=GOOD, headers={"content-type": "application/json"})
                return r.status_code, time.perf_counter() - t

        with ThreadPoolExecutor(8) as pool:  # 400 requests, 8 at a time, while the 140 stall
            for status, dt in pool.map(one, range(400)):
                statuses.append(status)
                latencies.append(dt)
        ok = statuses.count(200) / len(statuses)
        print(f"\n140 stalled uploads: normal requests {ok:.1%} ok, p50 {np.median(latencies)*1e3:.1f} ms, "
              f"p99 {_p99(latencies)*1e3:.1f} ms")
        assert ok >= 0.99, sorted(set(statuses))
        # Locked out, normal requests would wait for the stalled bodies' 3 s timeout (or their own 5 s):
        # 2 s tells that apart and leaves a busy 2-core machine room (p99 83–150 ms quiet, 1.4 s seen
        # while a load benchmark shared the cores).
        assert _p99(latencies) < 2.0
        # The stalled ones: past the upload limit refused at once (503), the others 408 after the timeout.
        answers = []
        deadline = time.monotonic() + BODY_TIMEOUT_S + 5
        for s in socks:
            s.settimeout(max(deadline - time.monotonic(), 0.1))
            try:
                answers.append(s.recv(4096).split(b"\r\n", 1)[0])
            except OSError:
                answers.append(b"")
        assert answers.count(b"HTTP/1.1 408 Request Timeout") == MAX_UPLOADS, set(answers)
        assert answers.count(b"HTTP/1.1 503 Service Unavailable") == 140 - MAX_UPLOADS, set(answers)
    finally:
        for s in socks:
            s.close()


def test_408_is_json_and_closes_the_connection(server):
    [s] = _stalled(server.url, 1)
    with s:
        s.settimeout(BODY_TIMEOUT_S + 5)
        data = b""
        while chunk := s.recv(4096):  # b"" once the server closed
            data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 408") and b"connection: close" in head.lower()
    assert b'"code":"body_timeout"' in body and len(body) < 300


def _png(w: int, h: int, value: int = 0) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (w, h), value).save(buf, format="PNG")
    return buf.getvalue()


def _livez_p99(url: str, n: int = 100) -> float:
    times = []
    with httpx.Client(timeout=10) as c:
        for _ in range(n):
            t = time.perf_counter()
            assert c.get(url + "/livez").status_code == 200
            times.append(time.perf_counter() - t)
            time.sleep(0.01)
    return _p99(times)


def test_livez_stays_fast_while_images_are_decoded_and_a_huge_canvas_is_refused(server):
    photo = _png(1024, 768, 255)
    huge = _png(16000, 1000)  # ~15 KB on the wire, 16 MP declared: over the 12.6 MP default
    assert len(huge) < 100_000
    stop_at = time.monotonic() + 30

    def load(_):
        codes = []
        with httpx.Client(timeout=30) as c:
            for _ in range(15):
                if time.monotonic() > stop_at:
                    break
                codes.append(c.post(server.url + "/predict_image", content=photo,
                                    headers={"content-type": "image/png"}).status_code)
        return codes

    with ThreadPoolExecutor(16) as pool:
        busy = pool.map(load, range(16))
        time.sleep(0.5)
        p99 = _livez_p99(server.url)
        t = time.perf_counter()
        r = httpx.post(server.url + "/predict_image", content=huge, headers={"content-type": "image/png"}, timeout=30)
        huge_s = time.perf_counter() - t
        codes = [c for cs in busy for c in cs]
    print(f"\n/livez p99 with the image route saturated (c=16, 1024x768 PNG): {p99*1e3:.1f} ms; "
          f"16000x1000 PNG refused in {huge_s*1e3:.1f} ms")
    assert set(codes) <= {200, 503} and codes.count(200) > 0, sorted(set(codes))
    assert p99 < 0.25
    assert r.status_code == 413 and r.json()["error"]["code"] == "image_too_large"
    assert huge_s < 1.0


def test_an_early_413_is_readable_by_urllib(server):
    request = urllib.request.Request(server.url + "/predict", data=b" " * 2_000_000,
                                     headers={"Content-Type": "application/json"}, method="POST")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=30)
    assert caught.value.code == 413
    assert b'"code":"body_too_large"' in caught.value.read()


@pytest.mark.parametrize("method, path, status, code", [
    ("GET", "/nowhere", 404, "not_found"),
    ("GET", "/predict", 405, "method_not_allowed"),
    ("POST", "/livez", 405, "method_not_allowed"),  # BentoML's own routes too
    ("TRACE", "/metrics", 405, "method_not_allowed"),
])
def test_404_and_405_are_small_json(server, method, path, status, code):
    r = httpx.request(method, server.url + path, timeout=10)
    assert r.status_code == status and r.headers["content-type"].startswith("application/json")
    assert r.json()["error"]["code"] == code and len(r.content) < 300


def test_deploykit_serve_on_a_port_in_use_is_one_line(server, mnist_models):
    port = server.url.rsplit(":", 1)[1]
    out = subprocess.run([sys.executable, "-m", "deploykit", "serve", str(mnist_models / "torch-mlp"), "--format", "onnx",
                          "--port", port], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "already in use" in lines[0], out.stderr[-2000:]


def test_bentoml_serve_on_a_port_in_use_is_one_line(server, mnist_models):
    port = int(server.url.rsplit(":", 1)[1])
    out = subprocess.run(bentoml_serve_cmd(port, {"model": mnist_models / "torch-mlp", "format": "onnx"}), cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and f"port {port}" in lines[0] and "already in use" in lines[0], out.stderr[-2000:]


def test_bentoml_serve_refuses_a_tampered_artifact_in_a_few_lines(mnist_models, tmp_path):
    import shutil

    model = tmp_path / "torch-mlp"
    shutil.copytree(mnist_models / "torch-mlp", model)
    with open(model / "model.onnx", "ab") as f:
        f.write(b"\0")
    out = subprocess.run(bentoml_serve_cmd(free_port(), {"model": model, "format": "onnx"}), cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    print(f"\nbentoml serve, tampered artifact: exit {out.returncode}, stderr:\n{out.stderr}")
    assert out.returncode == 2
    assert "does not match the manifest" in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) <= 3

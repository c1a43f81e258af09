"""The prediction service over real HTTP: four real servers (one per runtime), started the three ways a
user can (`deploykit serve` with a config file, `bentoml serve --arg`, `bentoml serve` with DEPLOYKIT_*
variables), on free loopback ports, in parallel, once for this module.

| runtime     | model            | format      | started by                                   |
|-------------|------------------|-------------|----------------------------------------------|
| onnxruntime | torch-mlp        | onnx        | deploykit serve --config (small limits)      |
| litert      | keras-sequential | tflite-fp32 | bentoml serve --arg (BentoML's HTTP metrics on) |
| tensorflow  | keras-sequential | savedmodel  | bentoml serve --arg (4 s warm-up, small queue) |
| torch       | torch-mlp        | torchscript | bentoml serve, DEPLOYKIT_* environment       |
"""

from __future__ import annotations

import io
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from PIL import Image

from conftest import free_port
from deploykit.runtimes import load_predictor
from test_serving_support import ROOT, bentoml_serve_cmd, start, stop, wait_all_ready

LIMITS = {"max_images": 8, "max_body_bytes": 200_000}
SERVERS = {
    "onnxruntime": ("torch-mlp", "onnx"),
    "litert": ("keras-sequential", "tflite-fp32"),
    "tensorflow": ("keras-sequential", "savedmodel"),
    "torch": ("torch-mlp", "torchscript"),
}
N = 24  # test digits per request


@pytest.fixture(scope="module")
def servers(mnist_models, tmp_path_factory):
    logs = tmp_path_factory.mktemp("serving-logs")
    ports = {name: free_port() for name in SERVERS}
    started = []
    try:
        config = logs / "serve.yaml"
        config.write_text("".join(f"{k}: {v}\n" for k, v in LIMITS.items()))
        model, fmt = SERVERS["onnxruntime"]
        started.append(start("onnxruntime", [sys.executable, "-m", "deploykit", "serve", str(mnist_models / model),
                                             "--format", fmt, "--port", str(ports["onnxruntime"]), "--config", str(config)],
                             ports["onnxruntime"], mnist_models / model, fmt, logs))
        for name in ("litert", "tensorflow"):
            model, fmt = SERVERS[name]
            extra = ({"warmup_s": 4, "max_queue": 32, "max_concurrency": 6} if name == "tensorflow"
                     else {"bentoml_http_metrics": "true"})
            # A BENTOML_HOME of its own: `bentoml serve` keeps metrics in one folder per BENTOML_HOME and
            # empties it on start, so servers started beside it would delete its metrics files.
            home = {"BENTOML_HOME": str(logs / f"bentoml-{name}")} if name == "litert" else None
            started.append(start(name, bentoml_serve_cmd(ports[name], {"model": mnist_models / model, "format": fmt, **extra}),
                                 ports[name], mnist_models / model, fmt, logs, env=home))
        model, fmt = SERVERS["torch"]
        started.append(start("torch", bentoml_serve_cmd(ports["torch"], {}), ports["torch"], mnist_models / model, fmt, logs,
                             env={"DEPLOYKIT_MODEL": str(mnist_models / model), "DEPLOYKIT_FORMAT": fmt}))
        wait_all_ready(started, watch=("tensorflow",))
        yield {s.name: s for s in started}
    finally:
        for s in started:
            stop(s)


@pytest.fixture(scope="module")
def client():
    with httpx.Client(timeout=60) as c:
        yield c


def _reference(server, n=N):
    ref = np.load(server.model_dir / "reference.npz")
    return ref["x"][:n]


def _good(server, client) -> None:
    """The server still answers a well-formed request."""
    r = client.post(server.url + "/predict", json={"inputs": [[0.0] * 784]})
    assert r.status_code == 200, r.text


# -- predictions ------------------------------------------------------------------------------------
@pytest.mark.parametrize("runtime", list(SERVERS))
def test_http_predictions_equal_the_runtime_offline_predictions(servers, client, runtime):
    server = servers[runtime]
    x = _reference(server, LIMITS["max_images"] if runtime == "onnxruntime" else N).astype(np.float32) / 255.0
    r = client.post(server.url + "/predict", json={"inputs": x.tolist()})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["format"], body["runtime"]) == (server.format, runtime)
    assert body["model"] == SERVERS[runtime][0]
    http = np.array([p["probabilities"] for p in body["predictions"]], np.float32)
    with load_predictor(server.model_dir, server.format, threads=1) as predictor:
        offline = predictor.predict(x)
    np.testing.assert_allclose(http, offline, rtol=0, atol=1e-6)
    assert [p["label"] for p in body["predictions"]] == offline.argmax(1).tolist()
    assert 0 <= int(r.headers["x-inference-time-us"]) <= int(r.headers["x-server-time-us"])
    assert 1 <= int(r.headers["x-batch-size"])  # the batch this request rode in: its own images, or more


def test_flat_and_nested_images_give_the_same_answer(servers, client):
    server = servers["litert"]
    x = _reference(server, 4).astype(np.float32) / 255.0
    nested = client.post(server.url + "/predict", json={"inputs": x.tolist()}).json()
    flat = client.post(server.url + "/predict", json={"inputs": x.reshape(4, 784).tolist()}).json()
    assert nested == flat


def _png(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _files(blobs, mime):
    return [("image", (f"digit{i}", b, mime)) for i, b in enumerate(blobs)]


def test_png_and_jpeg_uploads_of_test_digits_classify_as_offline(servers, client):
    server = servers["onnxruntime"]
    digits = _reference(server, LIMITS["max_images"])
    with load_predictor(server.model_dir, server.format, threads=1) as predictor:
        offline = predictor.predict(digits.astype(np.float32) / 255.0)
        png = client.post(server.url + "/predict_image", files=_files([_png(d) for d in digits], "image/png"))
        assert png.status_code == 200, png.text
        got = np.array([p["probabilities"] for p in png.json()["predictions"]], np.float32)
        np.testing.assert_allclose(got, offline, rtol=0, atol=1e-6)  # PNG is lossless: the very same input

        jpegs = [_jpeg(d) for d in digits]
        decoded = np.stack([np.asarray(Image.open(io.BytesIO(j)).convert("L")) for j in jpegs]).astype(np.float32) / 255.0
        offline_jpeg = predictor.predict(decoded)
    jpg = client.post(server.url + "/predict_image", files=_files(jpegs, "image/jpeg"))
    assert jpg.status_code == 200, jpg.text
    got = np.array([p["probabilities"] for p in jpg.json()["predictions"]], np.float32)
    np.testing.assert_allclose(got, offline_jpeg, rtol=0, atol=1e-5)
    agree = np.mean(got.argmax(1) == offline.argmax(1))
    assert agree >= 0.75, f"JPEG artefacts changed {1 - agree:.0%} of the labels"


def test_dark_on_light_and_large_colour_images_are_normalised(servers, client):
    server = servers["onnxruntime"]
    digits = _reference(server, 6)
    original = client.post(server.url + "/predict_image", files=_files([_png(d) for d in digits], "image/png")).json()
    labels = [p["label"] for p in original["predictions"]]
    inverted = client.post(server.url + "/predict_image", files=_files([_png(255 - d) for d in digits], "image/png")).json()
    assert [p["label"] for p in inverted["predictions"]] == labels
    big = [np.stack([d, d, d // 2], -1).repeat(8, 0).repeat(8, 1) for d in digits]  # 224×224 RGB
    resized = client.post(server.url + "/predict_image", files=_files([_png(b) for b in big], "image/png")).json()
    assert np.mean(np.array([p["label"] for p in resized["predictions"]]) == labels) >= 0.5
    raw = client.post(server.url + "/predict_image", content=_png(digits[0]), headers={"content-type": "image/png"})
    assert raw.json()["predictions"][0] == original["predictions"][0]
    never = client.post(server.url + "/predict_image?invert=never", files=_files([_png(255 - digits[0])], "image/png"))
    assert never.status_code == 200


# -- bad input: status, a small JSON body naming the problem, and the server goes on ----------------
def _flat(n=1, value=0.0):
    return {"inputs": [[value] * 784 for _ in range(n)]}


BAD_REQUESTS = [
    ("wrong shape", "/predict", dict(json={"inputs": [[[0.0] * 28] * 27]}), 422, "invalid_shape", "27 rows"),
    ("wrong length", "/predict", dict(json={"inputs": [[0.0] * 783]}), 422, "invalid_shape", "783 values"),
    ("non-numeric", "/predict", dict(json={"inputs": [[0.5] * 783 + ["x"]]}), 422, "invalid_input", "str"),
    ("NaN", "/predict", dict(content=b'{"inputs": [[' + b"0.5," * 783 + b"NaN]]}",
                             headers={"content-type": "application/json"}), 400, "invalid_json", "malformed"),
    ("infinity", "/predict", dict(content=b'{"inputs": [[' + b"0.5," * 783 + b"Infinity]]}",
                                  headers={"content-type": "application/json"}), 400, "invalid_json", "malformed"),
    ("above 1", "/predict", dict(json={"inputs": [[0.5] * 783 + [1.5]]}), 422, "invalid_input", "[0, 1]"),
    ("raw pixels", "/predict", dict(json=_flat(1, 255.0)), 422, "invalid_input", "pixel/255"),
    ("below 0", "/predict", dict(json={"inputs": [[-0.5] + [0.5] * 783]}), 422, "invalid_input", "[0, 1]"),
    ("empty batch", "/predict", dict(json={"inputs": []}), 422, "empty_batch", "no images"),
    ("batch over the limit", "/predict", dict(json=_flat(9)), 413, "batch_too_large", "limit is 8"),
    ("body over the limit", "/predict", dict(content=b" " * 250_000, headers={"content-type": "application/json"}),
     413, "body_too_large", "200000"),
    ("not JSON", "/predict", dict(content=b"{inputs", headers={"content-type": "application/json"}), 400,
     "invalid_json", "malformed"),
    ("no inputs", "/predict", dict(json={"images": []}), 422, "invalid_input", "images"),
    ("wrong content type", "/predict", dict(content=b"inputs=1", headers={"content-type": "text/plain"}), 415,
     "unsupported_media_type", "application/json"),
    ("JSON to the image route", "/predict_image", dict(json=_flat()), 415, "unsupported_media_type", "multipart"),
    ("unsupported image", "/predict_image", dict(files=[("image", ("d.gif", b"GIF89a" + b"\0" * 64, "image/gif"))]),
     415, "unsupported_image", "PNG or JPEG"),
    ("corrupt image", "/predict_image", dict(files=[("image", ("d.png", _png(np.zeros((28, 28), np.uint8))[:50], "image/png"))]),
     422, "corrupt_image", "PNG"),
    ("no file", "/predict_image", dict(files=[("note", (None, "hello"))]), 422, "empty_batch", "no file"),
    ("too many files", "/predict_image", dict(files=[("image", (f"{i}.png", _png(np.zeros((28, 28), np.uint8)), "image/png"))
                                                   for i in range(9)]), 413, "batch_too_large", "limit is 8"),
    ("bad invert", "/predict_image?invert=maybe", dict(files=[("image", ("d.png", _png(np.zeros((28, 28), np.uint8)), "image/png"))]),
     422, "invalid_parameter", "invert"),
]


@pytest.mark.parametrize("case, route, kwargs, status, code, words", BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS])
def test_bad_input_is_a_small_4xx_naming_the_problem(servers, client, case, route, kwargs, status, code, words):
    server = servers["onnxruntime"]
    r = client.post(server.url + route, **kwargs)
    assert r.status_code == status, r.text
    assert len(r.content) <= 300, f"{len(r.content)} bytes: {r.text[:200]}"
    assert r.headers["content-type"].startswith("application/json")
    error = r.json()["error"]
    assert error["code"] == code and words in error["message"], error
    _good(server, client)


def test_overload_is_503_with_retry_after_and_the_server_recovers(servers, client):
    server = servers["tensorflow"]  # SavedModel calls take milliseconds; its queue admits 32 images
    body = {"inputs": (_reference(server, 16).astype(np.float32) / 255.0).tolist()}

    def post(_):
        with httpx.Client(timeout=60) as c:
            return c.post(server.url + "/predict", json=body)

    with ThreadPoolExecutor(24) as pool:
        answers = list(pool.map(post, range(24)))
    statuses = sorted({r.status_code for r in answers})
    assert set(statuses) <= {200, 503}, statuses
    refused = [r for r in answers if r.status_code == 503]
    assert refused, "24 concurrent requests of 16 images never overflowed a queue of 32 images"
    assert all(r.headers.get("retry-after") == "1" and r.json()["error"]["code"] == "overloaded" for r in refused)
    assert all(("queue full" in m or "requests in progress" in m) for m in (r.json()["error"]["message"] for r in refused))
    assert all(len(r.content) <= 300 for r in refused)
    assert any(r.status_code == 200 for r in answers)
    ok = client.post(server.url + "/predict", json=body)  # load gone: served again
    assert ok.status_code == 200


def test_readiness_was_false_until_the_model_was_loaded_and_warm(servers, client):
    early = servers["tensorflow"].early
    assert early, "liveness never answered before readiness (the 4 s warm-up should have shown it)"
    assert early["readyz"] == 503
    assert early["predict"] == 503 and early["retry_after"] == "1"
    assert early["body"]["error"]["code"] == "not_ready"
    assert client.get(servers["tensorflow"].url + "/readyz").status_code == 200
    info = client.get(servers["tensorflow"].url + "/info").json()
    assert info["ready"] and info["stage"] == "ready" and info["load_s"] > 0


# -- observability ----------------------------------------------------------------------------------
def test_metrics_openapi_info_and_the_chosen_format_printed(servers, client):
    server = servers["onnxruntime"]
    _good(server, client)
    assert client.post(server.url + "/predict", json={"inputs": [[0.0] * 3]}).status_code == 422
    metrics = client.get(server.url + "/metrics").text
    assert 'deploykit_request_duration_seconds_count{endpoint="predict",format="onnx",status="200"}' in metrics
    assert 'deploykit_request_duration_seconds_count{endpoint="predict",format="onnx",status="422"}' in metrics
    assert 'deploykit_request_duration_seconds_bucket{endpoint="predict",format="onnx",le="0.001",status="200"}' in metrics
    assert "deploykit_batch_images_bucket" in metrics
    assert "bentoml_service_request_total" not in metrics  # BentoML's own are off by default
    spec = client.get(server.url + "/docs.json").json()
    assert {"/predict", "/predict_image", "/livez", "/readyz", "/metrics"} <= set(spec["paths"])
    assert "PredictRequest" in spec["components"]["schemas"]
    info = client.get(server.url + "/info").json()
    assert info["limits"]["max_images"] == 8 and info["format"] == "onnx" and info["inline"] is True
    assert "deploykit: serving torch-mlp as onnx via onnxruntime (asked for)" in server.output()
    assert "sha256 verified" in server.output()


def test_bentomls_own_http_metrics_when_asked_for(servers, client):
    server = servers["litert"]  # started with bentoml_http_metrics=true
    _good(server, client)
    metrics = client.get(server.url + "/metrics").text
    assert 'bentoml_service_request_total{endpoint="/predict"' in metrics
    assert 'deploykit_request_duration_seconds_count{endpoint="predict",format="tflite-fp32",status="200"}' in metrics


# -- refusing a tampered artifact ---------------------------------------------------------------------
@pytest.fixture
def tampered(mnist_models, tmp_path):
    import shutil

    model = tmp_path / "torch-mlp"
    shutil.copytree(mnist_models / "torch-mlp", model)
    with open(model / "model.onnx", "ab") as f:
        f.write(b"\0")
    return model


def test_bentoml_serve_refuses_a_tampered_artifact(tampered):
    out = subprocess.run(bentoml_serve_cmd(free_port(), {"model": tampered, "format": "onnx"}), cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "does not match the manifest" in out.stdout + out.stderr


def test_deploykit_serve_refuses_a_tampered_artifact_in_one_line(tampered):
    out = subprocess.run([sys.executable, "-m", "deploykit", "serve", str(tampered), "--format", "onnx", "--port",
                          str(free_port())],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "does not match the manifest" in lines[0] and "Traceback" not in out.stderr


def test_deploykit_serve_says_when_the_device_is_unavailable(mnist_models):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this machine has a CUDA provider: nothing is unavailable to report")
    out = subprocess.run([sys.executable, "-m", "deploykit", "serve", str(mnist_models / "torch-mlp"), "--format", "onnx",
                          "--device", "cuda", "--port", str(free_port())], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "cannot serve onnx" in out.stderr and "CUDAExecutionProvider" in out.stderr

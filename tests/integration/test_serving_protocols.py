"""The standard protocols against a real server (`bentoml serve`, ONNX MLP on a loopback port), each spoken
by its real client: Triton's `tritonclient.http` (Open Inference Protocol / KServe v2, JSON and binary
tensors), BentoML's own `SyncHTTPClient` / `AsyncHTTPClient`, curl for KServe v1 / TF Serving bodies.
Predictions must equal the offline predictor's; bad tensors get short 4xx errors naming the problem."""

from __future__ import annotations

import asyncio
import io
import json
import shutil
import subprocess

import httpx
import numpy as np
import pytest
from PIL import Image

from conftest import free_port
from deploykit.runtimes import load_predictor
from test_serving_support import bentoml_serve_cmd, start, stop, wait_all_ready

tritonclient_http = pytest.importorskip("tritonclient.http")
from tritonclient.utils import InferenceServerException  # noqa: E402

MODEL = "torch-mlp"
FORMAT = "onnx"


@pytest.fixture(scope="module")
def server(mnist_models, tmp_path_factory):
    logs = tmp_path_factory.mktemp("protocol-logs")
    port = free_port()
    s = start("protocols", bentoml_serve_cmd(port, {"model": mnist_models / MODEL, "format": FORMAT, "max_images": 16}),
              port, mnist_models / MODEL, FORMAT, logs)
    try:
        wait_all_ready([s])
        yield s
    finally:
        stop(s)


@pytest.fixture(scope="module")
def triton(server):
    client = tritonclient_http.InferenceServerClient(server.url.removeprefix("http://"))
    yield client
    client.close()


@pytest.fixture(scope="module")
def digits(server):
    return np.load(server.model_dir / "reference.npz")["x"][:12].astype(np.float32) / 255.0


@pytest.fixture(scope="module")
def offline(server, digits):
    with load_predictor(server.model_dir, FORMAT, threads=1) as predictor:
        return predictor.predict(digits)


def _infer_input(x: np.ndarray, binary: bool, datatype: str = "FP32", name: str = "input"):
    tensor = tritonclient_http.InferInput(name, list(x.shape), datatype)
    tensor.set_data_from_numpy(x, binary_data=binary)
    return tensor


# -- Open Inference Protocol with tritonclient -------------------------------------------------------
def test_health_and_metadata_come_from_the_manifest(triton, server):
    assert triton.is_server_live() and triton.is_server_ready()
    assert triton.is_model_ready(MODEL) and triton.is_model_ready(MODEL, FORMAT)
    assert not triton.is_model_ready("no-such-model")
    meta = triton.get_model_metadata(MODEL)
    manifest = json.loads((server.model_dir / "manifest.json").read_text())
    assert meta["name"] == MODEL and meta["versions"] == [FORMAT] and meta["platform"] == "onnxruntime"
    assert meta["inputs"] == [{"name": manifest["input"]["name"], "datatype": "FP32",
                               "shape": [-1, *manifest["input"]["shape"][1:]]}]
    assert {o["name"]: o["shape"] for o in meta["outputs"]} == {"probabilities": [-1, 10], "label": [-1]}
    assert triton.get_model_metadata(MODEL, FORMAT) == meta
    assert triton.get_server_metadata()["extensions"] == ["binary_tensor_data"]


@pytest.mark.parametrize("binary", [True, False], ids=["binary-tensors", "json-tensors"])
def test_tritonclient_infer_equals_the_offline_predictor(triton, digits, offline, binary):
    result = triton.infer(MODEL, [_infer_input(digits, binary)],
                          outputs=[tritonclient_http.InferRequestedOutput("probabilities", binary_data=binary),
                                   tritonclient_http.InferRequestedOutput("label", binary_data=binary)])
    np.testing.assert_allclose(result.as_numpy("probabilities"), offline, rtol=0, atol=1e-6)
    assert result.as_numpy("label").tolist() == offline.argmax(1).tolist()
    assert result.get_response()["model_version"] == FORMAT


def test_tritonclient_defaults_and_uint8_pixels(triton, digits, offline):
    # No outputs named: tritonclient asks for every output in binary; UINT8 pixels are mapped by the
    # manifest's normalisation (pixel / 255), the same values as the FP32 digits.
    pixels = np.round(digits * 255).astype(np.uint8)
    result = triton.infer(MODEL, [_infer_input(pixels, True, "UINT8")], model_version=FORMAT, request_id="r1")
    np.testing.assert_allclose(result.as_numpy("probabilities"), offline, rtol=0, atol=1e-6)
    assert result.get_response()["id"] == "r1"


@pytest.mark.parametrize("make, words", [
    (lambda x: _infer_input(x[:, :27], True), "does not fit the model's input [-1, 28, 28]"),
    (lambda x: _infer_input(x, True, name="pixels"), "its input is 'input'"),
    (lambda x: _infer_input(x.astype(np.int32), True, "INT32"), "datatype 'INT32' is not accepted"),
    (lambda x: _infer_input(x * 255, False), "values must be in [0, 1]"),
    (lambda x: _infer_input(np.full_like(x, np.nan), True), "NaN"),
    (lambda x: _infer_input(np.zeros((17, 28, 28), np.float32), True), "17 images in one request; the limit is 16"),
], ids=["shape", "name", "datatype", "range", "nan", "batch"])
def test_bad_tensors_get_short_errors_naming_the_problem(triton, digits, make, words):
    with pytest.raises(InferenceServerException) as info:
        triton.infer(MODEL, [make(digits)])
    assert info.value.status() in ("400", "413") and words in info.value.message(), info.value


def test_unknown_model_or_version_is_404_json(server, triton, digits):
    with pytest.raises(InferenceServerException) as info:
        triton.infer("nope", [_infer_input(digits, True)])
    assert info.value.status() == "404" and "not served here" in info.value.message()
    r = httpx.get(server.url + f"/v2/models/{MODEL}/versions/tflite-int8")
    assert r.status_code == 404 and r.json()["code"] == "unknown_version" and len(r.content) < 300


def test_a_deadline_that_cannot_be_met_is_503_json(server, digits):
    # 1 µs of OIP timeout has passed long before the request reaches the model (the check is at the
    # queue, after the body is parsed), so this cannot succeed whatever the machine's load.
    body = {"inputs": [{"name": "input", "shape": [1, 28, 28], "datatype": "FP32", "data": digits[0].ravel().tolist()}],
            "parameters": {"timeout": 1}}
    r = httpx.post(server.url + f"/v2/models/{MODEL}/infer", json=body)
    assert r.status_code == 503 and r.json()["code"] == "deadline_exceeded" and r.headers["retry-after"] == "1"
    r = httpx.post(server.url + "/predict", json={"inputs": [digits[0].tolist()]}, headers={"X-Request-Timeout-Ms": "0.001"})
    assert r.status_code == 503 and r.json()["error"]["code"] == "deadline_exceeded"
    r = httpx.post(server.url + "/predict", json={"inputs": [digits[0].tolist()]}, headers={"X-Request-Timeout-Ms": "soon"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_header"
    # A generous deadline changes nothing.
    r = httpx.post(server.url + "/predict", json={"inputs": [digits[0].tolist()]}, headers={"X-Request-Timeout-Ms": "60000"})
    assert r.status_code == 200


# -- KServe v1 / TF Serving ---------------------------------------------------------------------------
def _curl(url: str, body: dict) -> tuple[int, dict]:
    out = subprocess.run(["curl", "-s", "-w", "\n%{http_code}", "-H", "Content-Type: application/json",
                          "--data-binary", "@-", url], input=json.dumps(body), capture_output=True, text=True,
                         timeout=60, check=True).stdout
    text, status = out.rsplit("\n", 1)
    return int(status), json.loads(text)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.parametrize("body", [
    lambda x: {"instances": x.tolist()},
    lambda x: {"instances": x.reshape(len(x), -1).tolist()},
    lambda x: {"inputs": x.tolist()},
    lambda x: {"inputs": {"input": x.tolist()}, "signature_name": "serving_default"},
], ids=["instances", "instances-flat", "inputs", "inputs-by-name"])
def test_v1_predict_with_curl_equals_the_offline_predictor(server, digits, offline, body):
    status, answer = _curl(server.url + f"/v1/models/{MODEL}:predict", body(digits))
    assert status == 200, answer
    np.testing.assert_allclose(np.array(answer["predictions"], np.float32), offline, rtol=0, atol=1e-6)


def test_v1_bad_bodies_are_400_with_the_v1_error_shape(server, digits):
    url = server.url + f"/v1/models/{MODEL}:predict"
    for body, words in [({"instances": [[0.0] * 10]}, "784"), ({}, "exactly one of"),
                        ({"instances": digits.tolist(), "inputs": digits.tolist()}, "exactly one of"),
                        ({"inputs": {"x": digits.tolist()}}, "'input'"), ({"instances": [[2.0] * 784]}, "[0, 1]")]:
        r = httpx.post(url, json=body)
        assert r.status_code == 400 and words in r.json()["error"] and len(r.content) < 400, (body, r.text)
    assert httpx.get(server.url + f"/v1/models/{MODEL}").json() == {"name": MODEL, "ready": True}
    assert httpx.post(server.url + "/v1/models/nope:predict", json={"instances": [[0.0] * 784]}).status_code == 404


# -- BentoML's own clients ---------------------------------------------------------------------------
def _png(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.round(a * 255).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_bentoml_clients_discover_and_call_predict_and_predict_image(server, digits, offline, tmp_path):
    import bentoml

    paths = []
    for i, d in enumerate(digits[:3]):
        paths.append(tmp_path / f"{i}.png")
        paths[-1].write_bytes(_png(d))
    with bentoml.SyncHTTPClient(server.url, timeout=60) as client:
        assert {"predict", "predict_image"} <= set(client.endpoints)
        answer = client.predict(inputs=digits.tolist())
        np.testing.assert_allclose([p["probabilities"] for p in answer["predictions"]], offline, rtol=0, atol=1e-6)
        images = client.predict_image(images=paths)
        assert [p["label"] for p in images["predictions"]] == offline[:3].argmax(1).tolist()

    async def call_async():
        async with bentoml.AsyncHTTPClient(server.url, timeout=60) as client:
            return await client.predict(inputs=digits[:2].tolist())

    answer = asyncio.run(call_async())
    assert [p["label"] for p in answer["predictions"]] == offline[:2].argmax(1).tolist()


def test_every_route_answers_json_and_wrong_methods_are_405(server):
    for path in ("/v2", "/v2/health/live", "/v2/health/ready", f"/v2/models/{MODEL}", f"/v2/models/{MODEL}/ready",
                 f"/v1/models/{MODEL}"):
        r = httpx.get(server.url + path)
        assert r.status_code == 200 and r.headers["content-type"] == "application/json", (path, r.text)
    r = httpx.get(server.url + f"/v2/models/{MODEL}/infer")
    assert r.status_code == 405 and r.json()["code"] == "method_not_allowed" and "POST" in r.headers["allow"]
    spec = httpx.get(server.url + "/docs.json").json()
    assert {"/v2/models/{name}/infer", "/v1/models/{name}:predict"} <= set(spec["paths"])


_DEPLOYKIT, _PROTOCOL = "deploykit", "protocol"


@pytest.mark.parametrize("method, path, status, family", [
    # deploykit's routes, BentoML's own routes, paths nothing serves
    ("GET", "/nowhere", 404, _DEPLOYKIT), ("GET", "/predict", 405, _DEPLOYKIT), ("GET", "/predict_image", 405, _DEPLOYKIT),
    ("POST", "/info", 405, _DEPLOYKIT), ("POST", "/livez", 405, _DEPLOYKIT), ("TRACE", "/metrics", 405, _DEPLOYKIT),
    ("GET", "/a%0Ab", 404, _DEPLOYKIT),  # a newline: BentoML's router answers it, the middleware makes it JSON
    # the standard protocols' routes: their clients read {"error": "message"}
    ("GET", "/v2/nowhere", 404, _PROTOCOL), ("GET", "/v2/models/a/b/c/d", 404, _PROTOCOL),
    ("GET", "/v2/models/nope", 404, _PROTOCOL), ("POST", "/v2", 405, _PROTOCOL), ("POST", "/v2/health/live", 405, _PROTOCOL),
    ("GET", f"/v2/models/{MODEL}/infer", 405, _PROTOCOL), ("GET", f"/v2/models/{MODEL}/versions/{FORMAT}/infer", 405, _PROTOCOL),
    ("GET", "/v2/a%0Ab", 404, _PROTOCOL), ("GET", "/v1/nowhere", 404, _PROTOCOL), ("GET", "/v1/models/nope", 404, _PROTOCOL),
    ("POST", f"/v1/models/{MODEL}", 405, _PROTOCOL), ("DELETE", f"/v1/models/{MODEL}", 405, _PROTOCOL),
    # GET of the predict path is the model-status route with the name "torch-mlp:predict": another model
    ("GET", f"/v1/models/{MODEL}:predict", 404, _PROTOCOL),
])
def test_every_404_and_405_has_its_route_familys_one_json_shape(server, method, path, status, family):
    r = httpx.request(method, server.url + path, timeout=10)
    assert r.status_code == status and r.headers["content-type"].startswith("application/json"), (r.status_code, r.text)
    assert len(r.content) < 300
    body = r.json()
    if family == _DEPLOYKIT:
        assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
        code = body["error"]["code"]
    else:
        assert set(body) == {"error", "code"} and isinstance(body["error"], str), body
        code = body["code"]
    assert code in ({"not_found", "unknown_model"} if status == 404 else {"method_not_allowed"}), body

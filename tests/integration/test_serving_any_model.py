"""Any model `deploykit export` wrote is served from its manifest's input spec: a user's 3×96×96 image model
(NCHW, five colour classes) and a 20-value tensor model, each exported to ONNX and served by `bentoml
serve` on a loopback port. Shapes are validated against the manifest; images are resized to the model's
H×W×C; predictions equal the offline predictor's."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from conftest import free_port
from deploykit.runtimes import load_predictor
from deploykit.serving.decode import decode_image
from deploykit.serving.model_input import ServedInput
from deploykit.manifest import ModelManifest
from deploykit.user_export import export_user_model
from test_serving_support import bentoml_serve_cmd, start, stop, wait_all_ready


class _ColourNet(nn.Module):
    """Classes from the mean colour (red, green, blue, yellow, dark), so different images get different answers."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 5)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[2, -1, -1], [-1, 2, -1], [-1, -1, 2], [1, 1, -2], [-1, -1, -1]]))
            self.fc.bias.copy_(torch.tensor([0, 0, 0, 0, 1.0]))

    def forward(self, x):
        return torch.softmax(self.fc(x.mean(dim=(2, 3))) * 10, dim=1)


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    root = tmp_path_factory.mktemp("any-model")
    torch.manual_seed(0)
    torch.jit.script(_ColourNet().eval()).save(str(root / "rgb96.pt"))
    torch.jit.script(nn.Sequential(nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 3)).eval()).save(str(root / "tabular.pt"))
    dirs = {}
    for name, shape in (("rgb96", [3, 96, 96]), ("tabular", [20])):
        _, dirs[name] = export_user_model(root / f"{name}.pt", formats="onnx", out=root / "models", input_shape=shape,
                                          isolate=False)
    started = []
    try:
        for name, model_dir in dirs.items():
            port = free_port()
            started.append(start(name, bentoml_serve_cmd(port, {"model": model_dir, "format": "onnx"}), port, model_dir,
                                 "onnx", root))
        wait_all_ready(started)
        yield {s.name: s for s in started}
    finally:
        for s in started:
            stop(s)


def _offline(server, x: np.ndarray) -> np.ndarray:
    with load_predictor(server.model_dir, "onnx", threads=1) as predictor:
        return predictor.predict(x)


def test_metadata_and_info_say_the_manifest_input(servers):
    rgb = httpx.get(servers["rgb96"].url + "/v2/models/rgb96").json()
    assert rgb["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 3, 96, 96]}]
    assert rgb["outputs"][0]["shape"] == [-1, 5]
    tab = httpx.get(servers["tabular"].url + "/v2/models/tabular").json()
    assert tab["inputs"][0]["shape"] == [-1, 20] and tab["outputs"][0]["shape"] == [-1, 3]
    info = httpx.get(servers["rgb96"].url + "/info").json()["input"]
    assert (info["shape"], info["layout"], info["image"]) == ([3, 96, 96], "NCHW", True)


def test_a_96x96x3_model_serves_json_tensors_and_refuses_other_shapes(servers):
    server = servers["rgb96"]
    x = np.random.default_rng(0).random((4, 3, 96, 96), dtype=np.float32)
    r = httpx.post(server.url + "/predict", json={"inputs": x.tolist()}, timeout=60)
    assert r.status_code == 200, r.text
    np.testing.assert_allclose([p["probabilities"] for p in r.json()["predictions"]], _offline(server, x), atol=1e-6)
    flat = httpx.post(server.url + "/predict", json={"inputs": x.reshape(4, -1).tolist()}, timeout=60).json()
    assert flat["predictions"] == r.json()["predictions"]
    bad = httpx.post(server.url + "/predict", json={"inputs": np.zeros((1, 28, 28)).tolist()})
    assert bad.status_code == 422 and "3×96×96 or 27648" in bad.json()["error"]["message"] and len(bad.content) < 300
    v2 = httpx.post(server.url + "/v2/models/rgb96/infer", json={"inputs": [
        {"name": "input", "shape": [1, 96, 96, 3], "datatype": "FP32", "data": [0.5] * 27648}]})
    assert v2.status_code == 400 and "[-1, 3, 96, 96]" in v2.json()["error"]


def test_images_are_resized_to_the_models_input(servers):
    server = servers["rgb96"]
    rng = np.random.default_rng(1)
    colours = [(250, 20, 20), (20, 250, 20), (20, 20, 250), (240, 240, 30)]
    pngs = []
    for c in colours:  # 400×300 photos of one colour plus noise
        a = np.clip(np.array(c)[None, None] + rng.normal(0, 10, (300, 400, 3)), 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, format="PNG")
        pngs.append(buf.getvalue())
    r = httpx.post(server.url + "/predict_image", files=[("image", (f"{i}.png", p, "image/png")) for i, p in enumerate(pngs)],
                   timeout=60)
    assert r.status_code == 200, r.text
    served = ServedInput.from_spec(ModelManifest.read(server.model_dir).input)
    decoded = np.stack([decode_image(p, max_pixels=10**7, served=served) for p in pngs])
    assert decoded.shape == (4, 3, 96, 96)
    offline = _offline(server, decoded)
    np.testing.assert_allclose([p["probabilities"] for p in r.json()["predictions"]], offline, atol=1e-6)
    assert [p["label"] for p in r.json()["predictions"]] == [0, 1, 2, 3]  # the colours are told apart


def test_a_tensor_model_serves_tensors_and_refuses_images(servers):
    server = servers["tabular"]
    x = np.random.default_rng(2).random((5, 20), dtype=np.float32)
    offline = _offline(server, x)
    r = httpx.post(server.url + "/predict", json={"inputs": x.tolist()})
    assert r.status_code == 200
    np.testing.assert_allclose([p["probabilities"] for p in r.json()["predictions"]], offline, atol=1e-6)
    v1 = httpx.post(server.url + "/v1/models/tabular:predict", json={"instances": x.tolist()}).json()
    np.testing.assert_allclose(v1["predictions"], offline, atol=1e-6)
    v2 = httpx.post(server.url + "/v2/models/tabular/infer", json={"inputs": [
        {"name": "input", "shape": [5, 20], "datatype": "FP32", "data": x.ravel().tolist()}]}).json()
    np.testing.assert_allclose(np.reshape(v2["outputs"][0]["data"], (5, 3)), offline, atol=1e-6)
    wrong = httpx.post(server.url + "/predict", json={"inputs": [[0.1] * 21]})
    assert wrong.status_code == 422 and "each input must be 20 numbers; input 0 has 21 values" in wrong.text
    png = httpx.post(server.url + "/predict_image", content=b"\x89PNG\r\n\x1a\n", headers={"content-type": "image/png"})
    assert png.status_code == 415 and png.json()["error"]["code"] == "not_an_image_model"

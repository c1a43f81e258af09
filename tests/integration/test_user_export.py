"""`export` on models deploykit never saw: TorchScript models scripted here, real runtimes, small and fast.

The crashing runtime below lives in this module: the validation worker imports it by name.
"""

import os
import stat
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from deploykit.console import artifact_table
from deploykit.export import EXPORTERS
from deploykit.export.onnx import OnnxExporter
from deploykit.manifest import ModelManifest
from deploykit.outputs import softmax
from deploykit.runtimes import RUNTIMES, load_artifact
from deploykit.runtimes.onnxruntime_rt import OnnxRuntime
from deploykit.user_export import FitOptions, export_user_model


class Net(nn.Module):
    def __init__(self, inner=(1, 28, 28), classes=10, probs=False, scale=1.0):
        super().__init__()
        self.fc = nn.Linear(int(np.prod(inner)), classes)
        self.probs, self.scale = probs, scale

    def forward(self, x):
        z = self.fc(x.flatten(1)) * self.scale
        return torch.softmax(z, 1) if self.probs else z


class Constant(nn.Module):
    def forward(self, x):
        return x.flatten(1)[:, :10] * 0 + 0.1


def script(model, path):
    torch.manual_seed(0)
    torch.jit.script(model.eval()).save(str(path))
    return path


@pytest.mark.parametrize("probs", [True, False], ids=["ends-in-softmax", "logits"])
def test_outputs_are_taken_as_the_model_gives_them(probs, tmp_path):
    torch.manual_seed(0)
    net = Net(probs=probs, scale=8.0)  # peaked rows: a second softmax would flatten them visibly
    path = script(net, tmp_path / "net.pt")
    manifest, model_dir = export_user_model(path, formats="onnx,torchscript", out=tmp_path / "out")
    assert manifest.output_kind == ("probs" if probs else "logits") and manifest.output_kind_source == "detected"
    x = np.random.default_rng(3).random((16, 1, 28, 28), dtype=np.float32)
    with torch.no_grad():
        raw = net(torch.from_numpy(x)).numpy()
    expected = raw if probs else softmax(raw)
    for entry in manifest.artifacts:
        assert entry.status == "passed", entry.error
        with load_artifact(model_dir, entry, manifest) as predictor:
            np.testing.assert_allclose(predictor.predict(x), expected, atol=1e-5)
        assert ("softmax appended" in entry.output.meaning) == (not probs)


def test_user_says_logits_for_outputs_that_look_like_probabilities(tmp_path):
    path = script(Net(probs=True), tmp_path / "net.pt")
    manifest, _ = export_user_model(path, formats="onnx", out=tmp_path / "out", outputs="logits")
    assert manifest.output_kind == "logits" and manifest.output_kind_source == "user"
    assert manifest.artifacts[0].status == "passed"


def test_onnx_int8_clears_its_bar_on_a_small_trained_model(tmp_path):
    from deploykit.data import load_dataset, normalize

    ds = load_dataset("mnist", allow_download=False)
    x, y = torch.from_numpy(normalize(ds.x_train)[:, None]), torch.from_numpy(ds.y_train.astype(np.int64))
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    for _ in range(3):
        for i in range(0, len(x), 64):
            opt.zero_grad()
            nn.functional.cross_entropy(net(x[i:i + 64]), y[i:i + 64]).backward()
            opt.step()
    path = script(net, tmp_path / "mlp.pt")
    manifest, _ = export_user_model(path, formats="onnx,onnx-int8", dataset="mnist", out=tmp_path / "out")
    assert manifest.output_kind == "logits"
    for entry in manifest.artifacts:
        assert entry.status == "passed", entry.error
        assert entry.accuracy > 0.8 and entry.parity.strength == "strong"
    assert manifest.artifact("onnx-int8").parity.top1_agreement >= 0.98


def test_constant_outputs_give_a_weak_parity_not_a_plain_pass(tmp_path):
    from rich.console import Console

    path = script(Constant(), tmp_path / "const.pt")
    manifest, _ = export_user_model(path, formats="onnx", out=tmp_path / "out", input_shape=[1, 28, 28])
    entry = manifest.artifacts[0]
    assert entry.status == "passed" and entry.parity.strength == "weak"
    assert "near-constant" in entry.parity.weak_reason
    con = Console(record=True, width=160)
    con.print(artifact_table([manifest]))
    assert "passed, parity weak" in con.export_text()


# -- one format crashing natively, another raising, while the others pass -----------------------------
class AbortingRuntime(OnnxRuntime):
    """onnxruntime that aborts the process (a native crash) when it loads anything."""

    name = "test-aborting"

    def open(self, path, input_spec, output_spec=None, device="cpu", threads=None):
        os.abort()


class CrashingOnnx(OnnxExporter):
    key = "onnx-crash"
    filename = "crash.onnx"
    runtime = "test-aborting"


class RaisingOnnx(OnnxExporter):
    key = "onnx-raise"
    filename = "raise.onnx"

    def export(self, ctx):
        raise RuntimeError("converter blew up\nwith a long traceback-like tail")


def test_a_native_crash_fails_one_format_and_the_others_are_listed(tmp_path, monkeypatch):
    monkeypatch.setitem(RUNTIMES, AbortingRuntime.name, __name__)
    monkeypatch.setitem(EXPORTERS, CrashingOnnx.key, CrashingOnnx)
    monkeypatch.setitem(EXPORTERS, RaisingOnnx.key, RaisingOnnx)
    path = script(Net(), tmp_path / "net.pt")
    manifest, model_dir = export_user_model(path, formats="onnx,onnx-crash,onnx-raise,torchscript",
                                            out=tmp_path / "out")
    status = {a.format: a.status for a in manifest.artifacts}
    assert status == {"onnx": "passed", "onnx-crash": "failed", "onnx-raise": "failed", "torchscript": "passed"}
    crash, raised = manifest.artifact("onnx-crash"), manifest.artifact("onnx-raise")
    assert "crashed" in crash.error and "SIGABRT" in crash.error and "\n" not in crash.error
    assert raised.error == "onnx-raise: export raised RuntimeError: converter blew up"
    assert ModelManifest.read(model_dir).artifact("torchscript").status == "passed"


def test_re_export_keeps_the_rest_and_detects_stale_files(tmp_path):
    path = script(Net(), tmp_path / "net.pt")
    out = tmp_path / "out"
    export_user_model(path, formats="onnx,torchscript", out=out)
    manifest, model_dir = export_user_model(path, formats="onnx", out=out)
    assert {a.format: a.status for a in manifest.artifacts} == {"onnx": "passed", "torchscript": "passed"}

    (model_dir / "model.torchscript.pt").write_bytes(b"tampered")
    manifest, _ = export_user_model(path, formats="onnx", out=out)
    ts = manifest.artifact("torchscript")
    assert ts.status == "exported" and ts.error == "stale: file changed since it was proven"

    script(Net(classes=10, scale=2.0), path)  # another model under the same name
    torch.manual_seed(1)
    manifest, _ = export_user_model(path, formats="torchscript", out=out)
    assert manifest.artifact("torchscript").status == "passed"
    assert manifest.artifact("onnx").error.startswith("stale: exported from a different model")

    manifest, _ = export_user_model(path, formats="onnx", out=out, clean=True)
    assert [a.format for a in manifest.artifacts] == ["onnx"]
    assert not (model_dir / "model.torchscript.pt").exists()


def test_files_are_readable_and_export_lands_in_the_bentoml_store(tmp_path):
    old = os.umask(0o022)
    try:
        path = script(Net(), tmp_path / "net.pt")
        manifest, model_dir = export_user_model(path, formats="onnx,torchscript", out=tmp_path / "out",
                                                name="store-me", store=True)
    finally:
        os.umask(old)
    listing = subprocess.run([sys.executable, "-m", "bentoml", "models", "list"], capture_output=True, text=True,
                             timeout=120)
    assert listing.returncode == 0 and "user-store-me" in listing.stdout, listing.stderr[-500:]
    assert manifest.bentoml_tag.startswith("user-store-me:")
    import bentoml

    stored = bentoml.models.get(manifest.bentoml_tag).path
    for folder in (model_dir, stored):
        for root, dirs, files in os.walk(folder):
            assert stat.S_IMODE(os.stat(root).st_mode) == 0o755, root
            for f in files:
                assert stat.S_IMODE(os.stat(os.path.join(root, f)).st_mode) == 0o644, (root, f)
    assert (tmp_path / "out" / "user" / "store-me" / "model.torchscript.pt").exists()


def test_a_user_image_folder_gives_the_directly_computed_accuracy(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    images, labels = [], []
    for label, name in enumerate(["circle", "square", "triangle"]):
        (root / name).mkdir(parents=True)
        for i in range(12):
            img = rng.integers(0, 256, (6, 6), dtype=np.uint8)
            Image.fromarray(img).save(root / name / f"{i:02d}.png")
            images.append(img)
            labels.append(label)
    torch.manual_seed(0)
    net = Net(inner=(1, 8, 8), classes=3)
    path = script(net, tmp_path / "shapes.pt")
    manifest, _ = export_user_model(path, formats="onnx", out=tmp_path / "out", eval_data=root, input_shape=[1, 8, 8],
                                    fit=FitOptions(pad=True))
    x = np.pad(np.stack(images).astype(np.float32) / 255, ((0, 0), (1, 1), (1, 1)))[:, None]
    with torch.no_grad():
        direct = float((net(torch.from_numpy(x)).numpy().argmax(1) == np.array(labels)).mean())
    entry = manifest.artifacts[0]
    assert entry.status == "passed", entry.error
    assert entry.accuracy == pytest.approx(direct) and entry.test_samples == 36
    assert manifest.classes == ["circle", "square", "triangle"]
    assert manifest.dataset.transform == "6×6 → 8×8 by zero padding (centred)"


def test_mnist_padded_to_a_32x32_model(tmp_path):
    path = script(Net(inner=(1, 32, 32)), tmp_path / "lenet.pt")
    manifest, _ = export_user_model(path, formats="onnx", dataset="mnist", out=tmp_path / "out",
                                    input_shape=[1, 32, 32], fit=FitOptions(pad=True))
    assert manifest.dataset.name == "mnist" and manifest.dataset.transform == "28×28 → 32×32 by zero padding (centred)"
    assert manifest.artifacts[0].status == "passed" and manifest.artifacts[0].accuracy is not None


def test_without_the_onnx2tf_environment_tflite_fp32_fails_with_the_advice_and_the_rest_exports(tmp_path, monkeypatch):
    monkeypatch.setenv("DEPLOYKIT_RUNTIMES", str(tmp_path / "no-runtimes"))  # nothing built there
    path = script(Net(), tmp_path / "net.pt")
    manifest, model_dir = export_user_model(path, formats="tflite-fp32,onnx", out=tmp_path / "out")
    tfl, onnx = manifest.artifact("tflite-fp32"), manifest.artifact("onnx")
    assert tfl.status == "failed" and "deploykit formats --prepare" in tfl.error and "onnx2tf" in tfl.error
    assert not (model_dir / "model_fp32.tflite").exists()
    assert onnx.status == "passed", onnx.error


class ConvPool(nn.Module):
    """Channels mixed by a convolution, then pooled away: no flatten of an NCHW tensor (onnx2tf 1.29.24
    flattens a 3-channel input in NHWC order: a Linear on x.flatten(1) converted to max |Δp| 0.038
    here, which validation fails)."""

    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 4, 3), nn.Linear(4, 10)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


# slow: ~35 s under load, onnx2tf converting in its own environment (TensorFlow's import in the child)
@pytest.mark.slow
def test_a_three_channel_torch_model_keeps_its_nchw_input_in_tflite(tmp_path):
    torch.manual_seed(0)
    path = script(ConvPool(), tmp_path / "net.pt")
    manifest, model_dir = export_user_model(path, formats="tflite-fp32", out=tmp_path / "out", input_shape=[3, 8, 8])
    entry = manifest.artifact("tflite-fp32")
    assert entry.status == "passed", entry.error
    assert (entry.input.layout, entry.input.shape) == ("NCHW", [None, 3, 8, 8])  # channels not moved: same feed
    assert entry.parity.max_abs_diff <= 1e-4 and entry.tool_versions["onnx2tf"] == "1.29.24"

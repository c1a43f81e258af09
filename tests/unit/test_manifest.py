import json

import pytest

from deploykit.errors import ChecksumMismatch, ManifestError, UsageError
from deploykit.manifest import (ArtifactEntry, InputSpec, ModelManifest, atomic_write_text, find_manifests,
                                path_bytes, sha256_file)


def _manifest(**kw) -> ModelManifest:
    return ModelManifest(model="m", framework="keras", architecture="mlp",
                         input=InputSpec(name="input", shape=[None, 28, 28], layout="NHW"), **kw)


def _entry(fmt="onnx", path="model.onnx", sha="0" * 64, status="passed") -> ArtifactEntry:
    return ArtifactEntry(format=fmt, path=path, bytes=3, sha256=sha, runtime="onnxruntime",
                         input=InputSpec(name="x", shape=[None, 28, 28], layout="NHW"), status=status)


def test_round_trip_and_lookup(tmp_path):
    m = _manifest(artifacts=[_entry(), _entry("tflite-fp32", "model.tflite", status="failed")])
    m.write(tmp_path)
    back = ModelManifest.read(tmp_path)
    assert back == m
    assert back.artifact("onnx").path == "model.onnx"
    assert [a.format for a in back.passed] == ["onnx"]
    with pytest.raises(UsageError, match="known: onnx, tflite-fp32"):
        back.artifact("savedmodel")


def test_upsert_replaces_same_format():
    m = _manifest(artifacts=[_entry(sha="1" * 64)])
    m.upsert(_entry(sha="2" * 64))
    assert [a.sha256[0] for a in m.artifacts] == ["2"]


def test_read_errors_name_the_problem(tmp_path):
    with pytest.raises(ManifestError, match="no manifest at"):
        ModelManifest.read(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"model": "m"}))
    with pytest.raises(ManifestError, match="invalid manifest at framework"):
        ModelManifest.read(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ManifestError, match="invalid manifest|unreadable"):
        ModelManifest.read(tmp_path)


def test_verify_checks_sha256_of_files_and_folders(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"abc")
    saved = tmp_path / "saved"
    (saved / "variables").mkdir(parents=True)
    (saved / "saved_model.pb").write_bytes(b"pb")
    (saved / "variables" / "v").write_bytes(b"vv")
    m = _manifest(artifacts=[_entry(sha=sha256_file(tmp_path / "model.onnx")),
                             _entry("savedmodel", "saved", sha=sha256_file(saved))])
    assert m.verify(tmp_path, m.artifact("onnx")) == tmp_path / "model.onnx"
    assert m.verify(tmp_path, m.artifact("savedmodel")) == saved
    assert path_bytes(saved) == 4
    (saved / "variables" / "v").write_bytes(b"vX")
    with pytest.raises(ChecksumMismatch, match="refusing to load"):
        m.verify(tmp_path, m.artifact("savedmodel"))
    (tmp_path / "model.onnx").unlink()
    with pytest.raises(ManifestError, match="missing"):
        m.verify(tmp_path, m.artifact("onnx"))


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "f.json"
    atomic_write_text(target, "old")
    with pytest.raises(TypeError):
        atomic_write_text(target, 123)  # not text: fails while writing the temp file
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_find_manifests(tmp_path):
    for name in ("a", "b"):
        _manifest().write(tmp_path / "ds" / name)
    assert [p.name for p in find_manifests([tmp_path])] == ["a", "b"]
    assert find_manifests([tmp_path / "ds" / "a"]) == [tmp_path / "ds" / "a"]
    with pytest.raises(ManifestError):
        find_manifests([tmp_path / "nope"])

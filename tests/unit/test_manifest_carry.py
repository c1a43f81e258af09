from deploykit.manifest import (ArtifactEntry, InputSpec, ModelManifest, SourceInfo, carry_over_entries,
                                remove_previous, sha256_file)

SPEC = InputSpec(name="input", shape=[None, 4], layout="NC")


def _entry(model_dir, fmt, content: bytes, status="passed"):
    path = model_dir / f"{fmt}.bin"
    path.write_bytes(content)
    return ArtifactEntry(format=fmt, path=path.name, bytes=len(content), sha256=sha256_file(path),
                         runtime="onnxruntime", input=SPEC, status=status)


def _manifest(source="aaa", artifacts=()):
    return ModelManifest(model="m", framework="torch", architecture="custom", input=SPEC,
                         source=SourceInfo(path="/m.pt", sha256=source), artifacts=list(artifacts))


def test_entries_are_kept_reverified_and_stale_ones_marked(tmp_path):
    old = _manifest(artifacts=[_entry(tmp_path, f, f.encode()) for f in ("onnx", "torchscript", "onnx-int8", "x")])
    old.write(tmp_path)
    (tmp_path / "torchscript.bin").write_bytes(b"changed")
    (tmp_path / "onnx-int8.bin").unlink()
    new = _manifest(artifacts=[_entry(tmp_path, "x", b"new x")])
    assert carry_over_entries(new, tmp_path) == ["onnx", "torchscript", "onnx-int8"]
    got = {a.format: a for a in new.artifacts}
    assert got["onnx"].status == "passed" and got["onnx"].error is None
    assert got["torchscript"].status == "exported" and got["torchscript"].error == "stale: file changed since it was proven"
    assert got["onnx-int8"].error == "stale: file missing since it was proven"
    assert got["x"].sha256 == sha256_file(tmp_path / "x.bin")  # this run's entry wins


def test_another_source_model_makes_every_kept_entry_stale(tmp_path):
    _manifest(artifacts=[_entry(tmp_path, "onnx", b"o")]).write(tmp_path)
    new = _manifest(source="bbb")
    carry_over_entries(new, tmp_path)
    assert new.artifacts[0].status == "exported" and "different model" in new.artifacts[0].error
    retrained = _manifest()  # train-export passes same_source=False: a new training run
    carry_over_entries(retrained, tmp_path, same_source=False)
    assert retrained.artifacts[0].error.startswith("stale: exported from a different model")


def test_upsert_replaces_in_place(tmp_path):
    m = _manifest(artifacts=[_entry(tmp_path, f, b"1") for f in ("a", "b", "c")])
    m.upsert(_entry(tmp_path, "b", b"2", status="failed"))
    assert [a.format for a in m.artifacts] == ["a", "b", "c"] and m.artifact("b").status == "failed"


def test_remove_previous_deletes_what_the_manifest_named_only(tmp_path):
    _manifest(artifacts=[_entry(tmp_path, "onnx", b"o")]).write(tmp_path)
    (tmp_path / "mine.txt").write_text("keep")
    assert sorted(remove_previous(tmp_path)) == ["manifest.json", "onnx.bin"]
    assert [p.name for p in tmp_path.iterdir()] == ["mine.txt"]
    assert carry_over_entries(_manifest(), tmp_path) == []  # nothing left to carry

"""What `deploykit report` accepts, told apart by content, and the one-line errors for anything else."""

import json
import shutil
from pathlib import Path

import pytest

from deploykit.errors import ManifestError
from deploykit.report.inputs import load_baseline, load_inputs, read_any
from deploykit.results import ResultsFile, read_results

FIXTURES = Path(__file__).parents[1] / "fixtures" / "results"
RESULT_FIXTURES = sorted(FIXTURES.glob("*.json"))


def test_fixtures_are_schema_valid_and_cover_every_kind():
    kinds = set()
    for path in RESULT_FIXTURES:
        results = read_results(path)  # the one schema's own reader
        assert ResultsFile.model_validate_json(results.model_dump_json()) == results
        kinds.add(results.kind)
    assert kinds == {"bench", "loadtest", "edge-bench", "edge-check"}


def test_each_kind_of_input_is_recognised(tmp_path):
    models = FIXTURES / "models" / "mnist"
    assert read_any(FIXTURES / "bench-cpu.json")[0] == "results"
    assert read_any(models / "train-export.json")[0] == "train-export"
    assert read_any(models / "torch-mlp" / "manifest.json") == ("manifest", models / "torch-mlp")


def test_a_moved_train_export_finds_its_manifests_beside_it(tmp_path):
    # The run wrote absolute paths under /home/ml/work; the folder now lives elsewhere.
    inputs = load_inputs([FIXTURES / "models" / "mnist" / "train-export.json"])
    (run,) = inputs.train_runs
    assert run.dataset == "mnist" and run.missing == []
    assert sorted(m.model for _d, m in inputs.manifests) == [
        "keras-cnn", "keras-functional", "keras-sequential", "keras-subclass", "torch-cnn", "torch-mlp"]
    assert run.stages["data"] > 0 and any(k.startswith("export:torch-mlp:") for k in run.stages)


def test_train_export_with_manifests_gone_says_so(tmp_path):
    data = json.loads((FIXTURES / "models" / "mnist" / "train-export.json").read_text())
    (tmp_path / "train-export.json").write_text(json.dumps(data))
    inputs = load_inputs([tmp_path / "train-export.json"])
    assert inputs.manifests == []
    assert len(inputs.train_runs[0].missing) == 6
    assert any("6 manifest(s) it lists were not found" in n for n in inputs.notes)


def test_a_models_folder_brings_manifests_runs_and_bench_json(tmp_path):
    folder = tmp_path / "models"
    shutil.copytree(FIXTURES / "models", folder)
    shutil.copy(FIXTURES / "bench-cpu.json", folder / "mnist" / "torch-mlp" / "bench.json")
    inputs = load_inputs([folder])
    assert len(inputs.manifests) == 6 and len(inputs.train_runs) == 1
    assert [p.name for p, _ in inputs.model_results] == ["bench.json"] and inputs.results == []


def test_the_same_file_twice_is_read_once():
    inputs = load_inputs([FIXTURES / "bench-cpu.json", FIXTURES / "bench-cpu.json"],
                         [FIXTURES / "models" / "mnist", FIXTURES / "models" / "mnist" / "torch-mlp"])
    assert len(inputs.results) == 1 and len(inputs.manifests) == 6 and len(inputs.train_runs) == 1


@pytest.mark.parametrize("content,needle", [
    ("not json at all", "not JSON"),
    ('{"hello": 1}', "not a deploykit results file, train-export.json or manifest.json"),
    ('[1, 2]', "not a deploykit results file"),
    ('{"kind": "bench"}', "not a deploykit results file (machine: Field required)"),
    ('{"kind": "profile", "machine": {}}', "kind"),
])
def test_bad_files_raise_one_line_naming_the_file(tmp_path, content, needle):
    path = tmp_path / "x.json"
    path.write_text(content)
    with pytest.raises(ManifestError) as err:
        load_inputs([path])
    message = str(err.value)
    assert str(path) in message and needle in message and "\n" not in message


def test_binary_and_missing_inputs(tmp_path):
    blob = tmp_path / "model.onnx"
    blob.write_bytes(bytes(range(256)))
    with pytest.raises(ManifestError, match="not text"):
        load_inputs([blob])
    with pytest.raises(ManifestError, match="no such file or folder"):
        load_inputs([tmp_path / "nope.json"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ManifestError, match="no manifest.json or train-export.json"):
        load_inputs([tmp_path / "empty"])
    with pytest.raises(ManifestError, match="nothing to report"):
        load_inputs([])


def test_baseline_must_hold_measurements():
    assert load_baseline([FIXTURES / "bench-cpu-baseline.json"])[0][1].kind == "bench"
    with pytest.raises(ManifestError, match="has no measurements to compare"):
        load_baseline([FIXTURES / "models" / "mnist" / "train-export.json"])
    with pytest.raises(ManifestError, match="--baseline .*: no such file"):
        load_baseline([FIXTURES / "old.json"])

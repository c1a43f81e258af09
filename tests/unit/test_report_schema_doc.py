"""docs/results-schema.md documents the live schemas: its JSON Schema blocks and field tables cannot drift."""

import json
import re
from pathlib import Path

import pytest

from deploykit.report import schema as report_schema
from deploykit.report.schema_doc import SCHEMAS, schema_blocks
from deploykit import results

DOC = Path(__file__).parents[2] / "docs" / "results-schema.md"
MODELS = [results.ResultsFile, results.ABResultsFile, results.ABComparison, results.MachineInfo, results.BenchRecord,
          results.LatencyStats, results.LoadStep, results.TrainingRecord, results.TrainingRun,
          report_schema.Report, report_schema.Source, report_schema.LatencyRow, report_schema.Compat,
          report_schema.LoadRow, report_schema.FrameworkRow, report_schema.TrainingRow, report_schema.ArtifactRow, report_schema.TrainRun,
          report_schema.BaselineSummary, report_schema.BaselineDiff, report_schema.Decisions,
          report_schema.Recommendation, report_schema.ParetoChoices, report_schema.ParetoEntry]


@pytest.fixture(scope="module")
def doc() -> str:
    return DOC.read_text()


def test_json_schema_blocks_equal_the_models(doc):
    blocks = schema_blocks(doc)
    assert set(blocks) == set(SCHEMAS)
    for name, model in SCHEMAS.items():
        assert json.loads(blocks[name]) == model.model_json_schema(), (
            f"{name} schema changed: run python -m deploykit.report.schema_doc docs/results-schema.md")


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_every_field_is_described_in_its_section(doc, model):
    match = re.search(rf"^### {model.__name__}\n(.*?)(?=^##)", doc, re.S | re.M)
    assert match, f"no section for {model.__name__}"
    section = match.group(1)
    missing = [f for f in model.model_fields if f"`{f}`" not in section]
    assert not missing, f"{model.__name__}: undocumented fields {missing}"

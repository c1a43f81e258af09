"""schemathesis fuzzing from the OpenAPI document the server itself serves (/docs.json), against a real
server (`bentoml serve`, ONNX MLP, loopback): every operation, cases generated deterministically
(derandomized Hypothesis), each sent over HTTP. Checked on every answer: no 5xx; every 4xx is JSON of
at most 400 bytes; and schemathesis's own checks (status codes, content types, headers and bodies as
documented; schema-valid bodies not rejected on our routes).

Default run: FUZZ_CASES cases per operation. The long form, ≥ 1,000 cases on the prediction routes
alone, is slow-marked:

    .venv/bin/python -m pytest tests/integration/test_serving_fuzz.py -m slow -s
"""

from __future__ import annotations

import collections
import json
import os

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402

from conftest import free_port  # noqa: E402
from test_serving_support import bentoml_serve_cmd, start, stop, wait_all_ready  # noqa: E402

FUZZ_CASES = int(os.environ.get("DEPLOYKIT_FUZZ_CASES", "25"))
LONG_CASES = 250  # per operation in the slow run: 5 prediction operations → ≥ 1,000 cases on them
MAX_ERROR_BYTES = 400
PREDICTION_ROUTES = ("/predict", "/predict_image", "/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer",
                     "/v1/models/{name}:predict")
COUNTS: collections.Counter = collections.Counter()


@pytest.fixture(scope="module")
def fuzz_server(mnist_models, tmp_path_factory):
    logs = tmp_path_factory.mktemp("fuzz-logs")
    port = free_port()
    # Small batches keep generated bodies small (a batch of 28×28 images is 784 numbers per image).
    s = start("fuzz", bentoml_serve_cmd(port, {"model": mnist_models / "torch-mlp", "format": "onnx", "max_images": 2,
                                               "max_body_bytes": 100_000}), port, mnist_models / "torch-mlp", "onnx", logs)
    try:
        wait_all_ready([s])
        yield s
    finally:
        stop(s)
        print(f"\nschemathesis cases sent: {sum(COUNTS.values())} "
              f"({', '.join(f'{k} {v}' for k, v in sorted(COUNTS.items()))})")


@pytest.fixture(scope="module")
def api_schema(fuzz_server):
    return schemathesis.openapi.from_url(fuzz_server.url + "/docs.json")


schema = schemathesis.pytest.from_fixture("api_schema")


def _check(case) -> None:
    response = case.call(timeout=60)
    COUNTS[f"{case.method} {case.path}"] += 1
    assert response.status_code < 500, (case.method, case.path, response.status_code, response.text[:300])
    if 400 <= response.status_code < 500:
        assert response.headers.get("content-type", "").startswith("application/json"), response.text[:200]
        assert len(response.content) <= MAX_ERROR_BYTES, (response.status_code, len(response.content))
        json.loads(response.content)
    case.validate_response(response)


_SETTINGS = dict(deadline=None, derandomize=True, suppress_health_check=list(HealthCheck), database=None)


@schema.parametrize()
@settings(max_examples=FUZZ_CASES, **_SETTINGS)
def test_fuzz_every_operation(case):
    _check(case)


@pytest.mark.slow
@schema.include(path=list(PREDICTION_ROUTES)).parametrize()
@settings(max_examples=LONG_CASES, **_SETTINGS)
def test_fuzz_prediction_routes_long(case):
    _check(case)

"""schemathesis checks for tests/integration/test_serving_fuzz.py (loaded with SCHEMATHESIS_HOOKS)."""

import json

import schemathesis

MAX_ERROR_BYTES = 400


@schemathesis.check
def small_json_errors(ctx, response, case):
    """No 5xx but the documented 503 of a deadline the request itself set; every 4xx/503 body JSON of at
    most MAX_ERROR_BYTES bytes."""
    status = response.status_code
    if status < 400:
        return None
    if not response.headers.get("content-type", [""])[0].startswith("application/json"):
        raise AssertionError(f"{status} answer is not JSON")
    if len(response.content) > MAX_ERROR_BYTES:
        raise AssertionError(f"{status} answer of {len(response.content)} bytes (limit {MAX_ERROR_BYTES})")
    body = json.loads(response.content)
    if status >= 500:
        error = body.get("error")
        code = body.get("code") or (error.get("code") if isinstance(error, dict) else None)
        if not (status == 503 and code == "deadline_exceeded"):
            raise AssertionError(f"server error {status}: {response.content[:200]!r}")
    return None

"""Option parsing for `deploykit loadtest`: every bad value is one UsageError naming it."""

import pytest

from deploykit.loadtest.spec import (
    LoadSpec,
    check_reachable,
    parse_cpu_list,
    parse_duration,
    parse_headers,
    parse_host_port,
    parse_int_list,
    parse_rate_list,
    parse_url,
)
from deploykit.loadtest.command import build_spec
from deploykit.errors import UsageError


@pytest.mark.parametrize("text, seconds", [("30s", 30), ("500ms", 0.5), ("2m", 120), ("1.5", 1.5), ("250us", 250e-6),
                                           (" 3 s ", 3), ("1h", 3600), ("0s", 0)])
def test_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "3x", "s", "-1s", "1e3s", "two", "2d", "100000h"])
def test_bad_durations_name_the_option_and_value(text):
    with pytest.raises(UsageError, match=r"--warmup"):
        parse_duration(text, "--warmup")


def test_int_lists():
    assert parse_int_list("1,4, 16,64", "--concurrency") == [1, 4, 16, 64]
    for bad in ("", "1,,4", "0", "1,a", "4.5", "-1", "10001"):
        with pytest.raises(UsageError, match="--concurrency"):
            parse_int_list(bad, "--concurrency")


def test_rate_lists():
    assert parse_rate_list("100,2.5") == [100.0, 2.5]
    for bad in ("0", "-3", "nan", "inf", "x", "1,", "2e6"):
        with pytest.raises(UsageError, match="--rate"):
            parse_rate_list(bad)


def test_cpu_lists_only_allow_cpus_this_process_may_use():
    import os

    allowed = sorted(os.sched_getaffinity(0))
    assert parse_cpu_list(str(allowed[0])) == [allowed[0]]
    assert parse_cpu_list(f"{allowed[0]}-{allowed[-1]}") == allowed
    for bad in ("a", "3-1", "1,,2", str(max(allowed) + 1)):
        with pytest.raises(UsageError, match="--cpu-affinity"):
            parse_cpu_list(bad)


def test_urls_and_host_ports():
    assert parse_url("http://127.0.0.1:3000/predict") == "http://127.0.0.1:3000/predict"
    for bad in ("127.0.0.1:3000/predict", "ftp://host/x", "http://", "http://h:99999/x", "http://h:0/x"):
        with pytest.raises(UsageError, match="URL"):
            parse_url(bad)
    assert parse_host_port("127.0.0.1:5557", "--master") == ("127.0.0.1", 5557)
    assert parse_host_port("[::1]:5557", "--master") == ("::1", 5557)
    for bad in ("127.0.0.1", ":5557", "h:0", "h:70000", "h:p"):
        with pytest.raises(UsageError, match="--master"):
            parse_host_port(bad, "--master")


def test_unreachable_server_is_one_line(port):
    with pytest.raises(UsageError, match=r"cannot reach 127\.0\.0\.1:\d+"):
        check_reachable(f"http://127.0.0.1:{port}/predict", timeout_s=1)


def test_spec_defaults_to_the_concurrency_sweep_and_adds_open_loop_steps_after_it():
    spec = build_spec("http://127.0.0.1:1/p")
    assert [(s.mode, s.users) for s in spec.steps] == [("closed", 1), ("closed", 4), ("closed", 16), ("closed", 64)]
    spec = build_spec("http://127.0.0.1:1/p", concurrency="2", rate="50,100", connections=8, arrival="poisson")
    assert [(s.mode, s.users, s.rate_rps, s.arrival) for s in spec.steps] == [
        ("closed", 2, None, None), ("open", 8, 50.0, "poisson"), ("open", 8, 100.0, "poisson")]
    assert not spec.distributed
    assert LoadSpec.model_validate_json(spec.model_dump_json()) == spec  # what the engine process reads


def test_distributed_options():
    spec = build_spec("http://127.0.0.1:1/p", workers=2)
    assert spec.distributed and spec.expect_workers == 2 and spec.master_bind is None
    spec = build_spec("http://127.0.0.1:1/p", master_bind="0.0.0.0:5557", expect_workers=3, workers=1)
    assert spec.expect_workers == 3 and spec.workers == 1
    with pytest.raises(UsageError, match="--master-bind needs workers"):
        build_spec("http://127.0.0.1:1/p", master_bind="127.0.0.1:5557")
    with pytest.raises(UsageError, match="fewer than"):
        build_spec("http://127.0.0.1:1/p", workers=3, expect_workers=2)


@pytest.mark.parametrize("kwargs, option", [({"payload": "xml"}, "--payload"), ({"arrival": "burst"}, "--arrival"),
                                            ({"duration": "0s"}, "--duration"), ({"connections": 0}, "--connections"),
                                            ({"timeout": "0"}, "--timeout"), ({"samples": 0}, "--samples")])
def test_bad_options(kwargs, option):
    with pytest.raises(UsageError, match=option):
        build_spec("http://127.0.0.1:1/p", **kwargs)


def test_client_choice():
    assert build_spec("http://127.0.0.1:1/p").client == "raw"
    assert build_spec("https://127.0.0.1:1/p").client == "fasthttp"  # TLS: Locust's FastHttpSession
    assert build_spec("http://127.0.0.1:1/p", client="fasthttp").client == "fasthttp"
    with pytest.raises(UsageError, match="plain HTTP only"):
        build_spec("https://127.0.0.1:1/p", client="raw")
    with pytest.raises(UsageError, match="--client"):
        build_spec("http://127.0.0.1:1/p", client="curl")


def test_encoded_request_is_one_complete_http_11_request():
    from deploykit.loadtest.client import encode_request

    data = encode_request("POST", "/predict?x=1", "127.0.0.1:3000", {"Content-Type": "application/json",
                                                                   "content-length": "999"}, b'{"inputs": []}')
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /predict?x=1 HTTP/1.1" and body == b'{"inputs": []}'
    assert "Host: 127.0.0.1:3000" in lines and "Content-Length: 14" in lines and "Content-Type: application/json" in lines
    assert not any(line.lower() == "content-length: 999" for line in lines)  # computed, never taken from the caller


def test_headers_are_checked_and_recorded_in_the_spec():
    assert parse_headers(["X-Request-Timeout-Ms: 200", "Authorization:Bearer a b"]) == {
        "X-Request-Timeout-Ms": "200", "Authorization": "Bearer a b"}
    spec = build_spec("http://127.0.0.1:1/p", headers=["X-Request-Timeout-Ms: 200"])
    assert spec.headers == {"X-Request-Timeout-Ms": "200"} and spec.model_dump()["headers"] == spec.headers
    assert build_spec("http://127.0.0.1:1/p").headers == {}
    for bad, why in [("X-Timeout 200", "expected 'Name: value'"), (": 200", "expected"), ("Bad Name: 1", "expected"),
                     ("X-A: 1\r\nX-B: 2", "expected"), ("X-A: 1\n", "expected"), ("X-A: \u20ac", "expected"),
                     ("Content-Length: 5", "set by the load tester"), ("host: x", "set by the load tester")]:
        with pytest.raises(UsageError, match=f"--header .*{why}"):
            parse_headers([bad])
    with pytest.raises(UsageError, match="given twice"):
        parse_headers(["X-A: 1", "x-a: 2"])

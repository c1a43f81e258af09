"""`deploykit loadtest` against a real HTTP server this module starts on a loopback port.

The server (stdlib ThreadingHTTPServer, in a thread) answers like deploykit's endpoint, with a known
server-time header, and has routes that fail, omit the header, or stall. The load engine is the real
one (Locust in its own process); results are read back from the files it writes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from deploykit.loadtest.command import build_spec, run_loadtest
from deploykit.results import read_results

SERVER_US = 1234  # what the server reports in X-Inference-Time-Us
STALL_PERIOD_S, STALL_S = 1.0, 0.3  # /stall: every second, nothing is answered for 300 ms
FIXED_S = 0.020  # /fixed: service time; capacity 50 requests/s
CLI = [sys.executable, "-m", "deploykit"]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else delayed ACKs add 40 ms to every answer

    def log_message(self, *args):
        pass

    def setup(self):
        with self.server.lock:
            self.server.connections += 1
        super().setup()

    def _answer(self, status: int, body: bytes = b'{"ok": true}', header: bool = True):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if header and status == 200:
            self.send_header("X-Inference-Time-Us", str(SERVER_US))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        path = self.path.split("?")[0]
        with self.server.lock:
            self.server.counts[path] += 1
        ctype = self.headers.get("Content-Type", "")
        if path == "/predict":
            ok = ctype == "application/json" and len(json.loads(body)["inputs"][0]) == 28
            return self._answer(200 if ok else 400)
        if path == "/predict_image":
            ok = ctype.startswith("multipart/form-data") and b'name="image"' in body and b"\x89PNG" in body
            return self._answer(200 if ok else 415)
        if path == "/fail":
            return self._answer(503, b'{"error": "overloaded"}')
        if path == "/deadline":  # 200 only with the header the load tester was told to send
            return self._answer(200 if self.headers.get("X-Request-Timeout-Ms") == "200" else 400)
        if path == "/noheader":
            return self._answer(200, header=False)
        if path == "/close":  # answers, then closes: the client must reconnect for the next request
            self.close_connection = True
            self.send_response(200)
            self.send_header("Connection", "close")
            self.send_header("Content-Length", "2")
            self.send_header("X-Inference-Time-Us", "7")
            self.end_headers()
            return self.wfile.write(b"{}")
        if path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            return self.wfile.write(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        if path == "/fixed":  # one request at a time, each FIXED_S: a server of known capacity 1 / FIXED_S
            with self.server.service:
                t0 = time.perf_counter()
                time.sleep(FIXED_S)
                took_us = (time.perf_counter() - t0) * 1e6  # a busy machine oversleeps: report what it took
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.send_header("X-Inference-Time-Us", f"{took_us:.0f}")
            self.end_headers()
            return self.wfile.write(b"{}")
        if path == "/stall":
            phase = (time.monotonic() - self.server.t0) % STALL_PERIOD_S
            if phase < STALL_S:
                time.sleep(STALL_S - phase)
            return self._answer(200)
        self._answer(404)


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.lock, httpd.counts, httpd.t0, httpd.connections = threading.Lock(), Counter(), time.monotonic(), 0
    httpd.service = threading.Lock()
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _url(server, path):
    return f"http://127.0.0.1:{server.server_address[1]}{path}"


def _cli(*args, timeout=120):
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "COLUMNS": "200"})  # the table on one line per step


def test_closed_and_open_loop_through_the_cli(server, tmp_path):
    out = tmp_path / "lt.json"
    cpu = min(os.sched_getaffinity(0))
    r = _cli("loadtest", _url(server, "/predict"), "-c", "1,4", "--rate", "100", "--connections", "8",
             "--duration", "2s", "--warmup", "0.5s", "--cpu-affinity", str(cpu), "--out", str(out))
    assert r.returncode == 0, r.stderr
    res = read_results(out)  # schema-valid
    assert res.kind == "loadtest" and res.url == _url(server, "/predict") and res.machine.cores_logical >= 1
    assert [(s.mode, s.concurrency, s.rate_rps, s.corrected) for s in res.steps] == [
        ("closed", 1, None, False), ("closed", 4, None, False), ("open", 8, 100.0, True)]
    for step in res.steps:
        assert step.errors == 0 and step.errors_by_status == {}
        assert step.requests > 0 and step.latency.samples == step.requests
        assert step.duration_s == pytest.approx(2.0, rel=0.1) and step.warmup_s == 0.5
        lat = step.latency
        tails = [lat.p90_us, lat.p99_us, lat.p999_us]
        # a tail with too few samples is withheld (null, reason given), never a maximum called p99
        assert all(t is not None or f in lat.withheld for t, f in zip(tails, ("p90_us", "p99_us", "p999_us")))
        shown = [lat.min_us, lat.p50_us, *(t for t in tails if t is not None), lat.max_us]
        assert 0 < shown[0] and shown == sorted(shown)
        assert step.server_time.samples == step.requests
        assert step.server_time.p50_us == pytest.approx(SERVER_US, rel=1e-3)  # the header, next to the client view
        assert lat.p50_us > 50  # a real round trip, in µs, not whole ms
    closed1 = res.steps[0]
    assert closed1.throughput_rps == pytest.approx(closed1.requests / closed1.duration_s, rel=0.05)
    assert res.steps[2].throughput_rps == pytest.approx(100, rel=0.15)  # the open loop holds its rate
    assert res.steps[2].requests == pytest.approx(200, abs=3)  # 100/s × 2 s, counted by scheduled time
    assert any(f"pinned to CPU(s) {cpu}" in n for n in res.notes)
    assert any("corrected" in n and "uncorrected" in n for n in res.notes)
    # requests count by scheduled time in the window, send lags by sent time in it (loadtest.record): a send
    # scheduled just before the window opens and sent just after it is a lag sample and not a request
    assert res.steps[2].valid and abs(res.steps[2].send_lag.samples - res.steps[2].requests) <= 2
    assert any("send lag" in n and "left out of the corrected latency" in n for n in res.notes)
    assert res.settings["engine"].startswith("locust") and res.settings["generator_cpus"] == [cpu]
    assert "closed c=4" in r.stdout and "open* 100/s" in r.stdout  # the table


def test_keep_alive_connections_are_reused(server):
    before = server.connections
    res = run_loadtest(build_spec(_url(server, "/predict"), concurrency="3", duration="1s", warmup="0.2s")).results
    assert res.steps[0].requests > 100 and res.steps[0].errors == 0
    assert server.connections - before <= 3 + 1  # one per user (+1: the reachability check), not one per request
    assert "keep-alive HTTP/1.1 client" in res.settings["engine"]


def test_raw_connection_against_a_real_server(server):
    from deploykit.loadtest.client import RawConnection, encode_request

    host, port = server.server_address
    conn = RawConnection(host, port, timeout_s=5, header="x-inference-time-us")
    req = lambda path: encode_request("POST", path, f"{host}:{port}", {"Content-Type": "application/json"},
                                      json.dumps({"inputs": [[[0.0] * 28] * 28]}).encode())
    before = server.connections
    assert conn.request(req("/predict")) == (200, str(SERVER_US).encode())
    assert conn.request(req("/fail")) == (503, None)  # an error answer; the header only comes with 200s
    assert conn.request(req("/chunked")) == (200, None)
    assert server.connections - before == 1
    assert conn.request(req("/close")) == (200, b"7") and conn.sock is None  # the server said close
    assert conn.request(req("/predict"))[0] == 200 and server.connections - before == 2
    conn.sock.shutdown(2)  # a keep-alive connection that went away: retried once on a fresh one
    assert conn.request(req("/predict"))[0] == 200 and server.connections - before == 3
    conn.close()
    with pytest.raises(ConnectionRefusedError):
        RawConnection(host, 1, timeout_s=1).request(req("/predict"))


def test_image_payload_through_fasthttp_and_missing_server_header(server):
    spec = build_spec(_url(server, "/predict_image"), concurrency="2", duration="1s", warmup="0.2s", payload="image",
                      client="fasthttp")
    run = run_loadtest(spec)
    step = run.results.steps[0]
    assert step.requests > 0 and step.errors == 0  # the server checked each multipart PNG
    assert step.server_time.p50_us == pytest.approx(SERVER_US, rel=1e-3)
    assert run.results.settings["engine"].startswith("locust FastHttpUser")
    spec = build_spec(_url(server, "/noheader"), concurrency="1", duration="1s", warmup="0s")
    res = run_loadtest(spec).results
    assert res.steps[0].errors == 0 and res.steps[0].server_time is None
    assert any("had no X-Inference-Time-Us header" in n for n in res.notes)


def test_only_errors_still_writes_results_with_counts(server, tmp_path):
    out = tmp_path / "fail.json"
    r = _cli("loadtest", _url(server, "/fail"), "-c", "2", "--duration", "1s", "--warmup", "0s", "--out", str(out))
    assert r.returncode == 1 and "all" in r.stderr and "failed" in r.stderr
    step = read_results(out).steps[0]
    assert step.requests > 0 and step.errors == step.requests and step.errors_by_status == {"503": step.requests}
    assert step.latency is None and step.server_time is None
    # a refusal is still an answer, and its time is kept (answer_time: errors with a status included)
    assert step.answer_time is not None and step.answer_time.samples == step.requests


@pytest.mark.parametrize("client", ["raw", "fasthttp"])
def test_extra_headers_reach_the_server_and_are_recorded(server, client):
    res = run_loadtest(build_spec(_url(server, "/deadline"), concurrency="1", duration="0.5s", warmup="0s", client=client,
                                  headers=["X-Request-Timeout-Ms: 200"])).results
    assert res.steps[0].requests > 0 and res.steps[0].errors == 0
    assert res.settings["headers"] == {"X-Request-Timeout-Ms": "200"}


@pytest.mark.parametrize("args, message", [
    (["http://127.0.0.1:{free}/predict"], "cannot reach 127.0.0.1:{free}"),
    (["{url}", "--duration", "30 parsecs"], "--duration '30 parsecs'"),
    (["{url}", "-c", "1,four"], "--concurrency '1,four'"),
    (["not a url"], "URL 'not a url'"),
    (["{url}", "--header", "X-Request-Timeout-Ms 200"], "--header 'X-Request-Timeout-Ms 200'"),
])
def test_bad_input_is_one_line_and_exit_2(server, args, message, port):
    args = [a.format(free=port, url=_url(server, "/predict")) for a in args]
    r = _cli("loadtest", *args, "--duration" if "--duration" not in args else "--warmup", "1s", timeout=30)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and message.format(free=port) in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow  # default run ≤ 12 min: 4–9 s each measured; run by pytest -m slow
def test_open_loop_shows_a_stall_that_the_closed_loop_hides(server):
    """Every second the server stops answering for 300 ms. A closed loop sends nothing while its
    requests wait, so only the few requests in flight see the stall: its p90 stays fast. The open
    loop keeps sending 200 requests/s on schedule over enough connections (~60 wait through each
    stall); about 30 % of all requests wait up to 300 ms: p90 shows the stall (p99 needs 1,000
    samples: withheld at 600)."""
    spec = build_spec(_url(server, "/stall"), concurrency="2", rate="200", connections=100, duration="3s", warmup="0.5s")
    closed, open_ = run_loadtest(spec).results.steps
    assert closed.errors == 0 and open_.errors == 0
    assert closed.latency.max_us >= 0.8 * STALL_S * 1e6  # the stall happened while the closed loop ran...
    assert closed.latency.p90_us < 0.2 * STALL_S * 1e6  # ...and its p90 hides it
    assert open_.corrected and open_.valid, open_.invalid_reason
    assert open_.latency.p90_us >= 0.4 * STALL_S * 1e6  # the open loop's shows it
    assert open_.latency.p99_us is None and "p99_us" in open_.latency.withheld
    assert open_.requests == pytest.approx(600, abs=5)  # every scheduled request counted, none omitted


def test_open_loop_out_of_connections_is_invalid_not_a_figure(server):
    """With 2 connections a 300 ms stall stops the schedule: requests due meanwhile are sent late, in a
    bunch, so the server is not offered 200/s. Timed from their scheduled send they would still show
    the stall (coordinated omission corrected, kept in the raw histogram), but the step is marked
    invalid with the reason instead of a latency; timed from the actual send they look fast."""
    spec = build_spec(_url(server, "/stall"), rate="200", connections=2, duration="3s", warmup="0.5s")
    run = run_loadtest(spec)
    (step,) = run.results.steps
    assert not step.valid and step.latency is None
    assert "all 2 connections were busy" in step.invalid_reason
    from deploykit.loadtest import hdr as load_hdr

    corrected = load_hdr.latency_stats(load_hdr.decode(run.raw["steps"][0]["latency"]))
    uncorrected = load_hdr.latency_stats(load_hdr.decode(run.raw["steps"][0]["uncorrected"]))
    assert corrected.p90_us >= 0.4 * STALL_S * 1e6 and uncorrected.samples == corrected.samples
    assert uncorrected.p90_us < 0.5 * corrected.p90_us  # from the actual send: under-reported


def test_open_loop_p50_is_the_service_time_at_half_capacity(server):
    """/fixed serves one request at a time in FIXED_S (20 ms; capacity 50/s) and reports in its header
    how long it took (a busy machine oversleeps by a few ms). At 25/s with constant arrivals no
    request waits for another, so p50 is the service time plus the loopback round trip, which the
    closed loop at c=1 measures as its p50 less its server time. Seen at load average 9 on 2 cores:
    6–9 % apart. The bound is 30 % (≥ 6 ms) so that loopback jitter on a busy 2-core machine cannot
    fail it; the 15 % fidelity target is checked by benchmarks/open_loop_fidelity.py against hey."""
    spec = build_spec(_url(server, "/fixed"), concurrency="1", rate="25", connections=8, duration="4s", warmup="0.5s")
    closed, open_ = run_loadtest(spec).results.steps
    assert open_.valid and open_.errors == 0 and open_.requests == pytest.approx(100, abs=2)
    network_us = closed.latency.p50_us - closed.server_time.p50_us
    assert open_.latency.p50_us == pytest.approx(open_.server_time.p50_us + network_us, rel=0.30)
    assert open_.server_time.p50_us >= FIXED_S * 1e6


def test_open_loop_step_is_invalid_when_the_generator_cannot_send_the_rate(server):
    # 50,000 requests/s is far beyond what one pinned Python process can send (and this server answer):
    # the send lag grows past the 20 µs between arrivals, and the step says so instead of a latency.
    cpu = min(os.sched_getaffinity(0))
    spec = build_spec(_url(server, "/predict"), rate="50000", connections=16, duration="1s", warmup="0.2s",
                      drain="2s", cpu_affinity=str(cpu))
    res = run_loadtest(spec).results
    (step,) = res.steps
    assert not step.valid and step.latency is None
    assert "could not keep the schedule" in step.invalid_reason and "50000/s" in step.invalid_reason
    assert any("INVALID" in n for n in res.notes)


@pytest.mark.slow  # default run ≤ 12 min: 4–9 s each measured; run by pytest -m slow
def test_distributed_mode_merges_worker_histograms(server):
    before = server.counts["/predict"]
    spec = build_spec(_url(server, "/predict"), concurrency="4", rate="150", connections=4, duration="2s",
                      warmup="0.5s", workers=2)
    run = run_loadtest(spec)
    served = server.counts["/predict"] - before
    for step, raw in zip(run.results.steps, run.raw["steps"]):
        procs = raw["processes"]
        assert len(procs) == 2 and all(p["requests"] > 0 for p in procs) and not raw["missing_processes"]
        assert step.requests == sum(p["requests"] for p in procs)  # request count = sum over workers
        assert step.latency.samples == sum(p["latency_samples"] for p in procs) == step.requests
        assert sum(p["users"] for p in procs) == step.concurrency
    assert run.results.steps[1].requests == pytest.approx(300, abs=4)  # 150/s × 2 s, split across workers
    assert sum(s.requests for s in run.results.steps) <= served  # never more than the server answered
    assert any("merged from 2 workers" in n for n in run.results.notes)


@pytest.mark.slow  # default run ≤ 12 min: 4–9 s each measured; run by pytest -m slow
def test_remote_style_worker_joins_a_master_bound_on_loopback(server, tmp_path, port):
    """The documented multi-machine setup, on one machine: a master bound to HOST:PORT waiting for
    one worker, and `deploykit loadtest-worker --master HOST:PORT` started separately."""
    master_port = port
    out = tmp_path / "dist.json"
    master = subprocess.Popen([*CLI, "loadtest", _url(server, "/predict"), "-c", "2", "--duration", "1s",
                               "--warmup", "0.2s", "--master-bind", f"127.0.0.1:{master_port}", "--expect-workers", "1",
                               "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    worker = subprocess.Popen([*CLI, "loadtest-worker", "--master", f"127.0.0.1:{master_port}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _, err = master.communicate(timeout=90)
        assert master.returncode == 0, err
        assert worker.wait(timeout=30) == 0  # the worker leaves when the master is done
    finally:
        for p in (master, worker):
            if p.poll() is None:
                p.kill()
    step = read_results(out).steps[0]
    assert step.requests > 0 and step.errors == 0 and step.latency.samples == step.requests


@pytest.mark.slow  # default run ≤ 12 min: 4–9 s each measured; run by pytest -m slow
def test_missing_workers_fail_in_one_line_and_leave_no_worker_behind(server, port):
    import psutil

    r = _cli("loadtest", _url(server, "/predict"), "-c", "1", "--duration", "1s", "--workers", "1",
             "--expect-workers", "2", "--master-bind", f"127.0.0.1:{port}", "--worker-wait", "3s", timeout=60)
    assert r.returncode == 2 and r.stderr.strip() == f"error: only 1 of 2 workers joined the master at port {port} within 3 s"
    time.sleep(0.5)
    leftovers = [p for p in psutil.process_iter(["cmdline"]) if f"127.0.0.1:{port}" in " ".join(p.info["cmdline"] or [])]
    assert leftovers == []

"""The recording rules of one load-generating process (deploykit.loadtest.record)."""

import pytest

from deploykit.loadtest import hdr as load_hdr
from deploykit.loadtest.record import UNFINISHED, ArrivalSchedule, StepRecorder

MS = 1_000_000  # ns


def _stats(encoded):
    return load_hdr.latency_stats(load_hdr.decode(encoded))


def test_constant_schedule_is_exact_and_stops_at_its_end():
    s = ArrivalSchedule(start_ns=0, rate_rps=1000)
    assert [s.next_slot() for _ in range(4)] == [0, MS, 2 * MS, 3 * MS]
    s.close(end_ns=int(5.5 * MS))
    assert s.remaining() == 2  # 4 ms and 5 ms, still owed after the window closed
    assert [s.next_slot(), s.next_slot(), s.next_slot()] == [4 * MS, 5 * MS, None]
    assert s.issued == 6


def test_constant_schedule_has_no_rounding_drift():
    s = ArrivalSchedule(start_ns=0, rate_rps=3)  # 333,333,333.3 ns apart
    for _ in range(3_000):
        last = s.next_slot()
    assert last == int(2_999 * 1e9 / 3)


def test_poisson_schedule_is_seeded_and_has_the_asked_rate():
    s1, s2 = ArrivalSchedule(0, 500, "poisson", seed=7), ArrivalSchedule(0, 500, "poisson", seed=7)
    t1 = [s1.next_slot() for _ in range(5_000)]
    assert t1 == [s2.next_slot() for _ in range(5_000)] and t1[0] == 0
    rate = (len(t1) - 1) / ((t1[-1] - t1[0]) / 1e9)
    assert rate == pytest.approx(500, rel=0.05)
    gaps = sorted(b - a for a, b in zip(t1, t1[1:]))
    assert gaps[len(gaps) // 2] < 1e9 / 500  # exponential gaps: median below the mean (constant: equal)


def test_closed_loop_counts_requests_that_complete_in_the_window():
    r = StepRecorder("closed")
    r.record(None, sent_ns=0, done_ns=1 * MS, status=200)  # warm-up: ignored
    r.begin(10 * MS)
    r.record(None, sent_ns=9 * MS, done_ns=11 * MS, status=200, server_us=150.0)  # started before, counts
    r.record(None, sent_ns=12 * MS, done_ns=12 * MS + 300_000, status=200)  # no server header
    r.record(None, sent_ns=13 * MS, done_ns=14 * MS, status=503)
    r.record(None, sent_ns=14 * MS, done_ns=15 * MS, status=0, error="ConnectionResetError")
    r.end(20 * MS)
    r.record(None, sent_ns=19 * MS, done_ns=21 * MS, status=200)  # completed after the window
    snap = r.snapshot()
    assert snap["requests"] == 4 and snap["completed_in_window"] == 4
    assert snap["errors_by_status"] == {"503": 1, "ConnectionResetError": 1}
    lat = _stats(snap["latency"])
    assert lat.samples == 2 and lat.min_us == 300 and lat.max_us == pytest.approx(2000, rel=1e-3)
    assert _stats(snap["server"]).samples == 1 and snap["server_time_missing"] == 1
    assert snap["uncorrected"] is None and snap["window_s"] == pytest.approx(0.010)
    # every answer with a status is timed, the 503 included; the reset (no answer) is not
    answered = _stats(snap["answered"])
    assert answered.samples == 3 and answered.max_us == pytest.approx(2000, rel=1e-3)


def test_open_loop_times_from_the_scheduled_send_and_keeps_the_uncorrected_view():
    """A request scheduled at 10 ms but sent at 60 ms (all connections stuck behind a stall) and
    answered at 61 ms took 51 ms for its user, not 1 ms."""
    r = StepRecorder("open")
    r.begin(10 * MS)
    r.slot_taken(10 * MS)
    r.record(10 * MS, sent_ns=60 * MS, done_ns=61 * MS, status=200)
    r.slot_taken(5 * MS)  # scheduled during warm-up: not counted even though it completes in the window
    r.record(5 * MS, sent_ns=5 * MS, done_ns=12 * MS, status=200)
    snap = r.snapshot()
    assert _stats(snap["latency"]).p50_us == pytest.approx(51_000, rel=1e-3)
    assert _stats(snap["uncorrected"]).p50_us == 1_000
    assert snap["requests"] == 1 and snap["completed_in_window"] == 2 and r.in_flight_in_window == 0
    with pytest.raises(ValueError):
        r.record(None, 0, 1, 200)


def test_open_loop_drain_counts_what_never_finished_as_errors():
    r = StepRecorder("open")
    r.begin(0)
    for t in (1 * MS, 2 * MS, 3 * MS):
        r.slot_taken(t)
    r.record(1 * MS, 1 * MS, 2 * MS, 200)
    r.end(4 * MS)
    r.give_up(unsent=5)  # 2 in flight + 5 never sent
    assert r.requests == 8 and r.errors == {UNFINISHED: 7}
    r.record(2 * MS, 2 * MS, 90 * MS, 200)  # a late answer after giving up changes nothing
    assert r.requests == 8 and r.latency.get_total_count() == 1


def test_send_lag_is_recorded_apart_and_the_generators_part_left_out_of_the_corrected_latency():
    r = StepRecorder("open")
    r.begin(0)
    # connection free, slot due at 1 ms, the generator sent at 1.3 ms (its own lag), answer at 2.3 ms
    r.record(1 * MS, sent_ns=1 * MS + 300_000, done_ns=2 * MS + 300_000, status=200, ready_ns=1 * MS)
    # slot due at 2 ms, every connection busy until 5 ms (the server's fault), sent at 5.1 ms
    r.record(2 * MS, sent_ns=5 * MS + 100_000, done_ns=6 * MS + 100_000, status=200, ready_ns=5 * MS)
    r.end(10 * MS)
    snap = r.snapshot()
    lag, own = _stats(snap["send_lag"]), _stats(snap["own_lag"])
    assert (lag.min_us, lag.max_us) == (pytest.approx(300, rel=1e-2), pytest.approx(3100, rel=1e-2))
    assert (own.min_us, own.max_us) == (pytest.approx(100, rel=1e-2), pytest.approx(300, rel=1e-2))
    lat = _stats(snap["latency"])
    # 1st: 1 ms send → answer; 2nd: 3 ms waiting for a connection + 1 ms send → answer
    assert (lat.min_us, lat.max_us) == (pytest.approx(1000, rel=1e-3), pytest.approx(4000, rel=1e-3))


def test_load_stats_withhold_tails_by_the_bench_rule():
    h = load_hdr.new_histogram()
    for v in range(1, 151):
        h.record_value(v)
    s = load_hdr.latency_stats(h)
    assert s.p50_us and s.p90_us and s.p99_us is None and s.p999_us is None
    assert s.withheld == {"p99_us": "too few samples: 150 < 1,000", "p999_us": "too few samples: 150 < 10,000"}


def test_open_step_is_invalid_when_arrivals_bunch_and_says_whose_lateness():
    from deploykit.loadtest.command import open_step_invalid_reason
    from deploykit.results import LatencyStats

    def lag(p50, p90):
        return LatencyStats(samples=1000, p50_us=p50, p90_us=p90, mean_us=p50, std_us=0, min_us=1, max_us=p90)

    assert open_step_invalid_reason(lag(40, 300), lag(40, 300), 500, 64) is None  # 2 ms apart: jitter, not bunching
    why = open_step_invalid_reason(lag(40, 2500), lag(30, 2400), 500, 64)
    assert "send lag p90 2,500 µs exceeds the 2,000 µs between arrivals at 500/s" in why
    assert "the generator itself was late" in why
    why = open_step_invalid_reason(lag(1500, 90_000), lag(20, 60), 500, 2)
    assert "all 2 connections were busy" in why
    assert "p50" in open_step_invalid_reason(lag(1500, 1900), None, 500, 64)  # late all the time
    assert open_step_invalid_reason(None, None, 500, 64) is None

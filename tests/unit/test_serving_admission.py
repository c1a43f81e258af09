"""The admission rule (serving/admission.py): a request is refused at arrival when the batches ahead
of it, at the measured time per batch, would finish it past its deadline. Times are given, not measured."""

import pytest

from deploykit.serving.admission import EWMA_ALPHA, ServiceTime


def test_unknown_service_time_admits_everything():
    s = ServiceTime(max_batch_size=2)
    assert s.completion(10.0, ahead=1000, n=1) == 10.0
    assert not s.late(10.0, deadline=10.001, ahead=1000, n=1)


def test_completion_counts_every_batch_ahead_and_its_own():
    s = ServiceTime(max_batch_size=2)
    s.observe(0.0, 0.010, waiting_since=None)  # 10 ms a batch
    assert s.completion(1.0, ahead=0, n=1) == pytest.approx(1.010)  # its own batch
    assert s.completion(1.0, ahead=1, n=1) == pytest.approx(1.010)  # rides with the one ahead
    assert s.completion(1.0, ahead=2, n=1) == pytest.approx(1.020)
    assert s.completion(1.0, ahead=13, n=2) == pytest.approx(1.080)  # ceil(15 / 2) = 8 batches
    # 150 ms deadline: 14 batches (28 images ahead, with its own) fit in 150 ms, 16 do not.
    assert not s.late(1.0, deadline=1.150, ahead=27, n=1)
    assert s.late(1.0, deadline=1.150, ahead=31, n=1)


def test_a_batch_waited_for_counts_the_loop_time_since_the_previous_one():
    s = ServiceTime(max_batch_size=1)
    s.observe(0.0, 0.010, waiting_since=0.0)
    s.observe(0.020, 0.030, waiting_since=0.005)  # waited on since 0.010: 20 ms of queue time, not 10
    assert s.batch_s == pytest.approx(0.010 + EWMA_ALPHA * (0.020 - 0.010))
    s.observe(5.0, 5.010, waiting_since=5.0)  # idle before it: only its own 10 ms
    assert s.batch_s == pytest.approx(0.012 + EWMA_ALPHA * (0.010 - 0.012))


def test_a_burst_after_an_idle_spell_does_not_count_the_idle_gap():
    # The queue was empty from 0.010 to 3.0, then 32 requests arrived: the batch that serves them waited
    # from 3.0 (arrival), not from the previous batch's end 3 s earlier (which refused the burst).
    s = ServiceTime(max_batch_size=32)
    s.observe(0.0, 0.010, waiting_since=0.0)
    s.observe(3.0005, 3.0105, waiting_since=3.0)
    assert s.batch_s == pytest.approx(0.010 + EWMA_ALPHA * (0.0105 - 0.010))
    assert not s.late(3.011, deadline=3.511, ahead=31, n=1)


def test_ewma_follows_a_slowdown():
    s = ServiceTime(max_batch_size=1)
    s.observe(0.0, 0.001, waiting_since=None)
    for _ in range(30):
        s.observe(0.0, 0.050, waiting_since=None)
    assert s.batch_s == pytest.approx(0.050, rel=0.01)
    assert s.late(0.0, deadline=0.150, ahead=3, n=1)  # 4 batches × 50 ms > 150 ms


def test_nothing_ahead_is_admitted_even_after_a_slow_batch():
    s = ServiceTime(max_batch_size=2)
    s.observe(0.0, 1.0, waiting_since=None)  # one 1 s stall
    assert not s.late(2.0, deadline=2.150, ahead=0, n=1)  # runs, and measures again
    assert s.late(2.0, deadline=2.150, ahead=1, n=1)

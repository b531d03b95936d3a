"""A looped replay's events, without a broker: new user ids every pass, the contract's id bound;
the send loop's stop on a signal."""

import threading
import time

import pandas as pd

from producer.replay import _Pacer, _polling, loop_stride, looped
from streamrec.events import MAX_ID


def test_the_stride_is_the_power_of_ten_above_the_largest_user_id():
    assert [loop_stride(n) for n in (1, 9, 10, 610, 999, 1000)] == [10, 10, 100, 1000, 1000, 10000]


def test_each_pass_shifts_user_ids_by_the_stride_and_keeps_the_rest():
    events = pd.DataFrame({"user_id": [3, 610], "movie_id": [1, 2], "rating": [4.0, 2.5],
                           "timestamp": [10, 20]})  # fmt: skip
    rows = [next(it) for it in [looped(events)] for _ in range(6)]
    assert rows == [(3, 1, 4.0, 10), (610, 2, 2.5, 20), (1003, 1, 4.0, 10), (1610, 2, 2.5, 20),
                    (2003, 1, 4.0, 10), (2610, 2, 2.5, 20)]  # fmt: skip


def test_the_loop_ends_before_a_user_id_would_pass_the_contract():
    events = pd.DataFrame({"user_id": [147_483_647], "movie_id": [1], "rating": [3.0], "timestamp": [1]})
    assert [u for u, *_ in looped(events)] == [147_483_647, 1_147_483_647, MAX_ID]  # stride 10^9


def test_speedup_pacing_continues_across_passes():
    pacer = _Pacer(pd.Series([100, 110, 130]).to_numpy(), None, 10.0)
    assert [pacer.due(i) for i in range(5)] == [0.0, 1.0, 3.0, 3.1, 4.1]


def test_a_polling_wait_serves_reports_in_slices_and_ends_at_a_stop():
    stop, calls = threading.Event(), []
    wait = _polling(calls.append, stop, slice_s=0.05)
    wait(0.2)
    assert len(calls) >= 4 and max(calls) <= 0.05  # the time, in slices
    calls.clear()
    stop.set()
    t = time.monotonic()
    wait(60)
    assert calls == [] and time.monotonic() - t < 1  # a stop ends a wait at once

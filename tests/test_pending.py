"""The read-your-writes buffer's logic (serving.pending), the merge with the known ratings and the
stream's committed offsets, without Kafka: pure functions and files."""

from __future__ import annotations

import logging

import pandas as pd

from serving.lists import with_pending
from serving.pending import INCOMPLETE, NOTHING, PendingBuffer, PendingRating
from serving.stream_progress import CommittedOffsets, committed_offsets, planned_offsets


def ev(user, movie, rating=4.0, ts=1_600_000_000, partition=0, offset=0):
    return (user, movie, rating, ts, partition, offset)


def movies(buf: PendingBuffer, user: int) -> dict[int, tuple[float, int, int]]:
    return {r.movie_id: (r.rating, r.timestamp, r.offset) for r in buf.user(user).ratings}


def test_latest_rating_per_movie_by_event_time_ties_to_the_later_offset_duplicates_change_nothing():
    buf = PendingBuffer()
    buf.add([ev(1, 10, 3.0, ts=100, offset=0), ev(1, 10, 5.0, ts=50, offset=1)])  # older event time: loses
    assert movies(buf, 1) == {10: (3.0, 100, 0)}
    buf.add([ev(1, 10, 2.0, ts=100, offset=2)])  # same event time: the later offset wins
    assert movies(buf, 1) == {10: (2.0, 100, 2)}
    buf.add([ev(1, 10, 2.0, ts=100, offset=2), ev(1, 10, 3.0, ts=100, offset=0)])  # POST ack, then the tail
    assert movies(buf, 1) == {10: (2.0, 100, 2)}
    assert buf.stats().events == 1 and buf.user(2) is NOTHING


def test_prune_drops_what_the_stream_applied_and_never_takes_it_back():
    buf = PendingBuffer()
    buf.add([ev(1, 10, offset=5), ev(1, 11, offset=9, partition=1), ev(2, 20, offset=6)])
    assert buf.prune({0: 6}) == 1  # offset 5 of partition 0 is applied; 6 is not
    assert set(movies(buf, 1)) == {11} and set(movies(buf, 2)) == {20}
    assert buf.prune({0: 7, 1: 10}) == 2
    assert buf.user(1) is NOTHING and buf.user(2) is NOTHING and buf.stats().users == 0
    buf.add([ev(3, 30, offset=6)])  # the tail re-reading applied offsets: not buffered again
    assert buf.user(3) is NOTHING
    assert buf.prune({0: 2}) == 0 and buf.applied_offsets() == {0: 7, 1: 10}  # coverage never goes back
    assert buf.stats().applied_events == 3


def test_unlisted_counts_the_ratings_the_streams_lists_do_not_cover_yet():
    buf = PendingBuffer()
    buf.add([ev(1, 10, offset=3), ev(1, 11, offset=8)])
    assert buf.user(1).unlisted == 2
    buf.prune({}, listed={0: 5})  # the fold-in query committed offset 3, the event log not yet
    got = buf.user(1)
    assert got.complete and len(got.ratings) == 2 and got.unlisted == 1


def test_a_user_over_the_per_user_bound_is_evicted_and_served_as_without_the_buffer_until_applied(caplog):
    buf = PendingBuffer(max_events=100, max_per_user=3)
    buf.add([ev(7, 100 + i, offset=i) for i in range(3)] + [ev(8, 1, offset=3)])
    assert len(buf.user(7).ratings) == 3
    with caplog.at_level(logging.WARNING, logger="streamrec.serving"):
        buf.add([ev(7, 200, offset=4)])
        buf.add([ev(7, 201, offset=5)])  # after eviction: only the user's mark moves
    assert buf.user(7) is INCOMPLETE and len(buf.user(8).ratings) == 1
    assert sum("read-your-writes buffer full" in r.message for r in caplog.records) == 1
    s = buf.stats()
    assert (s.events, s.users, s.marked_users, s.evicted_users) == (1, 1, 1, 1)
    buf.prune({0: 5})  # offset 5 (the newest of user 7) not applied yet
    assert buf.user(7) is INCOMPLETE
    buf.prune({0: 6})
    assert buf.user(7) is NOTHING and buf.stats().marked_users == 0
    buf.add([ev(7, 300, offset=6)])  # complete again: newer events are buffered
    assert movies(buf, 7) == {300: (4.0, 1_600_000_000, 6)}


def test_over_the_total_bound_the_user_whose_newest_event_is_oldest_goes_first(caplog):
    buf = PendingBuffer(max_events=4, max_per_user=4)
    buf.add([ev(1, 1, offset=0), ev(2, 1, offset=1), ev(1, 2, offset=2), ev(3, 1, offset=3)])
    with caplog.at_level(logging.WARNING, logger="streamrec.serving"):
        buf.add([ev(4, 1, offset=4)])  # five events: user 2 has the oldest newest-event
        buf.add([ev(5, 1, offset=5)])  # and then user 1 (newest at offset 2), both its events
    assert buf.user(2) is INCOMPLETE and buf.user(1) is INCOMPLETE
    assert [len(buf.user(u).ratings) for u in (3, 4, 5)] == [1, 1, 1]
    assert buf.stats().events == 3 and buf.stats().evicted_users == 2
    assert sum("read-your-writes buffer full" in r.message for r in caplog.records) == 1  # once an episode


def test_when_marks_overflow_every_user_is_incomplete_until_the_stream_passes_the_horizon():
    buf = PendingBuffer(max_events=2, max_per_user=1)
    buf.add([ev(u, 1, offset=u) for u in range(1, 5)])  # users 1, 2 evicted (marks), 3, 4 held
    assert buf.stats().marked_users == 2 and not buf.stats().degraded
    buf.add([ev(u, 1, offset=u) for u in range(5, 7)])  # two more evictions: more marks than 2
    s = buf.stats()
    assert s.degraded and s.lost_marks >= 1 and s.marked_users == 2
    assert buf.user(6) is INCOMPLETE  # held, but nothing says who the forgotten marks were
    buf.prune({0: 5})
    assert not buf.stats().degraded
    assert len(buf.user(6).ratings) == 1


def test_re_ratings_while_the_stream_stands_still_keep_memory_bounded():
    buf = PendingBuffer(max_events=10, max_per_user=5)
    for i in range(5_000):  # one user re-rating the same 5 movies
        buf.add([ev(1, i % 5, ts=1_600_000_000 + i, offset=i)])
    assert buf.stats().events == 5 and buf._heap_items <= 4 * (10 + 1) + 1024 + 1
    assert {m: t for m, (_, t, _) in movies(buf, 1).items()} == {
        m: 1_600_000_000 + 4995 + m for m in range(5)
    }
    assert buf.prune({0: 5_000}) == 5 and buf.stats().events == 0 and buf._heap_items == 0


def test_pending_ratings_lay_over_the_known_ones_latest_by_event_time_a_tie_to_the_pending():
    known = pd.DataFrame({"movie_id": [1, 2, 3], "rating": [1.0, 2.0, 3.0], "timestamp": [10, 20, 30]})
    pending = [
        PendingRating(2, 5.0, 20, 0, 9),
        PendingRating(3, 4.5, 25, 0, 10),
        PendingRating(4, 0.5, 5, 0, 11),
    ]
    got = with_pending(known, pending).set_index("movie_id")["rating"].to_dict()
    assert got == {1: 1.0, 2: 5.0, 3: 3.0, 4: 0.5}
    assert with_pending(known, []) is known


def test_committed_offsets_are_those_of_the_newest_batch_with_a_commit(tmp_path):
    ck = tmp_path / "foldin"
    (ck / "offsets").mkdir(parents=True)
    (ck / "commits").mkdir()
    meta = '{"batchWatermarkMs":0,"batchTimestampMs":1}'
    for b, offsets in enumerate(['{"ratings":{"0":5,"1":7}}', '{"ratings":{"0":9,"1":8}}']):
        (ck / "offsets" / str(b)).write_text(f"v1\n{meta}\n{offsets}")
    assert committed_offsets(ck, "ratings") is None  # planned, nothing committed
    assert planned_offsets(ck) == {0: 9, 1: 8}
    (ck / "commits" / "0").write_text("v1\n{}")
    reader = CommittedOffsets(ck, "ratings")
    assert reader.read() == {0: 5, 1: 7} and committed_offsets(ck, "other") is None
    (ck / "commits" / "1").write_text("v1\n{}")
    assert reader.read() == {0: 9, 1: 8}
    assert CommittedOffsets(tmp_path / "nowhere", "ratings").read() is None

"""Live evaluation bookkeeping (streaming.live_eval) with explicit events and lists: no broker."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from streaming.live_eval import BUCKET_S, LiveCounts, bucket_of, newest_popular, score_events, write_popular


def test_hits_ranks_and_the_popularity_baseline_on_the_same_events():
    served = np.array([10, 20, 30])
    popular = np.array([5, 10, 40, 50])  # the user rated 5: popularity serves 10, 40, 50
    c = score_events(served, popular, rated_before=np.array([5]), movies=np.array([30, 40, 99]),
                     timestamps=np.array([1, 2, 3]), k=3)  # fmt: skip
    assert c == LiveCounts(events=3, hits=1, rank_sum=3, pop_hits=1)


def test_re_ratings_are_not_scored_whether_before_or_within_the_batch():
    c = score_events(np.array([1, 2]), np.array([1, 2]), np.array([1]), np.array([1, 2, 2]),
                     np.array([5, 6, 7]), 2)  # fmt: skip
    assert c == LiveCounts(events=1, hits=1, rank_sum=2, pop_hits=1)  # 1 was rated before; 2 twice


def test_events_are_taken_in_event_time_order_and_only_the_top_k_counts():
    # 7 then 7 again (earlier in time first): one event; 9 is at rank 4 > k = 3: no hit.
    c = score_events(np.array([7, 8, 6, 9]), np.array([]), np.array([]), np.array([9, 7, 7]),
                     np.array([3, 2, 1]), 3)  # fmt: skip
    assert c == LiveCounts(events=2, hits=1, rank_sum=1, pop_hits=0)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(1, 30), max_size=25), st.lists(st.integers(1, 30), max_size=10, unique=True),
       st.integers(1, 10))  # fmt: skip
def test_counts_match_a_per_event_replay(movies, served, k):
    """The obviously-correct replay: walk the events, skip seen movies, look each up in the lists."""
    served = np.array(served, np.int64)
    popular = np.arange(30, 0, -1)
    ts = np.arange(len(movies))
    c = score_events(served, popular, np.array([], np.int64), np.array(movies, np.int64), ts, k)
    seen, events, hits, ranks, pop = set(), 0, 0, 0, 0
    top_pop = list(range(30, 30 - k, -1))
    for m in movies:
        if m in seen:
            continue
        seen.add(m)
        events += 1
        if m in served[:k].tolist():
            hits += 1
            ranks += served[:k].tolist().index(m) + 1
        pop += m in top_pop
    assert c == LiveCounts(events, hits, ranks, pop)
    assert c + LiveCounts(1, 1, 1, 1) == LiveCounts(events + 1, hits + 1, ranks + 1, pop + 1)


def test_buckets_are_minutes_of_kafka_time():
    assert bucket_of(119.9) == 60 and bucket_of(120.0) == 120 and BUCKET_S == 60


def test_the_newest_top_chart_wins_and_old_ones_are_removed(tmp_path):
    assert newest_popular(str(tmp_path)) is None
    for i in range(5):
        write_popular(tmp_path, np.array([i, 1, 2]))
    assert newest_popular(str(tmp_path)).tolist() == [4, 1, 2]
    assert len(list(tmp_path.glob("popular-*.npy"))) == 3


def test_a_candidate_is_scored_on_exactly_the_same_events_with_its_discordant_pairs():
    from streaming.live_eval import score_paired

    p = score_paired(current=np.array([1, 2, 3]), candidate=np.array([3, 4, 5]), popular=np.array([9, 4]),
                     rated_before=np.array([9]), movies=np.array([2, 4, 3, 9, 7]),
                     timestamps=np.array([1, 2, 3, 4, 5]), k=3)  # fmt: skip
    assert p.current.events == p.candidate.events == 4  # 9 was rated before: not scored for either
    assert (p.current.hits, p.candidate.hits) == (2, 2)  # 2, 3 vs 4, 3
    assert (p.only_current, p.only_candidate) == (1, 1) and p.current.pop_hits == p.candidate.pop_hits == 1

"""serving.rating_rows: the incremental merge keeps what streamrec.history.latest_per_pair keeps
over everything at once, and a re-read of rows (a compaction's files) changes nothing."""

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from serving.rating_rows import empty, merge, rows_of
from streamrec.history import latest_per_pair


def _frame(rows: list[tuple], logged: bool) -> pd.DataFrame:
    cols = ["user_id", "movie_id", "rating", "timestamp"] + (["kafka_ts", "offset"] if logged else [])
    return pd.DataFrame([r[: len(cols)] for r in rows], columns=cols)


def _as_frame(rows) -> pd.DataFrame:
    return pd.DataFrame(
        {"user_id": rows.users, "movie_id": rows.movies, "rating": rows.ratings.astype("float64"),
         "timestamp": rows.timestamps}
    )  # fmt: skip


def _reference(history: pd.DataFrame, log: pd.DataFrame) -> pd.DataFrame:
    """latest_per_pair over the history then the log in arrival order, sorted as the rows are."""
    arrived = log.sort_values(["kafka_ts", "offset"], kind="stable")
    cols = ["user_id", "movie_id", "rating", "timestamp"]
    parts = [f[cols] for f in (history, arrived) if len(f)]  # (an empty frame's dtypes would leak in)
    ref = latest_per_pair(pd.concat(parts, ignore_index=True) if parts else history[cols])
    return ref.sort_values(["user_id", "movie_id"], ignore_index=True).astype(
        {"user_id": "int64", "movie_id": "int64", "rating": "float64", "timestamp": "int64"}
    )


def test_later_event_time_wins_then_arrival_and_the_log_wins_a_tie_with_the_history():
    rated = [(1, 10, 3.0, 100), (1, 11, 3.0, 100), (1, 11, 2.0, 100), (2, 10, 1.0, 50)]
    history = rows_of(_frame(rated, False))
    assert _as_frame(history).values.tolist() == [[1, 10, 3.0, 100], [1, 11, 2.0, 100], [2, 10, 1.0, 50]]
    log = rows_of(
        _frame(
            [
                (1, 10, 5.0, 90, 1.0, 0),  # older by event time: the history's stays
                (1, 11, 4.5, 100, 1.0, 1),  # a tie with the history: the log's wins
                (2, 10, 4.0, 60, 1.0, 2),
                (2, 10, 3.5, 60, 2.0, 3),  # same event time, arrived later: wins
                (3, 12, 2.5, 70, 1.0, 4),  # a new user
            ],
            True,
        )
    )
    merged = merge(history, log)
    assert _as_frame(merged).values.tolist() == [
        [1, 10, 3.0, 100],
        [1, 11, 4.5, 100],
        [2, 10, 3.5, 60],
        [3, 12, 2.5, 70],
    ]
    assert _as_frame(history).values.tolist()[1] == [1, 11, 2.0, 100]  # readers' rows untouched
    assert merged.user(2)["rating"].tolist() == [3.5] and merged.user(4).empty


def test_reading_the_same_rows_again_changes_nothing():
    logged = [(1, 10, 4.0, 100, 1.0, 0), (1, 10, 2.0, 100, 2.0, 1), (5, 3, 1.0, 7, 3.0, 2)]
    log = rows_of(_frame(logged, True))
    once = merge(empty(), log)
    twice = merge(once, log)
    assert len(twice) == len(once) == 2
    assert _as_frame(twice).equals(_as_frame(once))
    # A compaction may rewrite only the older of two files: its row read again still loses.
    older = rows_of(_frame([(1, 10, 4.0, 100, 1.0, 0)], True))
    assert merge(once, older).user(1)["rating"].tolist() == [2.0]


events = st.lists(
    st.tuples(
        st.integers(1, 6),  # user
        st.integers(1, 6),  # movie
        st.sampled_from([0.5, 1.0, 2.5, 4.0, 5.0]),
        st.integers(0, 4),  # event time: many ties
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(history=events, log=events, cuts=st.lists(st.integers(0, 40), max_size=4), reread=st.booleans())
def test_merging_batch_by_batch_equals_latest_per_pair_over_everything(history, log, cuts, reread):
    hist = _frame(history, False)
    logged = _frame([(*e, float(i // 3), i) for i, e in enumerate(log)], True)  # Kafka time ties too
    bounds = sorted({0, len(log), *(min(c, len(log)) for c in cuts)})
    rows = rows_of(hist)
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        rows = merge(rows, rows_of(logged.iloc[lo:hi]))
    if reread:  # a compaction's files: everything logged so far, read again
        rows = merge(rows, rows_of(logged))
    got = _as_frame(rows)
    assert got.equals(_reference(hist, logged))
    assert np.all(np.diff(rows.key) > 0)  # sorted, one row per pair

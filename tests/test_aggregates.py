"""Aggregate deltas and event-time windows, called with explicit timestamps (no broker)."""

import numpy as np
import pandas as pd

from streaming.aggregates import DAY, WindowSpec, advance_watermark, compute_deltas, late_mask
from streamrec.history import merge_ratings

SPEC = WindowSpec(size_s=7 * DAY, delay_s=DAY)
GENRES = pd.Series({1: ["Comedy", "Drama"], 2: ["Drama"]})


def events(rows):
    return pd.DataFrame(rows, columns=["user_id", "movie_id", "rating", "timestamp"])


def test_deltas_are_counts_and_sums_and_genres_count_once_each():
    d = compute_deltas(events([(1, 1, 4.0, 100), (2, 1, 3.0, 200), (1, 2, 5.0, 300), (3, 9, 1.0, 50)]),
                       GENRES, None, SPEC)  # fmt: skip
    movie = d.movie.set_index("movie_id")
    assert movie.loc[1, "n"] == 2 and movie.loc[1, "s"] == 7.0 and movie.loc[1, "last"] == 200
    genre = d.genre.set_index("genre")
    assert genre.loc["Drama", "n"] == 3 and genre.loc["Drama", "s"] == 12.0
    assert genre.loc["Comedy", "n"] == 2  # movie 9 is unknown: no genre row
    user = d.user.set_index("user_id")
    assert (user.loc[1, "n"], user.loc[1, "first"], user.loc[1, "last"]) == (2, 100, 300)
    assert dict(zip(d.histogram.rating, d.histogram.n, strict=True)) == {1.0: 1, 3.0: 1, 4.0: 1, 5.0: 1}


def test_tumbling_windows_align_to_epoch_weeks():
    week = 7 * DAY
    d = compute_deltas(events([(1, 1, 4.0, week - 1), (1, 1, 2.0, week), (2, 1, 3.0, week + 5)]),
                       GENRES, None, SPEC)  # fmt: skip
    t = d.trending.set_index("window_start")
    assert t.loc[0, "n"] == 1 and t.loc[week, "n"] == 2 and t.loc[week, "s"] == 5.0
    assert (t["window_end"] - t.index == week).all()


def test_watermark_only_moves_forward_and_closes_windows():
    assert advance_watermark(None, 10 * DAY, SPEC) == 9 * DAY
    assert advance_watermark(9 * DAY, 5 * DAY, SPEC) == 9 * DAY
    ts = np.array([0, 6 * DAY, 7 * DAY, 8 * DAY])
    # watermark at day 14: the window [0, 7d) closed (end 7d <= 14d), [7d, 14d) closed too
    assert late_mask(ts, 14 * DAY, SPEC).tolist() == [True, True, True, True]
    assert late_mask(ts, 10 * DAY, SPEC).tolist() == [True, True, False, False]
    assert not late_mask(ts, None, SPEC).any()


def test_late_events_count_everywhere_but_trending():
    batch = events([(1, 1, 4.0, 20 * DAY), (1, 2, 3.0, 2 * DAY)])
    d = compute_deltas(batch, GENRES, 15 * DAY, SPEC)
    assert d.late_events == 1
    assert d.movie["n"].sum() == 2  # all-time tables count the late event
    assert d.trending["n"].sum() == 1 and d.trending["movie_id"].tolist() == [1]
    assert d.watermark == 19 * DAY


def test_merge_ratings_keeps_the_latest_per_movie():
    state = (np.array([1, 2], np.int32), np.array([4.0, 3.0], np.float32), np.array([100, 100]))
    new = events([(7, 2, 5.0, 150), (7, 1, 1.0, 50), (7, 3, 2.5, 10)])
    m, r, t = merge_ratings(state, new)
    assert dict(zip(m.tolist(), r.tolist(), strict=True)) == {1: 4.0, 2: 5.0, 3: 2.5}
    # equal event time: the newer arrival wins
    m, r, _ = merge_ratings((m, r, t), events([(7, 1, 0.5, 100)]))
    assert dict(zip(m.tolist(), r.tolist(), strict=True))[1] == 0.5

"""Live OLAP aggregates as per-batch deltas, applied to the sink in one idempotent transaction.

Pure pandas: `compute_deltas` turns a batch of valid events into additive deltas (counts and
sums, never running averages, so averages stay exact); `apply_deltas` upserts them. Trending
uses event-time tumbling windows with a watermark (max event time seen minus a delay): an
event whose window already closed (window end <= watermark) is late, counted, and left out of
`trending` only; all-time tables count every event.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from streamrec.sink import Sink

DAY = 86_400


@dataclass(frozen=True)
class WindowSpec:
    size_s: int = 7 * DAY
    delay_s: int = DAY  # watermark delay


@dataclass
class Deltas:
    movie: pd.DataFrame
    genre: pd.DataFrame
    user: pd.DataFrame
    histogram: pd.DataFrame
    trending: pd.DataFrame
    late_events: int
    watermark: int | None


def advance_watermark(watermark: int | None, events_max_ts: int | None, spec: WindowSpec) -> int | None:
    """Watermarks only move forward."""
    if events_max_ts is None:
        return watermark
    candidate = int(events_max_ts) - spec.delay_s
    return candidate if watermark is None else max(watermark, candidate)


def window_start(ts: np.ndarray, spec: WindowSpec) -> np.ndarray:
    return ts - np.mod(ts, spec.size_s)


def late_mask(ts: np.ndarray, watermark: int | None, spec: WindowSpec) -> np.ndarray:
    """True where the event's window had closed before this batch (window end <= watermark)."""
    if watermark is None:
        return np.zeros(len(ts), dtype=bool)
    return window_start(ts, spec) + spec.size_s <= watermark


def compute_deltas(
    events: pd.DataFrame, genres_of: pd.Series, watermark: int | None, spec: WindowSpec
) -> Deltas:
    """Deltas of one batch. `genres_of` maps movie_id -> list of genres (unknown movies: none).

    The watermark used for lateness is the one from before this batch (as Spark does); the
    returned watermark includes this batch.
    """
    ev = events[["user_id", "movie_id", "rating", "timestamp"]].astype({"rating": np.float64})
    r = ev["rating"]
    movie = (
        ev.groupby("movie_id")
        .agg(n=("rating", "size"), s=("rating", "sum"), last=("timestamp", "max"))
        .reset_index()
    )
    user = (
        ev.groupby("user_id")
        .agg(n=("rating", "size"), s=("rating", "sum"), first=("timestamp", "min"), last=("timestamp", "max"))
        .reset_index()
    )
    hist = ev.groupby("rating").size().rename("n").reset_index()
    g = genres_of.reindex(ev["movie_id"].to_numpy())
    exploded = pd.DataFrame({"genre": g.to_numpy(), "rating": r.to_numpy()}).explode("genre").dropna()
    genre = exploded.groupby("genre")["rating"].agg(n="size", s="sum").reset_index()

    ts = ev["timestamp"].to_numpy(np.int64)
    late = late_mask(ts, watermark, spec)
    on_time = ev[~late]
    starts = window_start(on_time["timestamp"].to_numpy(np.int64), spec)
    trending = (
        on_time.assign(window_start=starts)
        .groupby(["window_start", "movie_id"])["rating"]
        .agg(n="size", s="sum")
        .reset_index()
    )
    trending["window_end"] = trending["window_start"] + spec.size_s
    new_wm = advance_watermark(watermark, int(ts.max()) if len(ts) else None, spec)
    return Deltas(movie, genre, user, hist, trending, int(late.sum()), new_wm)


def apply_deltas(sink: Sink, d: Deltas, titles: pd.Series) -> None:
    """Upsert all deltas (call inside a sink transaction)."""
    t = titles.reindex(d.movie["movie_id"].to_numpy())
    sink.executemany(
        """INSERT INTO movie_stats (movie_id, title, n_ratings, rating_sum, avg_rating, last_event_ts)
           VALUES (?, ?, ?, ?, ?, ?)
           ON CONFLICT (movie_id) DO UPDATE SET
             title = COALESCE(movie_stats.title, excluded.title),
             n_ratings = movie_stats.n_ratings + excluded.n_ratings,
             rating_sum = movie_stats.rating_sum + excluded.rating_sum,
             avg_rating = (movie_stats.rating_sum + excluded.rating_sum)
                          / (movie_stats.n_ratings + excluded.n_ratings),
             last_event_ts = CASE WHEN excluded.last_event_ts > movie_stats.last_event_ts
                             THEN excluded.last_event_ts ELSE movie_stats.last_event_ts END""",
        [(int(m), _str(title), int(n), float(s), float(s) / n, int(last))
         for m, title, n, s, last in zip(d.movie["movie_id"], t, d.movie["n"], d.movie["s"],
                                         d.movie["last"], strict=True)],
    )  # fmt: skip
    sink.executemany(
        """INSERT INTO genre_stats (genre, n_ratings, rating_sum, avg_rating) VALUES (?, ?, ?, ?)
           ON CONFLICT (genre) DO UPDATE SET
             n_ratings = genre_stats.n_ratings + excluded.n_ratings,
             rating_sum = genre_stats.rating_sum + excluded.rating_sum,
             avg_rating = (genre_stats.rating_sum + excluded.rating_sum)
                          / (genre_stats.n_ratings + excluded.n_ratings)""",
        [(str(g), int(n), float(s), float(s) / n) for g, n, s in d.genre.itertuples(index=False)],
    )
    sink.executemany(
        """INSERT INTO user_activity (user_id, n_ratings, rating_sum, avg_rating, first_event_ts,
                                      last_event_ts) VALUES (?, ?, ?, ?, ?, ?)
           ON CONFLICT (user_id) DO UPDATE SET
             n_ratings = user_activity.n_ratings + excluded.n_ratings,
             rating_sum = user_activity.rating_sum + excluded.rating_sum,
             avg_rating = (user_activity.rating_sum + excluded.rating_sum)
                          / (user_activity.n_ratings + excluded.n_ratings),
             first_event_ts = CASE WHEN excluded.first_event_ts < user_activity.first_event_ts
                              THEN excluded.first_event_ts ELSE user_activity.first_event_ts END,
             last_event_ts = CASE WHEN excluded.last_event_ts > user_activity.last_event_ts
                             THEN excluded.last_event_ts ELSE user_activity.last_event_ts END""",
        [(int(u), int(n), float(s), float(s) / n, int(f), int(la))
         for u, n, s, f, la in d.user.itertuples(index=False)],
    )  # fmt: skip
    sink.executemany(
        """INSERT INTO rating_histogram (rating, n_ratings) VALUES (?, ?)
           ON CONFLICT (rating) DO UPDATE SET n_ratings = rating_histogram.n_ratings + excluded.n_ratings""",
        [(float(r), int(n)) for r, n in d.histogram.itertuples(index=False)],
    )
    sink.executemany(
        """INSERT INTO trending (window_start, window_end, movie_id, n_ratings, rating_sum, avg_rating)
           VALUES (?, ?, ?, ?, ?, ?)
           ON CONFLICT (window_start, movie_id) DO UPDATE SET
             n_ratings = trending.n_ratings + excluded.n_ratings,
             rating_sum = trending.rating_sum + excluded.rating_sum,
             avg_rating = (trending.rating_sum + excluded.rating_sum)
                          / (trending.n_ratings + excluded.n_ratings)""",
        [(int(ws), int(we), int(m), int(n), float(s), float(s) / n)
         for ws, m, n, s, we in d.trending.itertuples(index=False)],
    )  # fmt: skip


def _str(v) -> str | None:
    return None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)

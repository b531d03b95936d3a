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
import sqlalchemy as sa

from streamrec.sink import Sink, genre_stats, movie_stats, rating_histogram, trending, user_activity

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


def _accumulate(table: sa.Table, lowest: tuple[str, ...] = (), highest: tuple[str, ...] = ()):
    """The conflict update of an additive aggregate: counts and sums add up, the average is
    recomputed from them (never averaged), event-time bounds move outward only."""
    t = table.c

    def update(ex) -> dict:
        set_ = {"n_ratings": t.n_ratings + ex.n_ratings}
        if "rating_sum" in t:
            set_["rating_sum"] = t.rating_sum + ex.rating_sum
            set_["avg_rating"] = (t.rating_sum + ex.rating_sum) / (t.n_ratings + ex.n_ratings)
        set_ |= {c: sa.case((ex[c] < t[c], ex[c]), else_=t[c]) for c in lowest}
        set_ |= {c: sa.case((ex[c] > t[c], ex[c]), else_=t[c]) for c in highest}
        if "title" in t:
            set_["title"] = sa.func.coalesce(t.title, ex.title)
        return set_

    return update


def apply_deltas(sink: Sink, d: Deltas, titles: pd.Series) -> None:
    """Upsert all deltas (call inside a sink transaction)."""
    t = titles.reindex(d.movie["movie_id"].to_numpy())
    sink.upsert(movie_stats, [
        {"movie_id": int(m), "title": _str(title), "n_ratings": int(n), "rating_sum": float(s),
         "avg_rating": float(s) / n, "last_event_ts": int(last)}
        for m, title, n, s, last in zip(d.movie["movie_id"], t, d.movie["n"], d.movie["s"], d.movie["last"],
                                        strict=True)
    ], _accumulate(movie_stats, highest=("last_event_ts",)))  # fmt: skip
    sink.upsert(genre_stats, [
        {"genre": str(g), "n_ratings": int(n), "rating_sum": float(s), "avg_rating": float(s) / n}
        for g, n, s in d.genre.itertuples(index=False)
    ], _accumulate(genre_stats))  # fmt: skip
    sink.upsert(user_activity, [
        {"user_id": int(u), "n_ratings": int(n), "rating_sum": float(s), "avg_rating": float(s) / n,
         "first_event_ts": int(f), "last_event_ts": int(la)}
        for u, n, s, f, la in d.user.itertuples(index=False)
    ], _accumulate(user_activity, lowest=("first_event_ts",), highest=("last_event_ts",)))  # fmt: skip
    sink.upsert(rating_histogram, [{"rating": float(r), "n_ratings": int(n)}
                                   for r, n in d.histogram.itertuples(index=False)],
                _accumulate(rating_histogram))  # fmt: skip
    sink.upsert(trending, [
        {"window_start": int(ws), "window_end": int(we), "movie_id": int(m), "n_ratings": int(n),
         "rating_sum": float(s), "avg_rating": float(s) / n}
        for ws, m, n, s, we in d.trending.itertuples(index=False)
    ], _accumulate(trending))  # fmt: skip


def _str(v) -> str | None:
    return None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)

"""Event-time windows over a ratings table, shared by replay (the "live" part) and train
(the "history" part), so `--split-at F` means the same cut on both sides."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import InvalidRequest
from .settings import Converted


def parse_time(value: str) -> int:
    """Epoch seconds from '1700000000', '2018-09-24' or '2018-09-24T12:00:00' (UTC)."""
    text = value.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        t = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{value!r} is neither a date (YYYY-MM-DD) nor epoch seconds") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return int(t.timestamp())


def in_event_order(ratings: pd.DataFrame) -> pd.DataFrame:
    """Ratings sorted by event time; ties keep file order (stable), so a split is deterministic."""
    return ratings.sort_values("timestamp", kind="stable", ignore_index=True)


def split_index(n: int, split_at: float) -> int:
    """Rows [0, k) of the event-ordered table are history, [k, n) are live."""
    if not 0.0 <= split_at <= 1.0:
        raise InvalidRequest(f"split_at must be between 0 and 1, got {split_at}")
    return int(np.floor(split_at * n))


def window(
    ratings: pd.DataFrame,
    *,
    since: int | None = None,
    until: int | None = None,
    split_at: float | None = None,
    part: str = "after",
    limit: int | None = None,
) -> pd.DataFrame:
    """Event-ordered ratings in [since, until) and on one side of the split_at cut.

    part="after" is what replay publishes (the newest 1-F), part="before" what a base model
    trains on (the oldest F). limit keeps the first N events of the result.
    """
    events = in_event_order(ratings)
    if split_at is not None:
        k = split_index(len(events), split_at)
        events = events.iloc[k:] if part == "after" else events.iloc[:k]
    if since is not None:
        events = events[events["timestamp"] >= since]
    if until is not None:
        events = events[events["timestamp"] < until]
    if limit is not None:
        events = events.iloc[:limit]
    return events.reset_index(drop=True)


def latest_per_pair(ratings: pd.DataFrame) -> pd.DataFrame:
    """Re-rating: the latest rating of each (user, movie) by event time replaces earlier ones.

    Ties keep the later row, so an event replayed after the history wins over the history.
    """
    ordered = in_event_order(ratings)
    return ordered.drop_duplicates(["user_id", "movie_id"], keep="last").reset_index(drop=True)


@dataclass(frozen=True)
class HistorySpec:
    """Which data a model was trained on; stored in model metadata so the stream can rebuild it."""

    data: str
    until: int | None = None
    split_at: float | None = None
    event_log: str | None = None  # event log directory, when its events were included
    # The event log table's version (snapshot) the model trained on: a retrain with
    # --event-log-version reads exactly it again (None: before the table, or without the log).
    event_log_version: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> HistorySpec:
        return cls(**{k: d.get(k) for k in cls.__dataclass_fields__})


def load_history(spec: HistorySpec, pinned: bool = False) -> pd.DataFrame:
    """Raw rating events (not de-duplicated) of a spec: the data folder window + the event log.

    pinned: the log's snapshot `spec.event_log_version` (what training reads, reproducibly);
    otherwise the whole log as it is now (what serving and the stream's references read)."""
    from .event_log import read_event_log
    from .movielens import load_ratings

    base, _ = load_ratings(Path(spec.data))
    parts = [window(base, until=spec.until, split_at=spec.split_at, part="before")]
    if spec.event_log:
        version = spec.event_log_version if pinned else None
        parts.append(read_event_log(Path(spec.event_log), version))
    return pd.concat(parts, ignore_index=True)


def merge_ratings(
    state: tuple[np.ndarray, np.ndarray, np.ndarray] | None, new: pd.DataFrame | dict
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Union of stored and new ratings, keeping the latest per movie by event time.

    `new` has movie_id, rating and timestamp columns (a DataFrame, or a dict of arrays).
    On equal event times the newer arrival wins (stable sort, state first).
    """
    if state is None:
        m0, r0, t0 = np.empty(0, np.int32), np.empty(0, np.float32), np.empty(0, np.int64)
    else:
        m0, r0, t0 = (np.asarray(a) for a in state)
    m = np.concatenate([m0, np.asarray(new["movie_id"], np.int32)])
    r = np.concatenate([r0, np.asarray(new["rating"], np.float32)])
    t = np.concatenate([t0, np.asarray(new["timestamp"], np.int64)])
    order = np.lexsort((np.arange(len(t)), t, m))  # by movie, then time, then arrival
    m, r, t = m[order], r[order], t[order]
    last = np.r_[m[1:] != m[:-1], True]
    return m[last], r[last], t[last]


TIME = Converted(parse_time, "time")  # the CLI's type for --since / --until

"""Every rating known now, per user, for request-time fold-in.

The model's training window (read once per model version) plus the stream's committed event log
(read incrementally: only files committed since the last look), latest rating per (user, movie).
Rows are sorted by user so one user's ratings are a binary search away, whatever the size.
A lookup never reads files itself: when a look is due it starts one on a background thread and
answers from the snapshot it has (at most about a second behind the event log).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

from streamrec.event_log import committed_files
from streamrec.history import HistorySpec, latest_per_pair, window
from streamrec.movielens import RATING_COLUMNS, RATING_DTYPES, load_ratings


class RatingsIndex:
    """Thread-safe: readers see one consistent snapshot; a refresh swaps it in whole."""

    def __init__(self, spec: HistorySpec, event_log: Path, min_interval_s: float = 1.0):
        base, _ = load_ratings(Path(spec.data))
        self._base = window(base, until=spec.until, split_at=spec.split_at, part="before")
        self._event_log = event_log
        self._seen: set[Path] = set()
        self._log_parts: list[pd.DataFrame] = []
        self._min_interval = min_interval_s
        self._checked = 0.0
        self._lock = threading.Lock()
        self._snapshot = self._build()
        self.refresh(force=True)  # the event log as it is now, read with the model, not per request

    def _build(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        ratings = latest_per_pair(pd.concat([self._base, *self._log_parts], ignore_index=True))
        ratings = ratings.sort_values("user_id", kind="stable", ignore_index=True)
        return (
            ratings["user_id"].to_numpy(np.int64),
            ratings["movie_id"].to_numpy(np.int64),
            ratings["rating"].to_numpy(np.float64),
            ratings["timestamp"].to_numpy(np.int64),
        )

    def refresh(self, force: bool = False) -> bool:
        """Read event-log files committed since the last look (at most once per interval)."""
        now = time.monotonic()
        if not force and now - self._checked < self._min_interval:
            return False
        with self._lock:
            self._checked = now
            new = [f for f in committed_files(self._event_log) if f not in self._seen]
            if not new:
                return False
            parts = [pd.read_parquet(f, columns=RATING_COLUMNS).astype(RATING_DTYPES) for f in new]
            self._log_parts.append(pd.concat(parts, ignore_index=True))
            self._seen.update(new)
            self._snapshot = self._build()
            return True

    def user(self, user_id: int) -> pd.DataFrame:
        """The user's ratings (movie_id, rating, timestamp), latest per movie; empty when unknown."""
        self._refresh_in_background()
        users, movies, ratings, ts = self._snapshot
        lo, hi = np.searchsorted(users, user_id, "left"), np.searchsorted(users, user_id, "right")
        return pd.DataFrame({"movie_id": movies[lo:hi], "rating": ratings[lo:hi], "timestamp": ts[lo:hi]})

    def _refresh_in_background(self) -> None:
        if time.monotonic() - self._checked < self._min_interval or self._lock.locked():
            return
        self._checked = time.monotonic()  # one look per interval, however many requests arrive
        threading.Thread(target=self.refresh, args=(True,), name="ratings-index-refresh", daemon=True).start()

    def __len__(self) -> int:
        return len(self._snapshot[0])

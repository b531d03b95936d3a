"""Every rating known now, per user, for request-time fold-in.

The model's training window (read once per model version) plus the stream's committed event log
(read incrementally: only files committed since the last look), latest rating per (user, movie).
Rows are sorted by user so one user's ratings are a binary search away, whatever the size.
A lookup never reads files itself: when a look is due it starts one on a background thread and
answers from the snapshot it has (at most about a second behind the event log).

Each snapshot also says which topic offsets it covers (per partition, the next offset after the
newest logged event of `topic`), so the read-your-writes buffer (serving.pending) drops an event
only once a snapshot that holds it is in place.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from streamrec.event_log import committed_files
from streamrec.history import HistorySpec, latest_per_pair, window
from streamrec.movielens import RATING_COLUMNS, RATING_DTYPES, load_ratings

OFFSET_COLUMNS = ["topic", "partition", "offset"]


@dataclass(frozen=True)
class Snapshot:
    users: np.ndarray
    movies: np.ndarray
    ratings: np.ndarray
    timestamps: np.ndarray
    next_offsets: dict[int, int]  # partition -> next offset of `topic` this snapshot covers


class RatingsIndex:
    """Thread-safe: readers see one consistent snapshot; a refresh swaps it in whole."""

    def __init__(
        self, spec: HistorySpec, event_log: Path, min_interval_s: float = 1.0, topic: str | None = None
    ):
        base, _ = load_ratings(Path(spec.data))
        self._base = window(base, until=spec.until, split_at=spec.split_at, part="before")
        self._event_log = event_log
        self._topic = topic
        self._seen: set[Path] = set()
        self._log_parts: list[pd.DataFrame] = []
        self._next: dict[int, int] = {}
        self._min_interval = min_interval_s
        self._checked = 0.0
        self._lock = threading.Lock()
        self._snapshot = self._build()
        self.refresh(force=True)  # the event log as it is now, read with the model, not per request

    def _build(self) -> Snapshot:
        ratings = latest_per_pair(pd.concat([self._base, *self._log_parts], ignore_index=True))
        ratings = ratings.sort_values("user_id", kind="stable", ignore_index=True)
        return Snapshot(
            ratings["user_id"].to_numpy(np.int64),
            ratings["movie_id"].to_numpy(np.int64),
            ratings["rating"].to_numpy(np.float64),
            ratings["timestamp"].to_numpy(np.int64),
            dict(self._next),
        )

    def _read(self, path: Path) -> pd.DataFrame:
        """One committed file's ratings; its offsets of `topic` advance the coverage."""
        names = set(pq.read_schema(path).names) if path.is_file() else set(OFFSET_COLUMNS)
        extra = OFFSET_COLUMNS if self._topic is not None and set(OFFSET_COLUMNS) <= names else []
        frame = pd.read_parquet(path, columns=RATING_COLUMNS + extra)
        if extra and len(frame):
            mine = frame[frame["topic"] == self._topic]
            for p, o in mine.groupby("partition")["offset"].max().items():
                self._next[int(p)] = max(self._next.get(int(p), 0), int(o) + 1)
        return frame[RATING_COLUMNS].astype(RATING_DTYPES)

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
            parts = [self._read(f) for f in new]
            self._log_parts.append(pd.concat(parts, ignore_index=True))
            self._seen.update(new)
            self._snapshot = self._build()
            return True

    def user(self, user_id: int) -> pd.DataFrame:
        """The user's ratings (movie_id, rating, timestamp), latest per movie; empty when unknown."""
        self.refresh_soon()
        s = self._snapshot
        lo, hi = np.searchsorted(s.users, user_id, "left"), np.searchsorted(s.users, user_id, "right")
        return pd.DataFrame(
            {"movie_id": s.movies[lo:hi], "rating": s.ratings[lo:hi], "timestamp": s.timestamps[lo:hi]}
        )

    @property
    def next_offsets(self) -> dict[int, int]:
        """Partition -> next offset of the topic the current snapshot covers ({}: none logged)."""
        return self._snapshot.next_offsets

    def refresh_soon(self) -> None:
        """Start a look at the event log on a background thread, when one is due."""
        if time.monotonic() - self._checked < self._min_interval or self._lock.locked():
            return
        self._checked = time.monotonic()  # one look per interval, however many requests arrive
        threading.Thread(target=self.refresh, args=(True,), name="ratings-index-refresh", daemon=True).start()

    def __len__(self) -> int:
        return len(self._snapshot.users)

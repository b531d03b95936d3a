"""Every rating known now, per user, for request-time fold-in.

The model's training window (read once per model version) plus the stream's committed event log
(read incrementally: only files committed since the last look), latest rating per (user, movie),
held once (serving.rating_rows: sorted by user, so one user's ratings are a binary search away,
whatever the size, and a look merges its new rows in without re-sorting the rest).
A lookup never reads files itself: when a look is due it starts one on a background thread and
answers from the snapshot it has (at most about a second behind the event log).

A compaction replaces event-log files with new ones holding the same rows: a look reads those
once more and the merge leaves them as they were, and the files it has seen are only those still
in the log, so neither the rows nor that set grow with compactions (they did until 2026-12-03:
every compaction's files were kept once more, +15 % of the API's memory per event in a soak).

Each snapshot also says which topic offsets it covers (per partition, the next offset after the
newest logged event of `topic`), so the read-your-writes buffer (serving.pending) drops an event
only once a snapshot that holds it is in place.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from streamrec.event_log import ARRIVAL, committed_files
from streamrec.history import HistorySpec, window
from streamrec.movielens import RATING_COLUMNS, RATING_DTYPES, load_ratings

from .rating_rows import Rows, merge, rows_of

OFFSET_COLUMNS = ["topic", "partition", "offset"]


@dataclass(frozen=True)
class Snapshot:
    rows: Rows
    next_offsets: dict[int, int]  # partition -> next offset of `topic` this snapshot covers


class RatingsIndex:
    """Thread-safe: readers see one consistent snapshot; a refresh swaps it in whole."""

    def __init__(
        self, spec: HistorySpec, event_log: Path, min_interval_s: float = 1.0, topic: str | None = None
    ):
        base, _ = load_ratings(Path(spec.data))
        history = window(base, until=spec.until, split_at=spec.split_at, part="before")
        self._event_log = event_log
        self._topic = topic
        self._seen: set[Path] = set()  # the log's files read, of those it still has
        self._next: dict[int, int] = {}
        self._min_interval = min_interval_s
        self._checked = 0.0
        self._lock = threading.Lock()
        self._snapshot = Snapshot(rows_of(history), {})
        self.refresh(force=True)  # the event log as it is now, read with the model, not per request

    def _read(self, path: Path) -> pd.DataFrame:
        """One committed file's ratings with their arrival; its offsets of `topic` advance the
        coverage."""
        names = set(pq.read_schema(path).names) if path.is_file() else set(OFFSET_COLUMNS) | set(ARRIVAL)
        arrival = list(ARRIVAL) if set(ARRIVAL) <= names else []
        offsets = self._topic is not None and set(OFFSET_COLUMNS) <= names
        extra = [c for c in OFFSET_COLUMNS if offsets and c not in arrival]
        frame = pd.read_parquet(path, columns=RATING_COLUMNS + arrival + extra)
        if offsets and len(frame):
            mine = frame[frame["topic"] == self._topic]
            for p, o in mine.groupby("partition")["offset"].max().items():
                self._next[int(p)] = max(self._next.get(int(p), 0), int(o) + 1)
        if not arrival:  # a log older than its arrival columns: after the history, in file order
            frame = frame.assign(kafka_ts=0.0, offset=range(len(frame)))
        return frame[RATING_COLUMNS + list(ARRIVAL)].astype(RATING_DTYPES)

    def refresh(self, force: bool = False) -> bool:
        """Read event-log files committed since the last look (at most once per interval)."""
        now = time.monotonic()
        if not force and now - self._checked < self._min_interval:
            return False
        with self._lock:
            self._checked = now
            active = committed_files(self._event_log)
            new = [f for f in active if f not in self._seen]
            if new:
                rows = rows_of(pd.concat([self._read(f) for f in new], ignore_index=True))
                self._snapshot = Snapshot(merge(self._snapshot.rows, rows), dict(self._next))
            self._seen = set(active)  # once read: files a compaction replaced are gone from the log
            return bool(new)

    def user(self, user_id: int) -> pd.DataFrame:
        """The user's ratings (movie_id, rating, timestamp), latest per movie; empty when unknown."""
        self.refresh_soon()
        return self._snapshot.rows.user(user_id)

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

    @property
    def files(self) -> int:
        """Event-log files read, of those the log still has."""
        return len(self._seen)

    def __len__(self) -> int:
        return len(self._snapshot.rows)

"""The latest rating of each (user, movie), held as sorted arrays and merged incrementally.

A merge of m new rows into n costs O(m log n) to find them and one O(n) copy, where re-sorting
everything (streamrec.history.latest_per_pair) costs O(n log n) and a few frames of memory: the
ratings index merges every second of a running stream.

Which rating is the latest is decided as streamrec.history decides it: by event time, then by
arrival (Kafka time, then offset), and the model's history arrived before any logged event. A row
equal on all three is the same event read again (a compaction rewrites the event log's files
with the same rows) and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import pandas as pd

HISTORY_ARRIVAL = -np.inf  # the model's training window arrived before any logged event


@dataclass(frozen=True)
class Rows:
    """One row per (user, movie), sorted by `key` (user-major, so one user's rows are adjacent).
    36 bytes a rating: the ids live in the key only."""

    key: np.ndarray  # int64: user in the high 32 bits, movie in the low 32
    ratings: np.ndarray  # float32: half stars are exact
    timestamps: np.ndarray
    kafka_ts: np.ndarray  # arrival: Kafka time, then offset (HISTORY_ARRIVAL for the history)
    offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.key)

    @property
    def users(self) -> np.ndarray:
        return self.key >> 32

    @property
    def movies(self) -> np.ndarray:
        return (self.key & 0xFFFFFFFF).astype(np.int32).astype(np.int64)

    def user(self, user_id: int) -> pd.DataFrame:
        """The user's rows (movie_id, rating, timestamp); empty when unknown."""
        first = np.int64(user_id) << 32  # the user's keys: first .. first | 0xFFFFFFFF
        lo = np.searchsorted(self.key, first, "left")
        hi = np.searchsorted(self.key, first | 0xFFFFFFFF, "right")
        mine = Rows(*(getattr(self, f.name)[lo:hi] for f in fields(Rows)))
        return pd.DataFrame(
            {"movie_id": mine.movies, "rating": mine.ratings.astype(np.float64), "timestamp": mine.timestamps}
        )


def pair_key(users: np.ndarray, movies: np.ndarray) -> np.ndarray:
    """Ordered by user, then movie; ids are int32 (streamrec.movielens.RATING_DTYPES)."""
    return (users.astype(np.int64) << 32) | (movies.astype(np.int64) & 0xFFFFFFFF)


def rows_of(frame: pd.DataFrame) -> Rows:
    """The latest row per (user, movie) of `frame` (user_id, movie_id, rating, timestamp and,
    for logged events, kafka_ts and offset; without them the rows are history, in file order)."""
    users = frame["user_id"].to_numpy(np.int64)
    if "kafka_ts" in frame and "offset" in frame:
        kafka_ts = frame["kafka_ts"].to_numpy(np.float64)
        offsets = frame["offset"].to_numpy(np.int64)
    else:
        kafka_ts = np.full(len(frame), HISTORY_ARRIVAL)
        offsets = np.arange(len(frame), dtype=np.int64)  # ties of the history keep the later row
    cols = {
        "ratings": frame["rating"].to_numpy(np.float32),
        "timestamps": frame["timestamp"].to_numpy(np.int64),
        "kafka_ts": kafka_ts,
        "offsets": offsets,
    }
    key = pair_key(users, frame["movie_id"].to_numpy(np.int64))
    order = np.lexsort((cols["offsets"], cols["kafka_ts"], cols["timestamps"], key))  # key-major
    key = key[order]
    last = np.ones(len(key), dtype=bool)
    last[:-1] = key[1:] != key[:-1]  # the last of each key's run is its latest
    pick = order[last]
    return Rows(key[last], **{name: col[pick] for name, col in cols.items()})


def empty() -> Rows:
    return rows_of(pd.DataFrame({"user_id": [], "movie_id": [], "rating": [], "timestamp": []}))


def _not_older(new: Rows, i: np.ndarray, cur: Rows, j: np.ndarray) -> np.ndarray:
    """new[i] is at least as late as cur[j] by (event time, Kafka time, offset)."""
    t_new, t_cur = new.timestamps[i], cur.timestamps[j]
    k_new, k_cur = new.kafka_ts[i], cur.kafka_ts[j]
    return (t_new > t_cur) | (
        (t_new == t_cur) & ((k_new > k_cur) | ((k_new == k_cur) & (new.offsets[i] >= cur.offsets[j])))
    )


def merge(cur: Rows, new: Rows) -> Rows:
    """`cur` with `new` merged in, latest per (user, movie); `cur` is left as it was (readers may
    hold it)."""
    if not len(new):
        return cur
    pos = np.searchsorted(cur.key, new.key)
    hit = pos < len(cur)
    hit[hit] = cur.key[pos[hit]] == new.key[hit]
    found, at = np.flatnonzero(hit), pos[hit]
    wins = _not_older(new, found, cur, at)
    added = np.flatnonzero(~hit)
    out = {}
    for f in fields(Rows):
        col = getattr(cur, f.name).copy()
        col[at[wins]] = getattr(new, f.name)[found[wins]]
        out[f.name] = np.insert(col, pos[added], getattr(new, f.name)[added])
    return Rows(**out)

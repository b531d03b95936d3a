"""Live evaluation: is each rating's movie in the list its user was being served just before it?

The fold-in processor calls `score_events` for every active user in every batch, before it applies
the batch: the list is the one served before the batch (the stream's stored list, or what serving
would answer without one: the model's vector or popularity), so events of one user within one
micro-batch are all scored against the same list (the offline prequential replay refreshes after
every event; the difference is measured in docs/benchmarks.md). A running popularity list is
scored on exactly the same events, so every live figure has its baseline. Re-ratings are not
prediction targets (as in the prequential replay). Pure NumPy: tested without a broker.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BUCKET_S = 60  # live_eval rows per minute of Kafka time


@dataclass(frozen=True)
class LiveCounts:
    events: int = 0  # first-time ratings scored
    hits: int = 0  # ... whose movie was in the served list
    rank_sum: int = 0  # sum of the hits' ranks (1 = top)
    pop_hits: int = 0  # ... whose movie was in the running popularity list

    def __add__(self, other: LiveCounts) -> LiveCounts:
        return LiveCounts(self.events + other.events, self.hits + other.hits, self.rank_sum + other.rank_sum,
                          self.pop_hits + other.pop_hits)  # fmt: skip


def score_events(served: np.ndarray, popular: np.ndarray, rated_before: np.ndarray, movies: np.ndarray,
                 timestamps: np.ndarray, k: int) -> LiveCounts:  # fmt: skip
    """Counts for one user's batch of events against the lists served before it.

    `served`: the list (best first); `popular`: movie ids by descending count (the user's own
    rated movies are skipped, as popularity lists are served); `rated_before`: the user's movies
    before the batch. Events are taken in event-time order; a movie already rated (before, or
    earlier in the batch) is a re-rating and is not scored."""
    served = np.asarray(served, np.int64)[:k]
    rated = set(np.asarray(rated_before, np.int64).tolist())
    pop = np.array([int(m) for m in popular if int(m) not in rated][:k], np.int64)
    scored = _first_ratings(rated_before, movies, timestamps)
    rank = {int(m): r for r, m in enumerate(served.tolist(), 1)}
    hit_ranks = [rank[m] for m in scored.tolist() if m in rank]
    return LiveCounts(len(scored), len(hit_ranks), sum(hit_ranks), int(np.isin(scored, pop).sum()))


def bucket_of(kafka_ts: float) -> int:
    """The live_eval bucket (epoch seconds of the minute) of a Kafka record time in seconds."""
    return int(kafka_ts // BUCKET_S) * BUCKET_S


POPULAR_PREFIX = "popular-"
POPULAR_TOP = 500  # movies kept: enough for a top-k after skipping a heavy user's own


def write_popular(directory: Path, movie_ids: np.ndarray, keep: int = 3) -> Path:
    """The driver's side: the running top chart (every movie's all-time rating count, history
    included), for the executors' popularity baseline; written aside and renamed."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{POPULAR_PREFIX}{time.time_ns()}.npy"
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, np.asarray(movie_ids, np.int64)[:POPULAR_TOP])
    tmp.replace(path)
    for old in sorted(directory.glob(f"{POPULAR_PREFIX}*.npy"))[:-keep]:
        old.unlink(missing_ok=True)
    return path


_POPULAR: dict[str, np.ndarray] = {}


def newest_popular(directory: str | None) -> np.ndarray | None:
    """The newest top chart the driver wrote (None before any), loaded once per file."""
    if directory is None:
        return None
    files = sorted(Path(directory).glob(f"{POPULAR_PREFIX}*.npy"))
    if not files:
        return None
    key = str(files[-1])
    if key not in _POPULAR:
        _POPULAR.clear()
        try:
            _POPULAR[key] = np.load(files[-1])
        except OSError:  # replaced between the listing and the read: the next batch reads the new one
            return None
    return _POPULAR[key]


@dataclass(frozen=True)
class Paired:
    """A candidate's counts on exactly the events CURRENT's list was scored on, with the
    discordant pairs a paired test needs (McNemar: events only one of the two lists hit)."""

    current: LiveCounts
    candidate: LiveCounts
    only_candidate: int
    only_current: int


def score_paired(current: np.ndarray, candidate: np.ndarray, popular: np.ndarray, rated_before: np.ndarray,
                 movies: np.ndarray, timestamps: np.ndarray, k: int) -> Paired:  # fmt: skip
    """`score_events` for two lists on the same events, plus their discordant events."""
    a = score_events(current, popular, rated_before, movies, timestamps, k)
    b = score_events(candidate, popular, rated_before, movies, timestamps, k)
    scored = _first_ratings(rated_before, movies, timestamps)
    in_a = np.isin(scored, np.asarray(current, np.int64)[:k])
    in_b = np.isin(scored, np.asarray(candidate, np.int64)[:k])
    return Paired(a, b, int((in_b & ~in_a).sum()), int((in_a & ~in_b).sum()))


def _first_ratings(rated_before: np.ndarray, movies: np.ndarray, timestamps: np.ndarray) -> np.ndarray:
    """The batch's scored events (first ratings of a movie), in event-time order."""
    rated = set(np.asarray(rated_before, np.int64).tolist())
    out = []
    for m in np.asarray(movies, np.int64)[np.argsort(np.asarray(timestamps), kind="stable")].tolist():
        if m not in rated:
            rated.add(m)
            out.append(m)
    return np.array(out, np.int64)

"""Per-movie fold-in on the driver, inside the fold-in batch's own sink transaction.

The user processor (streaming.foldin_processor) emits one "rating" row per new rating of a movie
CURRENT does not serve from training (unknown to it, or below `--min-support`), carrying the
rater's vectors just folded in. Here those raters are kept in the sink table `item_raters` (latest
rating per rater by event time) and every movie a batch touched is re-solved from all of its
raters against their current vectors (streamrec.item_foldin): the stream's own where they were
folded in against CURRENT, else the version's trained ones.

Why the driver, and not a second stateful operator keyed by movie (the first design): that one
cost a second shuffle, a Python call per movie and two state round trips each, and made every
1,000-event batch about 2 s slower on 2 cores (docs/benchmarks.md). Here a batch costs one indexed
read, one upsert and a few hundred small solves, and exactly-once comes from the sink transaction
the lists already use: a batch Spark replays after a crash is skipped as a whole.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import pandas as pd
import sqlalchemy as sa

from streamrec.item_foldin import fold_in_items
from streamrec.item_overlay import item_side_of, rater_vectors
from streamrec.sink import Sink, item_raters

_UPDATED = ("rating", "timestamp", "model_version", "rvec", "evec", "ebias")


@dataclass
class Raters:
    """One movie's raters, latest rating each (parallel NumPy arrays). A rater's vectors are NaN
    when the stream has none against `versions[i]` (version ""): the version's trained ones count."""

    users: np.ndarray  # int64
    ratings: np.ndarray  # float64
    ts: np.ndarray  # int64
    rvec: np.ndarray  # float32 (n, k_r), NaN rows: none
    evec: np.ndarray  # float32 (n, k_e)
    ebias: np.ndarray  # float64
    versions: np.ndarray  # object (str)

    def forget_other_versions(self, version: str) -> None:
        """Vectors folded in against another version live in another space: never used again."""
        stale = self.versions != version
        self.rvec[stale], self.evec[stale], self.versions[stale] = np.nan, np.nan, ""


def _blob(v) -> bytes | None:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return None
    a = np.asarray(v, np.float32)
    return None if a.size == 0 or np.isnan(a).any() else a.tobytes()


def _matrix(blobs, width: int) -> np.ndarray:
    out = np.full((len(blobs), width), np.nan, np.float32)
    for i, b in enumerate(blobs):
        if b is not None and len(b) == 4 * width:
            out[i] = np.frombuffer(b, np.float32)
    return out


def latest_per_rater(rows: pd.DataFrame) -> pd.DataFrame:
    """A batch's rating rows, the latest per (movie, rater) by event time (ties: the later row)."""
    movie, user = rows["movie_id"].to_numpy(np.int64), rows["user_id"].to_numpy(np.int64)
    order = np.lexsort((np.arange(len(rows)), rows["ts"].to_numpy(np.int64), user, movie))
    m, u = movie[order], user[order]
    last = np.r_[(m[1:] != m[:-1]) | (u[1:] != u[:-1]), True]
    return rows.iloc[order[last]]


def store_raters(sink: Sink, rows: pd.DataFrame) -> pd.DataFrame:
    """Upsert a batch's raters; a stored rating with a later event time is kept (re-ratings).
    Returns the rows as stored (the table's columns), the latest per (movie, rater)."""
    cols = [c.name for c in item_raters.columns]
    if rows.empty:
        return pd.DataFrame(columns=cols)
    rows = latest_per_rater(rows)
    t = item_raters.c
    stored = [
        {"movie_id": int(r.movie_id), "user_id": int(r.user_id), "rating": float(r.rating),
         "timestamp": int(r.ts), "model_version": r.model_version or "", "rvec": _blob(r.rvec),
         "evec": _blob(r.evec), "ebias": None if r.ebias is None or np.isnan(r.ebias) else float(r.ebias)}
        for r in rows.itertuples()
    ]  # fmt: skip
    sink.upsert(item_raters, stored, lambda ex: {c: sa.case((ex.timestamp >= t.timestamp, ex[c]), else_=t[c])
                                                 for c in _UPDATED})  # fmt: skip
    return pd.DataFrame(stored, columns=cols)


def store_seeds(sink: Sink, seeds: pd.DataFrame) -> None:
    """Training raters of the movies CURRENT knows below --min-support (movie_id, user_id, rating,
    timestamp), stored once at the stream's first start: their solve covers all of their ratings.
    A rater the stream already holds keeps its row."""
    sink.upsert(item_raters, [
        {"movie_id": int(r.movie_id), "user_id": int(r.user_id), "rating": float(r.rating),
         "timestamp": int(r.timestamp), "model_version": ""}
        for r in seeds.itertuples()
    ], None)  # fmt: skip


def load_raters(sink: Sink, model, movies: list[int] | None) -> dict[int, Raters]:
    """The stored raters of `movies` (None: every movie), grouped per movie, with vectors folded
    in against another version than `model`'s forgotten."""
    stmt = sa.select(item_raters)
    if movies is None:
        got = sink.query(stmt)
    else:  # in chunks: SQLite bounds a statement's parameters
        got = [r for i in range(0, len(movies), 900)
               for r in sink.query(stmt.where(item_raters.c.movie_id.in_(movies[i : i + 900])))]  # fmt: skip
    found = pd.DataFrame([r._asdict() for r in got], columns=[c.name for c in item_raters.columns])
    return group_raters(found, model)


def group_raters(found: pd.DataFrame, model) -> dict[int, Raters]:
    """Rows shaped as `item_raters` (vectors as blobs), grouped per movie, sorted by rater."""
    if found.empty:
        return {}
    found = found.sort_values(["movie_id", "user_id"], kind="stable", ignore_index=True)
    rvec = _matrix(found["rvec"].tolist(), model.ranking.rank)
    evec = _matrix(found["evec"].tolist(), model.items.rank)
    ebias = found["ebias"].astype(float).to_numpy()
    versions = found["model_version"].fillna("").to_numpy(object)
    users, ts = found["user_id"].to_numpy(np.int64), found["timestamp"].to_numpy(np.int64)
    ratings = found["rating"].to_numpy(np.float64)
    ids = found["movie_id"].to_numpy(np.int64)
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    out = {}
    for lo, hi in zip(starts, np.r_[starts[1:], len(ids)], strict=True):
        r = Raters(users[lo:hi], ratings[lo:hi], ts[lo:hi], rvec[lo:hi], evec[lo:hi], ebias[lo:hi],
                   versions[lo:hi].copy())  # fmt: skip
        r.forget_other_versions(model.version)
        out[int(ids[lo])] = r
    return out


def merge_raters(old: Raters, new: Raters) -> Raters:
    """`old` with `new` upserted as `store_raters` does: per rater the later event time wins, a tie
    goes to `new`; sorted by rater, as `load_raters` returns them."""
    users = np.concatenate([old.users, new.users])
    ts = np.concatenate([old.ts, new.ts])
    src = np.r_[np.zeros(len(old.users), np.int8), np.ones(len(new.users), np.int8)]
    order = np.lexsort((src, ts, users))
    last = order[np.r_[users[order][1:] != users[order][:-1], True]]

    def pick(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.concatenate([a, b])[last]

    return Raters(
        users[last],
        pick(old.ratings, new.ratings),
        ts[last],
        pick(old.rvec, new.rvec),
        pick(old.evec, new.evec),
        pick(old.ebias, new.ebias),
        pick(old.versions, new.versions),
    )


class RaterCache:
    """The raters of the streamed movies a batch touched, kept on the driver between batches for
    one version: a batch reads from `item_raters` only the movies it has not seen since, and lays
    its own rows over the cached ones. Reading every touched movie's raters back each batch
    (decoding their vectors) grew with them: on the soak's looped replay `items.apply` went from
    0.15 to 0.7 s per batch in 20 minutes while holding the sink's write lock (docs/benchmarks.md).
    Updates are idempotent (the latest event time wins), so a batch retried after a rolled-back
    transaction leaves the cache as the table. At most `max_rows` raters are kept (least recently
    touched movies go first: they are read again when touched)."""

    def __init__(self, max_rows: int = 500_000):
        self.max_rows = max_rows
        self.version: str | None = None
        self.movies: OrderedDict[int, Raters] = OrderedDict()
        self.rows = 0

    def clear(self) -> None:
        self.movies.clear()
        self.rows = 0

    def drop(self, movies) -> None:
        for m in movies:
            if (r := self.movies.pop(int(m), None)) is not None:
                self.rows -= len(r.users)

    def raters(self, sink: Sink, model, stored: pd.DataFrame, movies: list[int]) -> dict[int, Raters]:
        """The raters of `movies` once this batch's `stored` rows (from `store_raters`, already in
        the table) are in: cached movies get them merged, the others are read from the table."""
        if self.version != model.version:
            self.clear()
            self.version = model.version
        for m, new in group_raters(stored, model).items():
            if m in self.movies:
                self._put(m, merge_raters(self.movies[m], new))
        missing = [m for m in movies if m not in self.movies]
        for m, r in load_raters(sink, model, missing).items() if missing else ():
            self._put(m, r)
        out = {}
        for m in movies:
            if m in self.movies:
                self.movies.move_to_end(m)
                out[m] = self.movies[m]
        while self.rows > self.max_rows and len(self.movies) > len(out):
            self.rows -= len(self.movies.popitem(last=False)[1].users)
        return out

    def _put(self, movie: int, r: Raters) -> None:
        self.drop([movie])
        self.movies[movie] = r
        self.rows += len(r.users)


def drop_raters(sink: Sink, movies: list[int]) -> None:
    """Movies the version serves from training now: nothing to stream for them."""
    for i in range(0, len(movies), 900):
        sink.execute(sa.delete(item_raters).where(item_raters.c.movie_id.in_(movies[i : i + 900])))


_SIDES: dict[str, object] = {}


def solve_all(model, raters: dict[int, Raters], priors: dict | None = None) -> list[dict]:
    """`item_vectors` rows for every movie with a usable rater, solved in one vectorised call."""
    side = _SIDES.get(model.version)
    if side is None:
        _SIDES.clear()
        side = _SIDES[model.version] = item_side_of(model)
    movies, ids, rows = [], [], []
    for movie_id, r in raters.items():
        fresh = (r.versions == model.version) & ~np.isnan(r.rvec).any(axis=1)
        x, u, b, usable = rater_vectors(model, r.users, np.nan_to_num(r.rvec), np.nan_to_num(r.evec),
                                        np.nan_to_num(r.ebias), fresh)  # fmt: skip
        if not usable.any():
            continue
        movies.append((movie_id, len(r.users), int(usable.sum())))
        ids.append(np.full(int(usable.sum()), movie_id, np.int64))
        rows.append((r.ratings[usable], x[usable], u[usable], b[usable]))
    if not movies:
        return []
    ratings, x, u, b = (np.concatenate([r[i] for r in rows]) for i in range(4))
    solved, rank_vectors, vectors, biases, _ = fold_in_items(
        side, np.concatenate(ids), ratings, x, u, b, priors
    )
    where = {int(m): j for j, m in enumerate(solved)}
    out = []
    for m, n, used in movies:
        j = where[int(m)]
        vector = {"ranking": [round(float(v), 7) for v in rank_vectors[j]],
                  "explicit": [round(float(v), 7) for v in vectors[j]]}  # fmt: skip
        out.append({"movie_id": int(m), "n_ratings": n, "n_used": used, "bias": float(biases[j]),
                    "vector": json.dumps(vector)})  # fmt: skip
    return out

"""Per-movie fold-in inside Spark: the fold-in query's second stateful operator, keyed by movie.

The user processor (foldin_processor) emits, besides each user's refreshed list, one "rating"
row per new rating of a movie CURRENT does not serve from training (unknown to it, or below
`--min-support`), carrying the rater's vectors just folded in. This operator keeps, per movie,
its raters since the model's data cut (plus, for a known movie below --min-support, its training
raters from the initial state) and solves the movie's vectors of both models against the raters'
current vectors (streamrec.item_foldin): the stream's own where they were folded in against
CURRENT, else the version's trained ones. Rows routed by a negative key are users' lists passing
through (one query, one checkpoint: the item vectors commit in the same sink transaction as the
lists, so a replayed batch is skipped as a whole).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark.sql.streaming.stateful_processor import StatefulProcessor, StatefulProcessorHandle

from streamrec.item_foldin import fold_in_item
from streamrec.item_overlay import item_side_of, load_priors, rater_vectors

from .foldin_processor import USER_COLUMNS, _cached_model

STATE_SCHEMA = (
    "user_ids array<int>, ratings array<float>, timestamps array<long>, rvec array<float>, "
    "evec array<float>, ebias array<double>, versions array<string>"
)
ITEM_COLUMNS = (
    "kind string, item_movie_id int, item_n_ratings int, item_vector string, item_bias double, "
    "item_n_used int"
)
OUTPUT_SCHEMA = f"{USER_COLUMNS}, {ITEM_COLUMNS}"


@dataclass
class Raters:
    """One movie's raters, latest rating each (parallel NumPy arrays; no pandas on this path:
    it runs once per movie per batch and once per movie of the initial state). A rater's vectors
    are NaN when they have none from the stream (version ""): the version's trained ones count."""

    users: np.ndarray  # int64
    ratings: np.ndarray  # float64
    ts: np.ndarray  # int64
    rvec: np.ndarray  # float32 (n, k_r), NaN rows: none
    evec: np.ndarray  # float32 (n, k_e)
    ebias: np.ndarray  # float64
    versions: np.ndarray  # object (str)

    @classmethod
    def of_state(cls, state) -> Raters:
        users, ratings, ts, rvec, evec, ebias, versions = state
        n = len(users)
        return cls(np.asarray(users, np.int64), np.asarray(ratings, np.float64), np.asarray(ts, np.int64),
                   _matrix(rvec, n), _matrix(evec, n), np.asarray(ebias, np.float64),
                   np.asarray(versions, dtype=object))  # fmt: skip

    def state(self) -> tuple:
        return (self.users.tolist(), self.ratings.tolist(), self.ts.tolist(), _flat(self.rvec),
                _flat(self.evec), self.ebias.tolist(), [str(v) for v in self.versions])  # fmt: skip

    def merged(self, new: Raters) -> Raters:
        """Latest rating per rater by event time (a re-rating replaces the earlier one)."""
        width_r = max(self.rvec.shape[1], new.rvec.shape[1])
        width_e = max(self.evec.shape[1], new.evec.shape[1])
        users = np.concatenate([self.users, new.users])
        ts = np.concatenate([self.ts, new.ts])
        order = np.lexsort((np.arange(len(users)), ts, users))  # by user, then time, then arrival
        last = np.r_[users[order][1:] != users[order][:-1], True]
        keep = order[last]
        return Raters(users[keep], np.concatenate([self.ratings, new.ratings])[keep], ts[keep],
                      np.vstack([_widen(self.rvec, width_r), _widen(new.rvec, width_r)])[keep],
                      np.vstack([_widen(self.evec, width_e), _widen(new.evec, width_e)])[keep],
                      np.concatenate([self.ebias, new.ebias])[keep],
                      np.concatenate([self.versions, new.versions])[keep])  # fmt: skip

    def forget_other_versions(self, version: str) -> None:
        """Vectors folded in against another version live in another space: never used again."""
        stale = self.versions != version
        self.rvec[stale], self.evec[stale], self.versions[stale] = np.nan, np.nan, ""


def _matrix(flat, n: int) -> np.ndarray:
    a = np.asarray(flat, np.float32)
    return a.reshape(n, -1) if n and a.size else np.empty((n, 0), np.float32)


def _flat(m: np.ndarray) -> list[float]:
    return [] if m.size == 0 or np.isnan(m).all() else m.ravel().tolist()


def _widen(m: np.ndarray, width: int) -> np.ndarray:
    """A matrix with no columns yet (nobody had a vector) as NaN columns of `width`."""
    return m if m.shape[1] == width else np.full((len(m), width), np.nan, np.float32)


class ItemFoldInProcessor(StatefulProcessor):
    """Keeps each streamed movie's raters and emits its refreshed vectors on every new rating."""

    def __init__(self, scope: str, overlay_dir: str | None = None):
        self.scope = scope
        self.overlay_dir = overlay_dir  # where the driver leaves each version's content priors

    def init(self, handle: StatefulProcessorHandle) -> None:
        from .model_shipping import shipped_store

        self.raters = handle.getValueState("raters", STATE_SCHEMA)
        store = shipped_store(self.scope)
        self.model = _cached_model(store) if store is not None else None

    def handleInitialState(self, key, initialState: pd.DataFrame, timerValues) -> None:
        # Training raters of a known movie below --min-support (already latest per pair): the
        # version's trained vectors count for them, so none is stored.
        n, frame = len(initialState), initialState
        self.raters.update(
            (
                frame["user_id"].astype(int).tolist(),
                frame["rating"].astype(float).tolist(),
                frame["timestamp"].astype(int).tolist(),
                [],
                [],
                [float("nan")] * n,
                [""] * n,
            )
        )

    def handleInputRows(self, key, rows: Iterator[pd.DataFrame], timerValues) -> Iterator[pd.DataFrame]:
        batch = pd.concat(list(rows), ignore_index=True)
        route = int(key[0])
        if route < 0:  # a user's list passing through
            yield batch[_USER_NAMES].assign(kind="user", item_movie_id=None, item_n_ratings=None,
                                            item_vector=None, item_bias=None, item_n_used=None)  # fmt: skip
            return
        model = self.model
        if model is not None:
            pos, known = model.items.rows(np.array([route]))
            if known[0] and model.items.servable is not None and model.items.servable[pos[0]]:
                self.raters.clear()  # the version serves it from training now: nothing to stream
                return
        n = len(batch)
        has = batch["rvec"].map(lambda v: v is not None).to_numpy()
        kr = len(batch["rvec"][has].iloc[0]) if has.any() else 0
        ke = len(batch["evec"][has].iloc[0]) if has.any() else 0
        rvec, evec = np.full((n, kr), np.nan, np.float32), np.full((n, ke), np.nan, np.float32)
        for j in np.flatnonzero(has):
            rvec[j], evec[j] = batch["rvec"].iloc[j], batch["evec"].iloc[j]
        new = Raters(batch["user_id"].to_numpy(np.int64), batch["rating"].to_numpy(np.float64),
                     batch["ts"].to_numpy(np.int64), rvec, evec, batch["ebias"].to_numpy(np.float64),
                     batch["model_version"].fillna("").to_numpy(object))  # fmt: skip
        state = self.raters.get()
        raters = Raters.of_state(state).merged(new) if state is not None else new.merged(new)
        if model is not None:
            raters.forget_other_versions(model.version)
        self.raters.update(raters.state())
        if model is None:
            return
        out = solve(model, route, raters, _cached_priors(self.overlay_dir, model.version))
        if out is None:
            return
        out.update(user_id=None, model_version=model.version, min_kafka_ts=float(batch["min_kafka_ts"].min()),
                   max_kafka_ts=float(batch["max_kafka_ts"].max()), new_events=n)  # fmt: skip
        yield pd.DataFrame([{**dict.fromkeys(_USER_NAMES), **out}])

    def close(self) -> None:
        pass


_USER_NAMES = [c.split()[0] for c in USER_COLUMNS.split(", ")]
_SIDES: dict[str, object] = {}
_PRIORS: dict[str, dict] = {}


def _cached_priors(directory: str | None, version: str) -> dict:
    """The version's content vectors (the solve's prior), loaded once per worker and version."""
    if directory is None:
        return {}
    if version not in _PRIORS:
        _PRIORS.clear()
        _PRIORS[version] = load_priors(directory, version)
    return _PRIORS[version]


def solve(model, movie_id: int, raters: Raters, priors: dict | None = None) -> dict | None:
    """The movie's vectors from its raters under `model`; None when no rater has a usable vector."""
    side = _SIDES.get(model.version)
    if side is None:
        _SIDES.clear()
        side = _SIDES[model.version] = item_side_of(model)
    fresh = (raters.versions == model.version) & ~np.isnan(raters.rvec).any(axis=1) if raters.rvec.shape[1] \
        else np.zeros(len(raters.users), bool)  # fmt: skip
    kr, ke = model.ranking.rank, model.items.rank
    rvec = (
        np.where(fresh[:, None], raters.rvec, 0.0)
        if raters.rvec.shape[1] == kr
        else np.zeros((len(fresh), kr))
    )
    evec = (
        np.where(fresh[:, None], raters.evec, 0.0)
        if raters.evec.shape[1] == ke
        else np.zeros((len(fresh), ke))
    )
    x, u, b, usable = rater_vectors(model, raters.users, rvec, evec, np.nan_to_num(raters.ebias), fresh)
    if not usable.any():
        return None
    out = fold_in_item(side, raters.ratings[usable], x[usable], u[usable], b[usable],
                       (priors or {}).get(int(movie_id)))  # fmt: skip
    vector = {"ranking": [round(float(v), 7) for v in out.rank_vector],
              "explicit": [round(float(v), 7) for v in out.vector]}  # fmt: skip
    return {
        "kind": "item",
        "item_movie_id": int(movie_id),
        "item_n_ratings": len(raters.users),
        "item_vector": json.dumps(vector),
        "item_bias": float(out.bias),
        "item_n_used": int(usable.sum()),
    }

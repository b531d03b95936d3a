"""Per-user fold-in inside Spark: transformWithStateInPandas keyed by user_id.

State per user: their ratings as three parallel arrays (one ValueState: one read and one write
per active user per batch, instead of one JVM round-trip per rated movie with a MapState).
Latest rating per movie by event time wins. On each batch a user with new events gets fresh
vectors of both models of CURRENT (one regularised least-squares solve each, streamrec.scorer)
and a top-k list of unrated movies ranked by the ranking model with the cold-start blend; a user
with no usable rating gets the most popular movies.
Until a model is published the processor only keeps state (it cannot score anything yet).
The model comes from the driver (streaming.model_shipping), never from a path on the driver's disk.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pandas as pd
from pyspark.sql.streaming.stateful_processor import StatefulProcessor, StatefulProcessorHandle

from streamrec.history import merge_ratings

STATE_SCHEMA = "movie_ids array<int>, ratings array<float>, timestamps array<long>"
OUTPUT_SCHEMA = (
    "user_id int, model_version string, n_ratings int, n_used int, vector string, bias double, "
    "rec_movie_ids array<long>, rec_scores array<double>, rec_predicted array<double>, source string, "
    "min_kafka_ts double, max_kafka_ts double, new_events int"
)


class FoldInProcessor(StatefulProcessor):
    """Keeps each user's ratings and emits their refreshed vector and top-k on every update."""

    def __init__(self, scope: str, k: int = 10):
        self.scope = scope  # the ModelShipper's: which shipped models are this stream's
        self.k = k

    def init(self, handle: StatefulProcessorHandle) -> None:
        from .model_shipping import shipped_store

        self.ratings = handle.getValueState("ratings", STATE_SCHEMA)
        # Hot swap: every task takes the newest model the driver shipped and loads its factors
        # only when the version changed since this worker last saw it.
        store = shipped_store(self.scope)
        self.model = _cached_model(store) if store is not None else None

    def handleInitialState(self, key, initialState: pd.DataFrame, timerValues) -> None:
        m, r, t = merge_ratings(self._get(), initialState)
        self.ratings.update((m.tolist(), r.tolist(), t.tolist()))

    def handleInputRows(self, key, rows: Iterator[pd.DataFrame], timerValues) -> Iterator[pd.DataFrame]:
        batch = pd.concat(list(rows), ignore_index=True)
        m, r, t = merge_ratings(self._get(), batch)
        self.ratings.update((m.tolist(), r.tolist(), t.tolist()))
        user = int(key[0])
        out = {
            "user_id": user, "model_version": None, "n_ratings": len(m), "n_used": 0,
            "vector": None, "bias": None, "rec_movie_ids": [], "rec_scores": [], "rec_predicted": [],
            "source": "none", "min_kafka_ts": float(batch["kafka_ts"].min()),
            "max_kafka_ts": float(batch["kafka_ts"].max()), "new_events": len(batch),
        }  # fmt: skip
        model = self.model
        if model is not None:
            # The same scorer as `recommend`: ranking model + cold-start blend, explicit ratings.
            users = model.scorer.fold_in_one(m, r, user)
            ids, scores, predicted = model.scorer.top_k(users, self.k, [m])[0]
            n_used = int(users.n_used[0])
            out.update(model_version=model.version, n_used=n_used, rec_movie_ids=ids.tolist(),
                       rec_scores=scores.tolist(), rec_predicted=predicted.tolist(),
                       source="fold-in" if n_used else "popularity")  # fmt: skip
            if n_used:
                vector = {"ranking": [round(float(x), 7) for x in users.rank_vectors[0]],
                          "explicit": [round(float(x), 7) for x in users.vectors[0]]}  # fmt: skip
                out.update(vector=json.dumps(vector), bias=float(users.biases[0]))
        yield pd.DataFrame([out])

    def _get(self):
        return self.ratings.get()  # None when the user has no state: one state round trip, not two

    def close(self) -> None:
        pass


_CACHE: dict[str, object] = {}


def _cached_model(store):
    """CURRENT's model, loaded once per worker process per version (None before any publish)."""
    version = store.current_version()
    if version is None:
        return None
    key = f"{store.root}:{version}"
    if key not in _CACHE:
        _CACHE.clear()
        _CACHE[key] = store.load(version)
    return _CACHE[key]

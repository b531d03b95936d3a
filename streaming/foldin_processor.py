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

import numpy as np
import pandas as pd
from pyspark.sql.streaming.stateful_processor import StatefulProcessor, StatefulProcessorHandle

from streamrec.history import merge_ratings

STATE_SCHEMA = "movie_ids array<int>, ratings array<float>, timestamps array<long>"
USER_COLUMNS = (
    "user_id int, model_version string, n_ratings int, n_used int, vector string, bias double, "
    "rec_movie_ids array<long>, rec_scores array<double>, rec_predicted array<double>, source string, "
    "min_kafka_ts double, max_kafka_ts double, new_events int, "
    # live evaluation of the list served before this batch (streaming.live_eval)
    "eval_source string, eval_bucket long, eval_events int, eval_hits int, eval_rank_sum int, "
    "eval_pop_hits int, shadow_version string, shadow_hits int, shadow_rank_sum int, shadow_only int, "
    "current_only int"
)
SERVED_SCHEMA = "movie_ids array<long>, version string"  # the list the stream last served the user
# For the driver's item fold-in (streaming.item_folder): route = -user_id for the user's row,
# the movie id for a rating of a movie CURRENT does not serve from training, with the rater's
# vectors just folded in.
RATING_COLUMNS = (
    "route long, movie_id int, rating float, ts long, rvec array<float>, evec array<float>, ebias double"
)
OUTPUT_SCHEMA = f"{USER_COLUMNS}, {RATING_COLUMNS}"


class FoldInProcessor(StatefulProcessor):
    """Keeps each user's ratings and emits their refreshed vector and top-k on every update."""

    def __init__(self, scope: str, k: int = 10, overlay_dir: str | None = None, emit_ratings: bool = True):
        self.scope = scope  # the ModelShipper's: which shipped models are this stream's
        self.k = k
        self.overlay_dir = overlay_dir  # where the driver leaves the streamed item vectors
        self.emit_ratings = emit_ratings  # rating rows for the item fold-in (off: users only)

    def init(self, handle: StatefulProcessorHandle) -> None:
        from .model_shipping import shipped_store

        self.ratings = handle.getValueState("ratings", STATE_SCHEMA)
        self.served = handle.getValueState("served", SERVED_SCHEMA)
        self.shadow = handle.getValueState("shadow", SERVED_SCHEMA)  # the candidate's, never served
        # Hot swap: every task takes the newest model the driver shipped and loads its factors
        # only when the version changed since this worker last saw it.
        store = shipped_store(self.scope)
        self.model = _cached_model(store) if store is not None else None
        # A candidate published with --candidate: scored on the same events, never served.
        shadow_store = shipped_store(self.scope + "c")
        candidate = _cached_model(shadow_store, "candidate") if shadow_store is not None else None
        same = candidate is not None and self.model is not None and candidate.version == self.model.version
        self.candidate = None if same else candidate
        self.scorer = _cached_scorer(self.model, self.overlay_dir) if self.model is not None else None

    def handleInitialState(self, key, initialState: pd.DataFrame, timerValues) -> None:
        m, r, t = merge_ratings(self._get(), initialState)
        self.ratings.update((m.tolist(), r.tolist(), t.tolist()))

    def handleInputRows(self, key, rows: Iterator[pd.DataFrame], timerValues) -> Iterator[pd.DataFrame]:
        batch = pd.concat(list(rows), ignore_index=True)
        before = self._get()
        m, r, t = merge_ratings(before, batch)
        self.ratings.update((m.tolist(), r.tolist(), t.tolist()))
        user = int(key[0])
        out = {
            "user_id": user, "model_version": None, "n_ratings": len(m), "n_used": 0,
            "vector": None, "bias": None, "rec_movie_ids": [], "rec_scores": [], "rec_predicted": [],
            "source": "none", "min_kafka_ts": float(batch["kafka_ts"].min()),
            "max_kafka_ts": float(batch["kafka_ts"].max()), "new_events": len(batch),
        }  # fmt: skip
        model, scorer = self.model, self.scorer
        ratings_out = None
        if model is not None:
            out.update(self._live_eval(model, scorer, user, before, batch))
            # The same scorer as `recommend`: ranking model + cold-start blend, explicit ratings.
            # The user is solved against the version's trained movies only (exact, and never
            # dependent on what the stream learned of other movies so far); the list ranks those
            # and the movies streamed in since (streamrec.item_overlay).
            users = scorer.fold_in_one(m, r, user)
            ids, scores, predicted = scorer.top_k(users, self.k, [m])[0]
            n_used = int(users.n_used[0])
            out.update(model_version=model.version, n_used=n_used, rec_movie_ids=ids.tolist(),
                       rec_scores=scores.tolist(), rec_predicted=predicted.tolist(),
                       source="fold-in" if n_used else "popularity")  # fmt: skip
            self.served.update((ids.tolist(), model.version))
            if self.candidate is not None:  # the candidate's list for these ratings, kept unserved
                cand = self.candidate.scorer
                shadow = cand.top_k(cand.fold_in_one(m, r, user, explicit=False), self.k, [m])[0][0]
                self.shadow.update((shadow.tolist(), self.candidate.version))
            if n_used:
                vector = {"ranking": [round(float(x), 7) for x in users.rank_vectors[0]],
                          "explicit": [round(float(x), 7) for x in users.vectors[0]]}  # fmt: skip
                out.update(vector=json.dumps(vector), bias=float(users.biases[0]))
            if self.emit_ratings:
                ratings_out = _streamed_ratings(model, batch, user, users if n_used else None)
        elif self.emit_ratings:  # no model yet: item_raters keeps every rating until one exists
            ratings_out = _streamed_ratings(None, batch, user, None)
        rows = [{**_EMPTY_ROW, **out, "route": -user}]
        rows += [{**_EMPTY_ROW, **r} for r in ratings_out or []]
        yield pd.DataFrame(rows, columns=list(_EMPTY_ROW))

    def _live_eval(self, model, scorer, user: int, before, batch: pd.DataFrame) -> dict:
        """Score this batch's events against the list served before it (streaming.live_eval), and
        the candidate's list, never served, on exactly the same events."""
        from .live_eval import bucket_of, newest_popular, score_paired

        rated = np.asarray(before[0] if before is not None else [], np.int64)
        ids, source = self._before(self.served.get(), model, scorer, user, before, rated)
        popular = newest_popular(self.overlay_dir)
        if popular is None:  # before the first aggregates batch: the version's own top chart
            popular = scorer.items.ids[np.argsort(-scorer.prior, kind="stable")[:500]]
        cand = self.candidate
        shadow = ids
        if cand is not None:
            shadow, _ = self._before(self.shadow.get(), cand, cand.scorer, user, before, rated)
        movies, ts = batch["movie_id"].to_numpy(), batch["timestamp"].to_numpy()
        p = score_paired(ids, shadow, popular, rated, movies, ts, self.k)
        out = {"eval_source": source, "eval_bucket": bucket_of(float(batch["kafka_ts"].min())),
               "eval_events": p.current.events, "eval_hits": p.current.hits,
               "eval_rank_sum": p.current.rank_sum, "eval_pop_hits": p.current.pop_hits}  # fmt: skip
        if cand is not None:
            out.update(shadow_version=cand.version, shadow_hits=p.candidate.hits,
                       shadow_rank_sum=p.candidate.rank_sum, shadow_only=p.only_candidate,
                       current_only=p.only_current)  # fmt: skip
        return out

    def _before(self, served, model, scorer, user: int, before, rated: np.ndarray) -> tuple[np.ndarray, str]:
        """The list `model` gave the user before this batch: the stream's own, else what serving
        answers without one (the model's stored vector or a fold-in of the user's ratings), else
        popularity; and its source."""
        if served is not None and served[1] == model.version:
            return np.asarray(served[0], np.int64), "stream"
        users = model.stored_users(user) if before is not None else None
        if users is None and before is not None:
            users = scorer.fold_in_one(before[0], before[1], user)
        if users is None or int(users.n_used[0]) == 0:
            users, source = scorer.fold_in_one([], [], user), "popularity"
        else:
            source = "model"
        return scorer.top_k(users, self.k, [rated])[0][0], source

    def _get(self):
        return self.ratings.get()  # None when the user has no state: one state round trip, not two

    def close(self) -> None:
        pass


def _streamed_ratings(model, batch: pd.DataFrame, user: int, users) -> list[dict]:
    """This batch's ratings of movies the version does not serve from training, latest per movie,
    with the user's vectors (None: the user has no personal vector yet). NumPy only: this runs
    for every active user in every batch."""
    movies, ts = batch["movie_id"].to_numpy(np.int64), batch["timestamp"].to_numpy(np.int64)
    order = np.lexsort((np.arange(len(movies)), ts, movies))
    last = order[np.r_[movies[order][1:] != movies[order][:-1], True]]  # latest per movie
    if model is not None:
        last = last[~model.items.serves(movies[last])]
    if len(last) == 0:
        return []
    rvec = users.rank_vectors[0].tolist() if users is not None else None
    evec = users.vectors[0].tolist() if users is not None else None
    bias = float(users.biases[0]) if users is not None else float("nan")
    version = model.version if model is not None else None
    rating, kafka_ts = batch["rating"].to_numpy(np.float64), batch["kafka_ts"].to_numpy(np.float64)
    return [{"user_id": user, "model_version": version, "min_kafka_ts": kafka_ts[j],
             "max_kafka_ts": kafka_ts[j], "new_events": 1, "route": int(movies[j]),
             "movie_id": int(movies[j]), "rating": float(rating[j]), "ts": int(ts[j]), "rvec": rvec,
             "evec": evec, "ebias": bias} for j in last]  # fmt: skip


_EMPTY_ROW = {c.split()[0]: None for c in OUTPUT_SCHEMA.split(", ")}
_EMPTY_ROW.update(rec_movie_ids=[], rec_scores=[], rec_predicted=[], source="none", n_ratings=0, n_used=0)
_CACHE: dict[str, tuple[str, object]] = {}
_SCORERS: dict[tuple, object] = {}


def _cached_scorer(model, overlay_dir: str | None):
    """CURRENT's scorer with the newest streamed item vectors laid over it (cached per file)."""
    from streamrec.item_overlay import newest_overlay, overlay_scorer

    path = newest_overlay(overlay_dir, model.version) if overlay_dir else None
    key = (model.version, str(path))
    if key not in _SCORERS:
        from streamrec.item_overlay import ItemOverlay

        _SCORERS.clear()
        overlay = ItemOverlay.load(path) if path is not None else None
        _SCORERS[key] = overlay_scorer(
            model.scorer, overlay if overlay and overlay.version == model.version else None
        )
    return _SCORERS[key]


def _cached_model(store, slot: str = "current"):
    """CURRENT's model (or the candidate's, `slot`), loaded once per worker process per version
    (None before any publish)."""
    version = store.current_version()
    if version is None:
        _CACHE.pop(slot, None)
        return None
    key = f"{store.root}:{version}"
    if _CACHE.get(slot, (None, None))[0] != key:
        _CACHE[slot] = (key, store.load(version))
    return _CACHE[slot][1]

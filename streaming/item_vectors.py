"""The driver's side of the item fold-in: the `item_vectors` table and the executors' overlay file.

Each fold-in batch's ratings of streamed movies are kept as raters and the movies they touch are
re-solved (streaming.item_folder), upserted into `item_vectors` in the batch's own transaction; the
overlay file that the next batch's tasks lay over CURRENT (streamrec.item_overlay) is rewritten
from that table. On a hot swap, vectors and raters of movies the new version serves from training
are dropped; the movies it still does not know are re-solved at once against the new version's
user factors (the raters it trained on), and those with no such rater get a content vector in the
new version's space (when the version has a content map) until a rating re-solves them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

from streamrec import logs
from streamrec.item_overlay import (
    ItemOverlay,
    content_overlay,
    load_priors,
    prune_priors,
    write_overlay,
    write_priors,
)
from streamrec.model_store import ModelStore
from streamrec.sink import Sink, item_raters, item_vectors

from .item_folder import RaterCache, drop_raters, load_raters, solve_all, store_raters

LOG = logs.get("stream")


class ItemVectorWriter:
    def __init__(self, directory: Path, store: ModelStore, movies: pd.DataFrame | None,
                 tags: pd.DataFrame | None = None):  # fmt: skip
        self.directory = Path(directory)  # under the storage every executor reads
        self.store = store
        self.movies, self.tags = movies, tags
        self.version: str | None = None
        self._model = None
        self._prior_cache: dict = {}
        self._prior_version: str | None = None
        self._overlay: ItemOverlay | None = None  # what the executors were last given
        self._raters = RaterCache()

    def model(self):
        version = self.store.current_version()
        if version is not None and (self._model is None or self._model.version != version):
            self._model = self.store.load(version)
        return self._model

    def seeds(self, history: pd.DataFrame) -> pd.DataFrame:
        """Training ratings of the movies CURRENT knows below --min-support (history: latest per
        pair): their item solve covers all of their ratings, training ones included."""
        cols = {"movie_id": "int64", "user_id": "int32", "rating": "float32", "timestamp": "int64"}
        model = self.model() if len(history) else None
        if model is None or model.items.servable is None:
            return pd.DataFrame({c: pd.Series(dtype=t) for c, t in cols.items()})
        pos, known = model.items.rows(history["movie_id"].to_numpy())
        under = known & ~model.items.servable[pos]
        return history.loc[under, list(cols)].astype(cols)

    def apply(self, sink: Sink, ratings: pd.DataFrame, now: float) -> None:
        """A batch's ratings of streamed movies (inside its transaction): keep the raters, re-solve
        the movies they touch, upsert their vectors, then refresh the overlay."""
        if ratings.empty:
            return
        stored = store_raters(sink, ratings)
        model = self.model()
        if model is None:  # no version yet: the raters wait for one
            return
        movies = np.unique(ratings["movie_id"].to_numpy(np.int64))
        served = model.items.serves(movies)
        drop_raters(sink, movies[served].tolist())
        self._raters.drop(movies[served])
        raters = self._raters.raters(sink, model, stored, movies[~served].tolist())
        solved = solve_all(model, raters, self._priors(model))
        self._upsert(sink, model.version, solved, now)
        self.publish(sink, solved)

    def _priors(self, model) -> dict:
        if self._prior_version != model.version:
            self._prior_cache, self._prior_version = load_priors(self.directory, model.version), model.version
        return self._prior_cache

    def _upsert(self, sink: Sink, version: str, solved: list[dict], now: float) -> None:
        sink.upsert(item_vectors, [
            {"movie_id": r["movie_id"], "model_version": version, "n_ratings": r["n_ratings"],
             "source": "stream", "vector": r["vector"], "bias": r["bias"], "updated_at": now}
            for r in solved
        ], ["model_version", "n_ratings", "source", "vector", "bias", "updated_at"])  # fmt: skip

    def publish(self, sink: Sink, solved: list[dict] | None = None) -> None:
        """Write the overlay of CURRENT's version for the executors' next tasks: read from the table
        once per version, then only this batch's `solved` rows laid over it (O(batch), not
        O(streamed movies), per batch). A batch retried after a failed commit solves the same rows
        again, so the kept overlay never differs from the table for long."""
        model = self.model()
        if model is None:
            return
        if solved is None or self._overlay is None or self._overlay.version != model.version:
            found = sink.query(sa.select(item_vectors).where(item_vectors.c.model_version == model.version))
            self._overlay = ItemOverlay.of_rows(model.version, [r._asdict() for r in found],
                                                model.ranking.rank, model.items.rank)  # fmt: skip
        elif solved:
            rows = [{**r, "model_version": model.version, "source": "stream"} for r in solved]
            self._overlay = self._overlay.merged(
                ItemOverlay.of_rows(model.version, rows, model.ranking.rank, model.items.rank)
            )
        else:
            return
        write_overlay(self.directory, self._overlay)

    def write_priors(self, model) -> None:
        """Content vectors of the catalogue's movies the version does not serve from training: what
        their item solve is pulled towards (streamrec.item_foldin, `prior_weight`)."""
        if getattr(model, "content", None) is None or self.movies is None:
            return
        served = model.items.serves(self.movies["movie_id"].to_numpy())
        ids, vectors = model.content.vectors(self.movies[~served], self.tags)
        write_priors(self.directory, model.version, ids, vectors)
        # Retention: the priors of versions the store has pruned go with them.
        prune_priors(self.directory, set(self.store.versions()) | {model.version})

    def swap(self, sink: Sink, version: str, now: float) -> None:
        """A new version is live: drop what it serves from training, re-solve the other streamed
        movies against its user factors, content vectors for the rest."""
        model = self.model()
        if model is None or model.version != version:
            return
        self._raters.clear()  # its raters were read for the version before
        stored = pd.DataFrame([r._asdict() for r in sink.query(sa.select(item_vectors))],
                              columns=[c.name for c in item_vectors.columns])  # fmt: skip
        servable = model.items.serves(stored["movie_id"].to_numpy(np.int64))
        dropped = stored["movie_id"][servable].astype(int).tolist()
        if dropped:
            sink.execute(sa.delete(item_vectors).where(item_vectors.c.movie_id.in_(dropped)))
        rated = np.array([r[0] for r in sink.query(sa.select(item_raters.c.movie_id).distinct())], np.int64)
        drop_raters(sink, rated[model.items.serves(rated)].tolist())
        self.write_priors(model)
        # Only movies the stream has solved before (not the training raters seeded at first start).
        streamed = stored["movie_id"][~servable & (stored["source"] == "stream")].astype(int).tolist()
        solved = solve_all(model, load_raters(sink, model, streamed), self._priors(model)) if streamed else []
        self._upsert(sink, version, solved, now)
        added = 0
        if (content := content_overlay(model, self.movies, self.tags)) is not None:
            current = set(stored["movie_id"][~servable & (stored["model_version"] == version)].astype(int))
            current |= {r["movie_id"] for r in solved}
            counts = dict(zip(stored["movie_id"].astype(int), stored["n_ratings"].fillna(0).astype(int),
                              strict=True))  # fmt: skip
            todo = [j for j, m in enumerate(content.ids) if int(m) not in current]
            zeros = [0.0] * model.items.rank
            sink.upsert(item_vectors, [
                {"movie_id": int(content.ids[j]), "model_version": version,
                 "n_ratings": counts.get(int(content.ids[j]), 0), "source": "content", "bias": 0.0,
                 "updated_at": now,
                 "vector": json.dumps({"ranking": [round(float(x), 7) for x in content.rank_factors[j]],
                                       "explicit": zeros})}
                for j in todo
            ], ["model_version", "n_ratings", "source", "vector", "bias", "updated_at"])  # fmt: skip
            added = len(todo)
        LOG.info(f"item vectors for {version}: {len(dropped)} now served from training, "
                 f"{len(solved)} re-solved from their raters, {added} from content")  # fmt: skip
        self.publish(sink)

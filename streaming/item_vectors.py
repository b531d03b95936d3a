"""The driver's side of the item fold-in: the `item_vectors` table and the executors' overlay file.

Each fold-in batch's item rows (O(movies rated in the batch), solved on the executors by
streaming.item_processor) are upserted into `item_vectors` in the batch's own transaction; the
overlay file that the next batch's tasks lay over CURRENT (streamrec.item_overlay) is rewritten
from that table. On a hot swap, vectors of movies the new version serves from training are
dropped; movies it still does not know get a content vector in the new version's space (when the
version has a content map) until their next rating re-solves them against the new user factors.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from streamrec import logs
from streamrec.item_overlay import ItemOverlay, content_overlay, write_overlay, write_priors
from streamrec.model_store import ModelStore
from streamrec.sink import Sink, item_vectors

LOG = logs.get("stream")


class ItemVectorWriter:
    def __init__(self, directory: Path, store: ModelStore, movies: pd.DataFrame | None,
                 tags: pd.DataFrame | None = None):  # fmt: skip
        self.directory = Path(directory)  # under the storage every executor reads
        self.store = store
        self.movies, self.tags = movies, tags
        self.version: str | None = None
        self._model = None

    def model(self):
        version = self.store.current_version()
        if version is not None and (self._model is None or self._model.version != version):
            self._model = self.store.load(version)
        return self._model

    def initial_raters(self, history: pd.DataFrame) -> pd.DataFrame:
        """Training ratings of the movies CURRENT knows below --min-support: their item solve
        covers all of their ratings, training ones included."""
        cols = {"route": "int64", "user_id": "int32", "rating": "float32", "timestamp": "int64"}
        model = self.model() if len(history) else None
        if model is None or model.items.servable is None:
            return pd.DataFrame({c: pd.Series(dtype=t) for c, t in cols.items()})
        pos, known = model.items.rows(history["movie_id"].to_numpy())
        under = known & ~model.items.servable[pos]
        rows = history[under]
        return pd.DataFrame({"route": rows["movie_id"], "user_id": rows["user_id"], "rating": rows["rating"],
                             "timestamp": rows["timestamp"]}).astype(cols)  # fmt: skip

    def apply(self, sink: Sink, rows: pd.DataFrame, now: float) -> None:
        """Upsert a batch's solved movies (inside its transaction), then refresh the overlay."""
        if rows.empty:
            return
        sink.upsert(item_vectors, [
            {"movie_id": int(r.item_movie_id), "model_version": r.model_version,
             "n_ratings": int(r.item_n_ratings), "source": "stream", "vector": r.item_vector,
             "bias": float(r.item_bias), "updated_at": now}
            for r in rows.itertuples()
        ], ["model_version", "n_ratings", "source", "vector", "bias", "updated_at"])  # fmt: skip
        self.publish(sink)

    def publish(self, sink: Sink) -> None:
        """Write the overlay of CURRENT's version from the table, for the executors' next tasks."""
        model = self.model()
        if model is None:
            return
        found = sink.query(sa.select(item_vectors).where(item_vectors.c.model_version == model.version))
        overlay = ItemOverlay.of_rows(model.version, [r._asdict() for r in found], model.ranking.rank,
                                      model.items.rank)  # fmt: skip
        write_overlay(self.directory, overlay)

    def write_priors(self, model) -> None:
        """Content vectors of the catalogue's movies the version does not serve from training: what
        their item solve is pulled towards (streamrec.item_foldin, `prior_weight`)."""
        if getattr(model, "content", None) is None or self.movies is None:
            return
        pos, known = model.items.rows(self.movies["movie_id"].to_numpy())
        servable = known.copy()
        if model.items.servable is not None:
            servable[known] = model.items.servable[pos[known]]
        ids, vectors = model.content.vectors(self.movies[~servable], self.tags)
        write_priors(self.directory, model.version, ids, vectors)

    def swap(self, sink: Sink, version: str, now: float) -> None:
        """A new version is live: drop what it serves from training, content vectors for the rest."""
        model = self.model()
        if model is None or model.version != version:
            return
        stored = pd.DataFrame([r._asdict() for r in sink.query(sa.select(item_vectors))],
                              columns=[c.name for c in item_vectors.columns])  # fmt: skip
        pos, known = model.items.rows(stored["movie_id"].to_numpy())
        servable = known.copy()
        if model.items.servable is not None:
            servable[known] = model.items.servable[pos[known]]
        dropped = stored["movie_id"][servable].astype(int).tolist()
        if dropped:
            sink.execute(sa.delete(item_vectors).where(item_vectors.c.movie_id.in_(dropped)))
        added = 0
        if (content := content_overlay(model, self.movies, self.tags)) is not None:
            current = set(stored["movie_id"][~servable & (stored["model_version"] == version)].astype(int))
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
        self.write_priors(model)
        LOG.info(f"item vectors for {version}: {len(dropped)} now served from training, {added} from content")
        self.publish(sink)

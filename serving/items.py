"""Serving's view of the movies a version does not serve from training: the stream's
`item_vectors` of that version, over content vectors of the catalogue's movies with no rating
(streamrec.item_overlay). Every list and `similar` go through the model this returns."""

from __future__ import annotations

import sqlalchemy as sa

from streamrec.item_overlay import laid_overlay, with_overlay
from streamrec.model_store import Model
from streamrec.sink import Sink, item_vectors

_v = item_vectors.c
ROWS = sa.select(_v.movie_id, _v.model_version, _v.n_ratings, _v.source, _v.vector, _v.bias).where(
    _v.model_version == sa.bindparam("version")
)
STAMP = sa.select(sa.func.count(), sa.func.max(_v.updated_at)).where(
    _v.model_version == sa.bindparam("version")
)


def stored_rows(sink: Sink | None, version: str) -> list[dict]:
    """`item_vectors` rows of `version` (none before the stream created the table)."""
    if sink is None or not sink.has_table("item_vectors"):
        return []
    return [r._asdict() for r in sink.query(ROWS, {"version": version})]


def stamp(sink: Sink | None, version: str) -> tuple:
    """Changes whenever the stream writes a vector of `version`: (count, newest update)."""
    if sink is None or not sink.has_table("item_vectors"):
        return (0, None)
    return tuple(sink.query(STAMP, {"version": version})[0])


def laid_model(model: Model, sink: Sink | None, movies=None, tags=None) -> Model:
    """`model` with the stream's and the content vectors of its version laid over it."""
    return with_overlay(model, laid_overlay(model, stored_rows(sink, model.version), movies, tags))

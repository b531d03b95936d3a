"""The lists serving answers, and the model they come from: CURRENT with the movies the stream has
folded in since laid over it (serving.items), recommendations for a known or an anonymous user,
similar movies and title search.

It re-reads CURRENT on every request (one tiny file) and loads a new version's factors, titles and
training ratings once, so a publish reaches the next request without a restart.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

from streamrec import sink as db
from streamrec.content import load_tags
from streamrec.errors import InvalidRequest, ModelStoreError, NotFound
from streamrec.events import valid_rating
from streamrec.history import HistorySpec, latest_per_pair
from streamrec.model_store import Model, ModelStore
from streamrec.movielens import load_movies

from .catalog import Catalog
from .items import laid_model
from .items import stamp as items_stamp
from .lsh import RandomProjectionLSH
from .pending import NOTHING, PendingBuffer, PendingRating
from .ratings_index import RatingsIndex
from .recommend import Recommendations, explanations, recommend, similar_candidates, similar_exact
from .sink_reads import SinkReads

ITEMS_CHECK_S = 1.0  # how often a request looks for newly streamed movies
INCOMPLETE_NOTE = (
    "read-your-writes: this user's pending events overflowed the buffer; the list may not show "
    "their newest ratings until the stream applies them"
)

# The hot path's read, built once: SQLAlchemy then reuses its compiled form (bench/sink_bench.py:
# 22.9 us a read, against 68.6 us for a select built per read and 9.8 us for raw sqlite3).
_r = db.user_recommendations.c
STREAM_LIST = (
    sa.select(_r.movie_id, _r.score, _r.predicted_rating, _r.model_version, _r.source)
    .where(_r.user_id == sa.bindparam("user_id"))
    .order_by(_r.rank)
)


@dataclass
class Loaded:
    """A model version with what serving needs beside it, loaded together."""

    model: Model
    movies: pd.DataFrame  # movie_id, title, genres (list)
    catalog: Catalog  # the same as dicts, for per-item lookups
    support: dict[int, int]  # ratings per movie the model serves (training; streamed: live too)
    ratings: RatingsIndex
    lsh: RandomProjectionLSH
    base: Model  # CURRENT as published (`model` has the streamed and content movies laid over it)
    tags: pd.DataFrame | None = None
    items_stamp: tuple = ()
    checked_at: float = 0.0
    data_key: tuple = ()  # what titles, tags and the ratings index's base were read from


class Lists:
    """CURRENT (with the streamed movies) and every list served from it."""

    def __init__(
        self,
        store: ModelStore,
        reads: SinkReads,
        event_log_dir: Path,
        data: Path,
        topic: str | None = None,
        pending: PendingBuffer | None = None,
    ):
        self.store = store
        self.reads = reads
        self.event_log_dir = event_log_dir
        self.data = data  # titles and genres while no model is published
        self.topic = topic  # the ratings topic: which offsets the ratings index covers
        self.pending = pending  # read-your-writes: events the stream has not applied (None: off)
        self._loaded: Loaded | None = None
        self._load_lock = threading.Lock()
        self._fallback_movies: pd.DataFrame | None = None
        self._fallback_catalog: Catalog | None = None

    # -- the model --------------------------------------------------------------------------------

    def current(self) -> Loaded:
        """CURRENT's model with titles and the ratings index; raises ModelStoreError before a publish.

        The model includes the movies the stream has folded in since (and content vectors of
        those with no rating): re-laid when `item_vectors` changes, checked at most once a second."""
        version = self.store.current_version()
        loaded = self._loaded
        if loaded is not None and loaded.base.version == version and not self._items_changed(loaded):
            return loaded
        with self._load_lock:
            loaded = self._loaded
            if loaded is None or loaded.base.version != version:
                base = self.store.load(version)
                spec = base.meta.history
                key = data_key(spec)
                if loaded is not None and loaded.data_key == key:
                    # A hot swap on the same data: the titles, tags and ratings index (which tails
                    # the event log itself) stay; rebuilding the index read all of the history
                    # with pandas while the requests behind this one waited (2-4 s in the soak).
                    movies, tags, ratings = loaded.movies, loaded.tags, loaded.ratings
                else:
                    movies = load_movies(Path(spec.data))
                    tags = load_tags(Path(spec.data))
                    ratings = RatingsIndex(spec, self.event_log_dir, topic=self.topic)
            else:
                base, movies, tags, ratings = loaded.base, loaded.movies, loaded.tags, loaded.ratings
                key = loaded.data_key
            stamp = items_stamp(self.reads.sink_or_none(), base.version)
            model = laid_model(base, self.reads.sink_or_none(), movies, tags)
            self._loaded = Loaded(
                model,
                movies,
                Catalog.of(movies),
                {}
                if model.items.support is None
                else dict(zip(model.items.ids.tolist(), model.items.support.tolist(), strict=True)),
                ratings,
                RandomProjectionLSH(model.ranking.factors),
                base,
                tags,
                stamp,
                time.monotonic(),
                key,
            )
            return self._loaded

    def ratings_index(self) -> RatingsIndex | None:
        """The loaded version's ratings index, without loading anything (None before a load)."""
        loaded = self._loaded
        return None if loaded is None else loaded.ratings

    def _items_changed(self, loaded: Loaded) -> bool:
        if time.monotonic() - loaded.checked_at < ITEMS_CHECK_S:
            return False
        stamp = items_stamp(self.reads.sink_or_none(), loaded.base.version)
        if stamp == loaded.items_stamp:
            loaded.checked_at = time.monotonic()
            return False
        return True

    def movies(self) -> pd.DataFrame:
        """Titles and genres: CURRENT's dataset, or the configured one before any model."""
        try:
            return self.current().movies
        except ModelStoreError:
            if self._fallback_movies is None:
                self._fallback_movies = load_movies(self.data)
            return self._fallback_movies

    def catalog(self) -> Catalog:
        try:
            return self.current().catalog
        except ModelStoreError:
            if self._fallback_catalog is None:
                self._fallback_catalog = Catalog.of(self.movies())
            return self._fallback_catalog

    # -- recommendations --------------------------------------------------------------------------

    def recommend_user(self, user_id: int, k: int, genres: list[str] | None, explain: bool = False) -> dict:
        """The stream's list when it is fresh for CURRENT and covers every pending event of the
        user, else the user's known ratings folded in now (the ratings index plus the pending
        events, latest per movie by event time; a user the model trained on and nothing newer:
        the same vector, recomputed), else the cold-start list. `explain`: each item's score
        split over the user's known ratings. `pending_events` in the answer: how many pending
        ratings the list folded in at request time."""
        for _ in range(2):
            out = self._recommend_user(self.current(), user_id, k, genres, explain)
            if out is not None:
                return out
        return self._recommend_user(self.current(), user_id, k, genres, explain, consistent=False)

    def _recommend_user(
        self, cur: Loaded, user_id: int, k: int, genres, explain: bool, consistent: bool = True
    ) -> dict | None:
        model = cur.model
        # Pending first, then the index: the buffer drops an event only after an index snapshot
        # holding it is in place, so reading in this order cannot miss one in between.
        pending = self.pending.user(user_id) if self.pending is not None else NOTHING
        notes = [] if pending.complete else [INCOMPLETE_NOTE]
        if not genres and pending.unlisted == 0:
            stored = self.reads.rows(STREAM_LIST, {"user_id": user_id}, ("user_recommendations",))
            if stored and len(stored) >= k and all(r[3] == model.version for r in stored):
                ids = [int(r[0]) for r in stored[:k]]
                out = self._response(
                    cur.catalog,
                    user_id,
                    model.version,
                    "stream",
                    ids,
                    [r[1] for r in stored[:k]],
                    [r[2] for r in stored[:k]],
                    notes,
                )
                if explain:
                    mine = with_pending(cur.ratings.user(user_id), pending.ratings)
                    _attach(out, explanations(model.scorer, mine, ids, cur.catalog))
                return out
        mine = cur.ratings.user(user_id)
        if consistent and self._loaded is not None and self._loaded.ratings is not cur.ratings:
            return None  # a new model version's index replaced this one meanwhile: read again
        mine = with_pending(mine, pending.ratings)
        recs = recommend(
            model,
            user_id,
            mine,
            cur.catalog,
            k,
            genres=genres,
            explain=explain,
            fold_in=bool(pending.ratings),
        )
        out = self._from_recs(cur.catalog, recs)
        out["notes"] = notes + out["notes"]
        out["pending_events"] = len(pending.ratings)
        return out

    def recommend_anonymous(
        self, ratings: list[tuple[int, float]], k: int, genres: list[str] | None, explain: bool = False
    ) -> dict:
        """A user who exists only in this request: their ratings folded in, nothing stored."""
        for movie_id, rating in ratings:
            if not valid_rating(rating):
                raise InvalidRequest(
                    f"rating {rating} for movie {movie_id} is outside 0.5..5.0 in steps of 0.5"
                )
        cur = self.current()
        last = dict(ratings)  # a movie rated twice: the later rating wins
        rated = pd.DataFrame({"movie_id": list(last), "rating": list(last.values())})
        recs = recommend(
            cur.model,
            None,
            None,
            cur.catalog,
            k,
            rated=rated if len(rated) else None,
            genres=genres,
            explain=explain,
        )
        return self._from_recs(cur.catalog, recs)

    def _from_recs(self, catalog: Catalog, recs: Recommendations) -> dict:
        t = recs.items
        source = "anonymous" if recs.user_id is None and recs.source == "fold-in" else recs.source
        out = self._response(
            catalog,
            recs.user_id,
            recs.model_version,
            source,
            t["movie_id"].tolist(),
            t["score"].tolist(),
            t["predicted_rating"].tolist(),
            recs.notes,
        )
        if "explanation" in t:
            _attach(out, t["explanation"].tolist())
        return out

    @staticmethod
    def _response(cat: Catalog, user_id, version, source, ids, scores, predicted, notes) -> dict:
        items = [
            {
                "movie_id": int(m),
                "title": cat.title(m),
                "genres": cat.genres_of(m),
                "score": round(float(s), 4),
                "predicted_rating": round(float(p), 2),
            }
            for m, s, p in zip(ids, scores, predicted, strict=True)
        ]
        return {
            "user_id": user_id,
            "model_version": version,
            "source": source,
            "pending_events": 0,
            "notes": notes,
            "items": items,
        }

    def genre_filter(self, genres: list[str] | None) -> list[str] | None:
        if not genres:
            return None
        catalog = self.catalog()
        unknown = [g for g in genres if not catalog.known_genre(g)]
        if unknown:
            raise InvalidRequest(f"unknown genre(s): {', '.join(unknown)}")
        return genres

    # -- movies and similar -----------------------------------------------------------------------

    def similar(self, movie_id: int, metric: str, k: int, min_count: int | None) -> dict:
        cur = self.current()
        model = cur.model
        pos, known = model.items.rows(np.array([movie_id]))
        if not known[0]:
            raise NotFound(f"movie {movie_id} is unknown to model {model.version}")
        candidates = similar_candidates(model, min_count)
        if metric == "lsh":
            rows, score = cur.lsh.query(int(pos[0]), k, candidates)
            ids = model.items.ids[rows]
        else:
            ids, score = similar_exact(model, movie_id, k, metric, candidates)
        key = "similarity" if metric == "cosine" else "distance"
        items = [
            {
                "movie_id": int(m),
                "title": cur.catalog.title(m),
                "genres": cur.catalog.genres_of(m),
                key: round(float(s), 4),
                "n_ratings": cur.support.get(int(m)),
            }
            for m, s in zip(ids, score, strict=True)
        ]
        return {
            "movie_id": movie_id,
            "title": cur.catalog.title(movie_id),
            "metric": metric,
            "model_version": model.version,
            "items": items,
        }

    def search_movies(self, q: str, limit: int) -> list[dict]:
        """Titles containing `q` (case-insensitive), most rated in training first."""
        movies = self.movies()
        hits = movies[movies["title"].str.contains(q, case=False, regex=False)]
        support = self.support()
        order = hits["movie_id"].map(lambda m: -support.get(int(m), 0))
        hits = hits.assign(_o=order.to_numpy()).sort_values(["_o", "movie_id"]).head(limit)
        return [
            {"movie_id": int(m), "title": t, "genres": list(g), "n_ratings": support.get(int(m), 0)}
            for m, t, g in hits[["movie_id", "title", "genres"]].itertuples(index=False)
        ]

    def support(self) -> dict[int, int]:
        try:
            return self.current().support
        except ModelStoreError:
            return {}


def data_key(spec: HistorySpec) -> tuple:
    """The MovieLens folder's files (name, size, mtime) and the cut: what the titles, tags and the
    ratings index's base come from (not the event log's snapshot: the index reads the log as it
    grows). Two versions with the same key share them."""
    folder = Path(spec.data)
    found = folder.iterdir() if folder.is_dir() else ()  # a missing folder fails where it is read
    files = sorted((f.name, st.st_size, st.st_mtime_ns) for f in found if f.is_file() and (st := f.stat()))
    return (str(folder.resolve()), spec.until, spec.split_at, tuple(files))


def with_pending(known: pd.DataFrame, pending: list[PendingRating]) -> pd.DataFrame:
    """The user's known ratings with their pending ones laid over: latest per movie by event time,
    a tie going to the pending rating (the newer arrival, as in the stream's state)."""
    if not pending:
        return known
    extra = pd.DataFrame(
        {
            "movie_id": np.array([p.movie_id for p in pending], np.int64),
            "rating": np.array([p.rating for p in pending], np.float64),
            "timestamp": np.array([p.timestamp for p in pending], np.int64),
        }
    )
    both = pd.concat([known, extra], ignore_index=True)
    return latest_per_pair(both.assign(user_id=0)).drop(columns="user_id")


def _attach(response: dict, explained: list[dict]) -> None:
    for item, explanation in zip(response["items"], explained, strict=True):
        item["explanation"] = explanation

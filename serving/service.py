"""What the HTTP API serves, without HTTP: lists, similar movies, live stats, models, ingestion.

One `Service` per server process. It re-reads CURRENT on every request (one tiny file) and
loads a new version's factors, titles and training ratings once, so a publish reaches the next
request without a restart. The sink DB is read through one connection per thread; the stream
is the only writer.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.sql.util import find_tables

from streamrec import sink as db
from streamrec.content import load_tags
from streamrec.errors import InvalidRequest, KafkaUnavailable, ModelStoreError, NotFound
from streamrec.events import check, encode, valid_rating
from streamrec.model_store import Model, ModelStore
from streamrec.movielens import load_movies
from streamrec.sink import Sink

from .catalog import Catalog
from .items import laid_model
from .items import stamp as items_stamp
from .lsh import RandomProjectionLSH
from .ratings_index import RatingsIndex
from .recommend import Recommendations, recommend, similar_candidates, similar_exact

QUERIES = db.STREAM_QUERIES
ITEMS_CHECK_S = 1.0  # how often a request looks for newly streamed movies

# The hot path's read, built once: SQLAlchemy then reuses its compiled form (bench/sink_bench.py:
# 22.9 us a read, against 68.6 us for a select built per read and 9.8 us for raw sqlite3).
_r = db.user_recommendations.c
STREAM_LIST = (
    sa.select(_r.movie_id, _r.score, _r.predicted_rating, _r.model_version, _r.source)
    .where(_r.user_id == sa.bindparam("user_id"))
    .order_by(_r.rank)
)


@dataclass(frozen=True)
class ServeConfig:
    model_root: Path
    sink_url: str
    event_log_dir: Path
    checkpoint_dir: Path  # the stream's checkpoints (its Kafka offsets, for lag)
    data: Path  # titles and genres while no model is published
    bootstrap: str | None = None  # None: POST /events answers 503
    topic: str = "ratings"

    @classmethod
    def at_home(cls, home: Path, sink_url: str | None = None, **kw) -> ServeConfig:
        """The layout every command shares under a state directory ($STREAMREC_HOME)."""
        from streamrec.event_log import event_log_dir
        from streamrec.settings import BUNDLED_DATA, spark_storage
        from streamrec.settings import home as home_dir
        from streamrec.sink import default_url

        kw.setdefault("data", BUNDLED_DATA)
        shared = spark_storage() if home == home_dir() else home  # the stream's files, if shared
        return cls(model_root=home / "models", sink_url=sink_url or default_url(home),
                   event_log_dir=event_log_dir(shared), checkpoint_dir=shared / "checkpoints",
                   **kw)  # fmt: skip


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


class Service:
    def __init__(self, cfg: ServeConfig):
        self.cfg = cfg
        self.store = ModelStore(cfg.model_root)
        self._loaded: Loaded | None = None
        self._load_lock = threading.Lock()
        self._local = threading.local()
        self._producer = None
        self._producer_lock = threading.Lock()
        self._producer_failed_at = -1e9
        self._fallback_movies: pd.DataFrame | None = None
        self._fallback_catalog: Catalog | None = None

    # -- model and sink ---------------------------------------------------------------------------

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
                movies = load_movies(Path(spec.data))
                tags = load_tags(Path(spec.data))
                ratings = RatingsIndex(spec, self.cfg.event_log_dir)
            else:
                base, movies, tags, ratings = loaded.base, loaded.movies, loaded.tags, loaded.ratings
            stamp = items_stamp(self._sink_or_none(), base.version)
            model = laid_model(base, self._sink_or_none(), movies, tags)
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
            )
            return self._loaded

    def _items_changed(self, loaded: Loaded) -> bool:
        if time.monotonic() - loaded.checked_at < ITEMS_CHECK_S:
            return False
        stamp = items_stamp(self._sink_or_none(), loaded.base.version)
        if stamp == loaded.items_stamp:
            loaded.checked_at = time.monotonic()
            return False
        return True

    def _sink_or_none(self) -> Sink | None:
        try:
            return self.sink()
        except Exception:  # noqa: BLE001 - no sink yet (nothing streamed): the version alone
            return None

    def movies(self) -> pd.DataFrame:
        """Titles and genres: CURRENT's dataset, or the configured one before any model."""
        try:
            return self.current().movies
        except ModelStoreError:
            if self._fallback_movies is None:
                self._fallback_movies = load_movies(self.cfg.data)
            return self._fallback_movies

    def catalog(self) -> Catalog:
        try:
            return self.current().catalog
        except ModelStoreError:
            if self._fallback_catalog is None:
                self._fallback_catalog = Catalog.of(self.movies())
            return self._fallback_catalog

    def sink(self) -> Sink:
        s = getattr(self._local, "sink", None)
        if s is None:
            s = self._local.sink = Sink(self.cfg.sink_url, threadsafe=True)
        return s

    def rows(self, stmt: sa.Select, params: dict | None = None, tables: tuple[str, ...] | None = None):
        """Rows of a read, or none while the stream has not created its tables yet (`tables`:
        the statement's, when the caller knows them; else found by walking the statement)."""
        sink = self.sink()
        names = tables if tables is not None else [t.name for t in find_tables(stmt)]
        if not all(self._has_table(sink, t) for t in names):
            return []
        return sink.query(stmt, params)

    def _has_table(self, sink: Sink, table: str) -> bool:
        known = getattr(self._local, "tables", None)
        if known is None or time.monotonic() - known[0] > 5:
            known = self._local.tables = (time.monotonic(), set())
        if table not in known[1] and sink.has_table(table):
            known[1].add(table)
        return table in known[1]

    # -- recommendations --------------------------------------------------------------------------

    def recommend_user(self, user_id: int, k: int, genres: list[str] | None) -> dict:
        """The stream's list when it is fresh for CURRENT, else the user's known ratings folded
        in now (a user the model trained on and nothing newer: the same vector, recomputed), else
        the cold-start list."""
        cur = self.current()
        model = cur.model
        if not genres:
            stored = self.rows(STREAM_LIST, {"user_id": user_id}, ("user_recommendations",))
            if stored and len(stored) >= k and all(r[3] == model.version for r in stored):
                ids = [int(r[0]) for r in stored[:k]]
                return self._response(
                    cur.catalog,
                    user_id,
                    model.version,
                    "stream",
                    ids,
                    [r[1] for r in stored[:k]],
                    [r[2] for r in stored[:k]],
                    [],
                )
        mine = cur.ratings.user(user_id)
        recs = recommend(model, user_id, mine, cur.catalog, k, genres=genres)
        return self._from_recs(cur.catalog, recs)

    def recommend_anonymous(self, ratings: list[tuple[int, float]], k: int, genres: list[str] | None) -> dict:
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
            cur.model, None, None, cur.catalog, k, rated=rated if len(rated) else None, genres=genres
        )
        return self._from_recs(cur.catalog, recs)

    def _from_recs(self, catalog: Catalog, recs: Recommendations) -> dict:
        t = recs.items
        source = "anonymous" if recs.user_id is None and recs.source == "fold-in" else recs.source
        return self._response(
            catalog,
            recs.user_id,
            recs.model_version,
            source,
            t["movie_id"].tolist(),
            t["score"].tolist(),
            t["predicted_rating"].tolist(),
            recs.notes,
        )

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
        support = self._support()
        order = hits["movie_id"].map(lambda m: -support.get(int(m), 0))
        hits = hits.assign(_o=order.to_numpy()).sort_values(["_o", "movie_id"]).head(limit)
        return [
            {"movie_id": int(m), "title": t, "genres": list(g), "n_ratings": support.get(int(m), 0)}
            for m, t, g in hits[["movie_id", "title", "genres"]].itertuples(index=False)
        ]

    def _support(self) -> dict[int, int]:
        try:
            return self.current().support
        except ModelStoreError:
            return {}

    def movie(self, movie_id: int) -> dict:
        catalog = self.catalog()
        m = db.movie_stats.c
        stats = self.rows(sa.select(m.n_ratings, m.avg_rating, m.last_event_ts).where(m.movie_id == movie_id))
        known = movie_id in catalog.titles
        if not known and not stats:
            raise NotFound(f"movie {movie_id} is unknown")
        return {
            "movie_id": movie_id,
            "title": catalog.titles.get(movie_id),
            "genres": catalog.genres_of(movie_id),
            "training_ratings": self._support().get(movie_id),
            "stats": None
            if not stats
            else {
                "n_ratings": int(stats[0][0]),
                "avg_rating": _num(stats[0][1]),
                "last_event_ts": stats[0][2],
            },
        }

    def user(self, user_id: int) -> dict:
        a, v = db.user_activity.c, db.user_vectors.c
        activity = self.rows(
            sa.select(a.n_ratings, a.avg_rating, a.first_event_ts, a.last_event_ts).where(
                a.user_id == user_id
            )
        )
        vector = self.rows(
            sa.select(v.model_version, v.n_ratings, v.n_used, v.updated_at).where(v.user_id == user_id)
        )
        try:
            rated = len(self.current().ratings.user(user_id))
        except ModelStoreError:
            rated = 0
        if not activity and not vector and not rated:
            raise NotFound(f"user {user_id} is unknown")
        a = activity[0] if activity else None
        v = vector[0] if vector else None
        return {
            "user_id": user_id,
            "rated_movies": rated,
            "activity": None
            if a is None
            else {
                "n_ratings": int(a[0]),
                "avg_rating": _num(a[1]),
                "first_event_ts": a[2],
                "last_event_ts": a[3],
            },
            "stream_vector": None
            if v is None
            else {"model_version": v[0], "n_ratings": v[1], "n_used": v[2], "updated_at": _num(v[3])},
        }

    # -- live stats -------------------------------------------------------------------------------

    def stats_movies(self, order: str, min_count: int, limit: int) -> list[dict]:
        m = db.movie_stats.c
        first, second = (m.n_ratings, m.avg_rating) if order == "n_ratings" else (m.avg_rating, m.n_ratings)
        rows = self.rows(
            sa.select(m.movie_id, m.title, m.n_ratings, m.avg_rating, m.last_event_ts)
            .where(m.n_ratings >= min_count)
            .order_by(first.desc(), second.desc(), m.movie_id)
            .limit(limit)
        )
        return [
            {"movie_id": int(m), "title": t, "n_ratings": int(n), "avg_rating": _num(a), "last_event_ts": ts}
            for m, t, n, a, ts in rows
        ]

    def stats_genres(self) -> list[dict]:
        g = db.genre_stats.c
        rows = self.rows(sa.select(g.genre, g.n_ratings, g.avg_rating).order_by(g.n_ratings.desc(), g.genre))
        return [{"genre": g, "n_ratings": int(n), "avg_rating": _num(a)} for g, n, a in rows]

    def stats_histogram(self) -> list[dict]:
        h = db.rating_histogram.c
        rows = self.rows(sa.select(h.rating, h.n_ratings).order_by(h.rating))
        return [{"rating": float(r), "n_ratings": int(n)} for r, n in rows]

    def stats_trending(self, window: str, limit: int) -> dict:
        if window == "latest":
            found = self.rows(sa.select(sa.func.max(db.trending.c.window_start)))
            start = found[0][0] if found else None
        else:
            try:
                start = int(window)
            except ValueError:
                raise InvalidRequest(
                    f"window must be 'latest' or a window start in epoch seconds, got {window!r}"
                ) from None
        if start is None:
            return {"window_start": None, "window_end": None, "items": []}
        t = db.trending.c
        rows = self.rows(
            sa.select(t.window_end, t.movie_id, t.n_ratings, t.avg_rating)
            .where(t.window_start == int(start))
            .order_by(t.n_ratings.desc(), t.avg_rating.desc(), t.movie_id)
            .limit(limit)
        )
        cat = self.catalog()
        return {
            "window_start": int(start),
            "window_end": int(rows[0][0]) if rows else None,
            "items": [
                {"movie_id": int(m), "title": cat.title(m), "n_ratings": int(n), "avg_rating": _num(a)}
                for _, m, n, a in rows
            ],
        }

    def stats_stream(self, batches: int) -> dict:
        """Per query: the latest batch, throughput and latency percentiles over recent batches."""
        m = db.stream_metrics.c
        recent = [
            tuple(row)
            for q in QUERIES
            for row in self.rows(
                sa.select(
                    m.query, m.batch_id, m.at, m.input_rows, m.rows_per_s, m.latency_p50_ms, m.latency_p95_ms
                )
                .where(m.query == q, m.batch_id >= 0)
                .order_by(m.batch_id.desc())
                .limit(batches)
            )
        ]
        cols = ["query", "batch_id", "at", "input_rows", "rows_per_s", "latency_p50_ms", "latency_p95_ms"]
        df = pd.DataFrame(recent, columns=cols).sort_values("at")
        # Arrival rate: a batch's rows over the time since the same query's previous batch
        # (Spark's rows_per_s is rows over the batch's own duration: processing speed, not load).
        gap = df.groupby("query")["at"].diff()
        df = df.assign(events_per_s=(df["input_rows"] / gap).where(gap > 0))
        queries = {}
        for q, g in df.groupby("query"):
            lat = g["latency_p95_ms"].dropna()
            p50 = g["latency_p50_ms"].dropna()
            last = g.iloc[-1]
            queries[q] = {
                "last_batch": int(last["batch_id"]),
                "last_at": _num(last["at"]),
                "batches": len(g),
                "input_rows": int(pd.to_numeric(g["input_rows"]).fillna(0).sum()),
                "rows_per_s": _num(g["rows_per_s"].dropna().iloc[-1])
                if g["rows_per_s"].notna().any()
                else None,
                "events_per_s": _num(g["events_per_s"].tail(10).median())
                if g["events_per_s"].notna().any()
                else None,
                "latency_p50_ms": _num(p50.median()) if len(p50) else None,
                "latency_p95_ms": _num(lat.quantile(0.95)) if len(lat) else None,
            }
        dead = self.rows(sa.select(sa.func.count()).select_from(db.dead_letters))
        series = [
            {
                "query": r.query,
                "batch_id": int(r.batch_id),
                "at": _num(r.at),
                "input_rows": None if pd.isna(r.input_rows) else int(r.input_rows),
                "rows_per_s": _num(r.rows_per_s),
                "events_per_s": _num(r.events_per_s),
                "latency_p50_ms": _num(r.latency_p50_ms),
                "latency_p95_ms": _num(r.latency_p95_ms),
            }
            for r in df.itertuples()
        ]
        return {"queries": queries, "dead_letters": int(dead[0][0]) if dead else 0, "batches": series}

    def dead_letters(self, limit: int) -> list[dict]:
        d = db.dead_letters.c
        rows = self.rows(
            sa.select(d.topic, d.kafka_partition, d.kafka_offset, d.reason, d.raw_value, d.batch_id)
            .order_by(d.batch_id.desc(), d.kafka_offset.desc())
            .limit(limit)
        )
        return [
            {
                "topic": t,
                "partition": int(p),
                "offset": int(o),
                "reason": r,
                "raw_value": None if v is None else str(v)[:200],
                "batch_id": b,
            }
            for t, p, o, r, v, b in rows
        ]

    # -- models -----------------------------------------------------------------------------------

    def models(self) -> list[dict]:
        current = self.store.current_version()
        out = []
        for v in reversed(self.store.versions()):  # newest first
            problem = self.store.check(v)
            meta = None if problem else self.store.metadata(v)
            m = meta.metrics if meta else {}
            out.append(
                {
                    "version": v,
                    "current": v == current,
                    "problem": problem,
                    "created_at": meta and meta.created_at,
                    "rmse": m.get("rmse"),
                    "ndcg_at_10": m.get("ndcg_at_10"),
                    "precision_at_10": m.get("precision_at_10"),
                    "popularity_ndcg_at_10": (m.get("popularity") or {}).get("ndcg_at_10"),
                    "ratings": meta and meta.counts.get("ratings"),
                }
            )
        return out

    def model_info(self, version: str) -> dict:
        if not version.startswith("v") or not (self.store.root / version).is_dir():
            raise NotFound(f"model {version} does not exist")
        problem = self.store.check(version)
        if problem:
            return {"version": version, "current": False, "problem": problem}
        meta = {k: v for k, v in self.store.metadata(version).to_dict().items() if k != "files"}
        return {
            **meta,
            "version": version,
            "current": version == self.store.current_version(),
            "problem": None,
        }

    # -- ingestion --------------------------------------------------------------------------------

    def validate_events(self, body: Any, now: int | None = None) -> list[dict]:
        """The event contract's rules (streamrec.events.check) on each event; a missing timestamp
        is the time of the request. Raises InvalidRequest naming the first broken rule."""
        events = body if isinstance(body, list) else [body]
        if not events:
            raise InvalidRequest("no events: send one rating object or a non-empty list")
        now = int(time.time()) if now is None else now
        out = []
        for i, e in enumerate(events):
            if isinstance(e, dict) and "timestamp" not in e:
                e = {**e, "timestamp": now}
            event, reason = check(e)
            if reason:
                where = f"event {i}: " if isinstance(body, list) else ""
                raise InvalidRequest(f"{where}{reason}")
            out.append(event)
        return out

    def publish(self, events: list[dict], timeout: float = 10.0) -> int:
        """Send the events to the ratings topic (key = user id, acks=all, idempotent); returns how
        many the broker acknowledged."""
        producer = self._kafka_producer()
        try:
            futures = [
                producer.send(self.cfg.topic, key=k, value=v)
                for k, v in (encode(e["user_id"], e["movie_id"], e["rating"], e["timestamp"]) for e in events)
            ]
            producer.flush(timeout=timeout)
            for f in futures:
                f.get(timeout=timeout)
        except Exception as exc:  # noqa: BLE001 - any client failure is "broker unavailable" to a caller
            raise KafkaUnavailable(
                f"Kafka at {self.cfg.bootstrap} did not acknowledge: {type(exc).__name__}"
            ) from None
        return len(futures)

    def _kafka_producer(self):
        if self.cfg.bootstrap is None:
            raise KafkaUnavailable("no Kafka configured: start the server with --bootstrap-servers")
        with self._producer_lock:
            if self._producer is None:
                if time.monotonic() - self._producer_failed_at < 5.0:  # fail fast while it is down
                    raise KafkaUnavailable(
                        f"Kafka not reachable at {self.cfg.bootstrap} (retrying in a few s)"
                    )
                from streamrec.kafka_admin import new_producer  # kafka-python: only when ingesting

                try:
                    self._producer = new_producer(self.cfg.bootstrap, timeout=5.0, linger_ms=2)
                except KafkaUnavailable:
                    self._producer_failed_at = time.monotonic()
                    raise
            return self._producer

    # -- health -----------------------------------------------------------------------------------

    def readiness(self) -> dict:
        checks: dict[str, Any] = {}
        try:
            checks["model"] = {"ok": True, "version": self.current().model.version}
        except ModelStoreError as exc:
            checks["model"] = {"ok": False, "error": str(exc)}
        try:
            self.sink().query("SELECT 1")
            checks["sink"] = {"ok": True}
        except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
            checks["sink"] = {"ok": False, "error": f"{type(exc).__name__}: {str(exc)[:200]}"}
        checks["broker"] = self.broker_check()
        return {"ready": all(c["ok"] for c in checks.values()), "checks": checks}

    def broker_check(self) -> dict:
        if self.cfg.bootstrap is None:
            return {"ok": False, "error": "no Kafka configured"}
        import socket

        for addr in self.cfg.bootstrap.split(","):
            host, _, port = addr.strip().rpartition(":")
            try:
                with socket.create_connection((host or "localhost", int(port)), timeout=1.0):
                    return {"ok": True, "bootstrap": self.cfg.bootstrap}
            except (OSError, ValueError):
                continue
        return {"ok": False, "error": f"no broker answers at {self.cfg.bootstrap}"}

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=5)


def parse_genres(text: str | None) -> list[str] | None:
    return [g.strip() for g in text.split(",") if g.strip()] if text else None


def _num(v) -> float | None:
    if v is None:
        return None
    f = float(v)
    return None if f != f else f

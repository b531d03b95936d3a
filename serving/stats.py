"""The stream's live statistics: aggregate tables, the stream's own batch metrics, dead letters."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import sqlalchemy as sa

from streamrec import sink as db
from streamrec.errors import InvalidRequest

from .catalog import Catalog
from .sink_reads import SinkReads, num

QUERIES = db.STREAM_QUERIES


class Stats:
    def __init__(self, reads: SinkReads, catalog: Callable[[], Catalog]):
        self.reads = reads
        self.catalog = catalog  # titles for trending (CURRENT's, or the data folder's)

    # -- live stats -------------------------------------------------------------------------------

    def movies(self, order: str, min_count: int, limit: int) -> list[dict]:
        m = db.movie_stats.c
        first, second = (m.n_ratings, m.avg_rating) if order == "n_ratings" else (m.avg_rating, m.n_ratings)
        rows = self.reads.rows(
            sa.select(m.movie_id, m.title, m.n_ratings, m.avg_rating, m.last_event_ts)
            .where(m.n_ratings >= min_count)
            .order_by(first.desc(), second.desc(), m.movie_id)
            .limit(limit)
        )
        return [
            {"movie_id": int(m), "title": t, "n_ratings": int(n), "avg_rating": num(a), "last_event_ts": ts}
            for m, t, n, a, ts in rows
        ]

    def genres(self) -> list[dict]:
        g = db.genre_stats.c
        rows = self.reads.rows(
            sa.select(g.genre, g.n_ratings, g.avg_rating).order_by(g.n_ratings.desc(), g.genre)
        )
        return [{"genre": g, "n_ratings": int(n), "avg_rating": num(a)} for g, n, a in rows]

    def histogram(self) -> list[dict]:
        h = db.rating_histogram.c
        rows = self.reads.rows(sa.select(h.rating, h.n_ratings).order_by(h.rating))
        return [{"rating": float(r), "n_ratings": int(n)} for r, n in rows]

    def trending(self, window: str, limit: int) -> dict:
        if window == "latest":
            found = self.reads.rows(sa.select(sa.func.max(db.trending.c.window_start)))
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
        rows = self.reads.rows(
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
                {"movie_id": int(m), "title": cat.title(m), "n_ratings": int(n), "avg_rating": num(a)}
                for _, m, n, a in rows
            ],
        }

    def stream(self, batches: int) -> dict:
        """Per query: the latest batch, throughput and latency percentiles over recent batches."""
        m = db.stream_metrics.c
        recent = [
            tuple(row)
            for q in QUERIES
            for row in self.reads.rows(
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
                "last_at": num(last["at"]),
                "batches": len(g),
                "input_rows": int(pd.to_numeric(g["input_rows"]).fillna(0).sum()),
                "rows_per_s": num(g["rows_per_s"].dropna().iloc[-1])
                if g["rows_per_s"].notna().any()
                else None,
                "events_per_s": num(g["events_per_s"].tail(10).median())
                if g["events_per_s"].notna().any()
                else None,
                "latency_p50_ms": num(p50.median()) if len(p50) else None,
                "latency_p95_ms": num(lat.quantile(0.95)) if len(lat) else None,
            }
        dead = self.reads.rows(sa.select(sa.func.count()).select_from(db.dead_letters))
        series = [
            {
                "query": r.query,
                "batch_id": int(r.batch_id),
                "at": num(r.at),
                "input_rows": None if pd.isna(r.input_rows) else int(r.input_rows),
                "rows_per_s": num(r.rows_per_s),
                "events_per_s": num(r.events_per_s),
                "latency_p50_ms": num(r.latency_p50_ms),
                "latency_p95_ms": num(r.latency_p95_ms),
            }
            for r in df.itertuples()
        ]
        return {"queries": queries, "dead_letters": int(dead[0][0]) if dead else 0, "batches": series}

    def dead_letters(self, limit: int) -> list[dict]:
        d = db.dead_letters.c
        rows = self.reads.rows(
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

    # -- live evaluation (streaming.live_eval) ----------------------------------------------------

    def live_eval(self, by_minute: bool = False, version: str | None = None) -> list[dict]:
        """One row per model version and list source (or per minute too): events, hits, hit rate and
        popularity's hit rate on the same events; a candidate's rows (source "shadow") carry the
        discordant events against CURRENT."""
        e = db.live_eval.c
        keys = [e.model_version, e.source] + ([e.bucket] if by_minute else [])
        sums = [sa.func.sum(c) for c in (e.events, e.hits, e.rank_sum, e.pop_hits, e.only_this, e.only_ref)]
        query = sa.select(*keys, *sums).group_by(*keys).order_by(*keys)
        if version is not None:
            query = query.where(e.model_version == version)
        out = []
        for row in self.reads.rows(query):
            key, (n, hits, ranks, pop, only_this, only_ref) = row[: len(keys)], row[len(keys) :]
            n = int(n or 0)
            item = {"model_version": key[0], "source": key[1], "events": n, "hits": int(hits or 0),
                    "popularity_hits": int(pop or 0),
                    "hit_rate": (hits or 0) / n if n else None,
                    "popularity_hit_rate": (pop or 0) / n if n else None,
                    "mean_hit_rank": ranks / hits if hits else None}  # fmt: skip
            if by_minute:
                item["minute"] = int(key[2])
            if key[1] == "shadow":
                item |= {"only_candidate": int(only_this or 0), "only_current": int(only_ref or 0)}
            out.append(item)
        return out

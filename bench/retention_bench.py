"""The sink's once-a-minute retention on a week of stream metrics, with and without the retention
indexes (streamrec.sink.RETENTION_INDEXES), in the same run: `.venv/bin/python -m bench.retention_bench`
(about a minute).

A sink DB holding `--keep-metrics` (7 days) of `stream_metrics` for both queries at one batch a
second each (1.2M rows), 90 days of weekly `trending` windows for 9,700 movies; each round expires
one more minute of metrics (what a running stream's minute does) and times `apply_retention` in
its transaction, and the writes one aggregates batch makes to the indexed tables (a metrics row,
400 trending upserts, half of them new rows) - the indexes' cost on every batch."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from streaming.retention import DAY, Retention, apply_retention
from streamrec.sink import RETENTION_INDEXES, Sink, stream_metrics, trending

WEEK = 7 * DAY
BATCHES_PER_S = 1.0  # per query
MOVIES = 9_700
ROUNDS = 15


def _fill(sink: Sink, now: float) -> None:
    n = int(WEEK * BATCHES_PER_S)
    with sink.transaction():
        for q in ("aggregates", "foldin"):
            for lo in range(0, n, 100_000):
                sink.execute(sa.insert(stream_metrics), [
                    {"query": q, "batch_id": i, "at": now - WEEK + i / BATCHES_PER_S, "input_rows": 400,
                     "duration_ms": 800, "latency_p95_ms": 1500.0} for i in range(lo, min(n, lo + 100_000))
                ])  # fmt: skip
        ends = [int(now) - w * WEEK for w in range(13)]
        sink.execute(sa.insert(trending), [
            {"window_start": e - WEEK, "window_end": e, "movie_id": m, "n_ratings": 1, "rating_sum": 4.0,
             "avg_rating": 4.0} for e in ends for m in range(MOVIES)
        ])  # fmt: skip


def _batch(sink: Sink, batch_id: int, now: float, rng: np.random.Generator) -> None:
    with sink.transaction():
        sink.upsert(stream_metrics, [{"query": "aggregates", "batch_id": 10**9 + batch_id, "at": now}], None)
        movies = rng.choice(2 * MOVIES, 400, replace=False)  # half of them are not in the window yet
        sink.upsert(trending, [
            {"window_start": int(now) - WEEK, "window_end": int(now), "movie_id": int(m), "n_ratings": 1,
             "rating_sum": 4.0, "avg_rating": 4.0} for m in movies
        ], lambda ex: {"n_ratings": trending.c.n_ratings + ex.n_ratings})  # fmt: skip


def _variant(indexed: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        sink = Sink(f"sqlite:///{Path(tmp) / 's.db'}")
        sink.create_schema()
        if not indexed:
            with sink.engine.begin() as c:
                for index in RETENTION_INDEXES:
                    c.exec_driver_sql(f"DROP INDEX {index.name}")
        now = 1_800_000_000.0
        _fill(sink, now)
        rng = np.random.default_rng(0)
        retention, batch = [], []
        for r in range(ROUNDS):
            now += 60
            t = time.perf_counter()
            with sink.transaction():
                deleted = apply_retention(sink, Retention(), now, int(now))
            retention.append(time.perf_counter() - t)
            t = time.perf_counter()
            _batch(sink, r, now, rng)
            batch.append(time.perf_counter() - t)
        sink.close()
    return {"retention_ms": 1000 * float(np.median(retention)),
            "batch_writes_ms": 1000 * float(np.median(batch)),
            "metrics_deleted_per_minute": deleted["stream_metrics"]}  # fmt: skip


def run() -> dict:
    return {"indexed": _variant(True), "no index": _variant(False)}


if __name__ == "__main__":
    res = run()
    for name, r in res.items():
        print(f"{name}: retention {r['retention_ms']:.1f} ms a minute (median of {ROUNDS}, "
              f"{r['metrics_deleted_per_minute']} metrics rows each), one batch's indexed writes "
              f"{r['batch_writes_ms']:.2f} ms")  # fmt: skip

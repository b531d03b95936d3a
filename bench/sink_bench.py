"""One stream-list read (the API's known-user hot path) through the sink, against raw sqlite3 on
the same file in the same run: `.venv/bin/python -m bench.sink_bench` (a few seconds)."""

from __future__ import annotations

import sqlite3
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from serving.lists import STREAM_LIST
from streamrec.sink import Sink, user_recommendations


def _us(read, n: int = 5000) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        read(1 + i % 499)
    return (time.perf_counter() - t0) / n * 1e6


def run() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.db"
        sink = Sink(f"sqlite:///{path}")
        sink.create_schema()
        with sink.transaction():
            sink.execute(sa.insert(user_recommendations), [
                {"user_id": u, "rank": k, "movie_id": k, "score": 1.0, "predicted_rating": 4.0,
                 "model_version": "v1", "source": "fold-in"} for u in range(1, 500) for k in range(1, 11)
            ])  # fmt: skip
        raw = sqlite3.connect(path, isolation_level=None)
        sql = ("SELECT movie_id, score, predicted_rating, model_version, source FROM user_recommendations "
               "WHERE user_id = ? ORDER BY rank")  # fmt: skip
        r = user_recommendations.c
        res = {
            "raw sqlite3": _us(lambda u: raw.execute(sql, (u,)).fetchall()),
            "sink, prebuilt select (the API)": _us(lambda u: sink.query(STREAM_LIST, {"user_id": u})),
            "sink, select built per read": _us(lambda u: sink.query(
                sa.select(r.movie_id, r.score, r.predicted_rating, r.model_version, r.source)
                .where(r.user_id == u).order_by(r.rank))),
        }  # fmt: skip
        raw.close()
        sink.close()
    return res


if __name__ == "__main__":
    for name, us in run().items():
        print(f"{name}: {us:.1f} us per read")

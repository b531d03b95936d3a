"""The aggregates' per-batch deltas computed by Spark on the executors, in one job.

Every record of a micro-batch becomes a few keyed rows (its movie, its user, its rating value,
each of its genres, its trending window or "late", its Kafka time bucket; a bad record becomes
one dead-letter row), and one `groupBy` sums them. Only those per-key rows reach the driver: its
memory grows with the keys a batch touches, not with the events, and on a cluster the grouping
runs where the data is. `streaming.aggregates.compute_deltas` is the same arithmetic in pandas
(the history bootstrap and the tests' reference; a test checks the two agree exactly).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .aggregates import Deltas, WindowSpec, advance_watermark

KAFKA_BUCKET_S = 0.01  # latency resolution: Kafka record times are counted per 10 ms

_FIELDS = "kind string, a long, b long, s string, x double, ts long, v string, r string, raw string"


@dataclass
class BatchResult:
    deltas: Deltas | None  # None when the batch had no valid event
    dead: pd.DataFrame  # topic, partition, offset, value, reason, raw_base64
    kafka_times: pd.DataFrame  # t (bucket start, epoch s), n: when the valid events were produced


def genres_frame(spark, genres_of: pd.Series):
    """movie_id -> genres as a small DataFrame, broadcast into every batch's job."""
    genres = [list(g) if isinstance(g, list | tuple) else [] for g in genres_of]
    rows = pd.DataFrame({"movie_id": genres_of.index.astype("int32"), "genres": genres})
    return spark.createDataFrame(rows, "movie_id int, genres array<string>").cache()


def _row(kind: str, a="NULL", b="NULL", s="NULL", x="NULL", ts="NULL", v="NULL", r="NULL", raw="NULL") -> str:
    return (f"named_struct('kind', '{kind}', 'a', CAST({a} AS BIGINT), 'b', CAST({b} AS BIGINT), "
            f"'s', CAST({s} AS STRING), 'x', CAST({x} AS DOUBLE), 'ts', CAST({ts} AS BIGINT), "
            f"'v', CAST({v} AS STRING), 'r', CAST({r} AS STRING), 'raw', CAST({raw} AS STRING))")  # fmt: skip


def keyed_rows(batch, genres, watermark: int | None, spec: WindowSpec):
    """Each record -> its keyed rows (see the module doc). `batch` has streaming.parse's columns."""
    from pyspark.sql.functions import broadcast, expr

    wm = "CAST(NULL AS BIGINT)" if watermark is None else str(int(watermark))
    start = f"(timestamp - pmod(timestamp, {spec.size_s}))"
    # Late: the event's window had closed before this batch (window end <= previous watermark).
    late = f"({wm} IS NOT NULL AND {start} + {spec.size_s} <= {wm})"
    good = (
        f"concat(array({_row('m', a='movie_id', x='rating', ts='timestamp')}, "
        f"{_row('u', a='user_id', x='rating', ts='timestamp')}, "
        f"{_row('h', a='CAST(rating * 2 AS BIGINT)')}, "
        f"{_row('k', a=f'floor(kafka_ts / {KAFKA_BUCKET_S})')}, "
        f"IF({late}, {_row('l')}, {_row('t', a=start, b='movie_id', x='rating')})), "
        f"transform(coalesce(genres, array()), g -> {_row('g', s='g', x='rating')}))"
    )
    bad = f"array({_row('d', a='partition', b='offset', s='topic', v='value', r='reason', raw='raw_base64')})"
    return (
        batch.join(broadcast(genres), "movie_id", "left")
        .select(expr(f"explode(CASE WHEN reason IS NULL THEN {good} ELSE {bad} END) AS e"))
        .select("e.*")
    )


def batch_deltas(batch, genres, watermark: int | None, spec: WindowSpec) -> BatchResult:
    """One Spark job: group the batch's keyed rows; build the deltas on the driver from the groups."""
    g = keyed_rows(batch, genres, watermark, spec).groupBy("kind", "a", "b", "s").agg(*_aggs()).toPandas()
    return from_groups(g, watermark, spec)


def _aggs():
    from pyspark.sql import functions as F

    return [
        F.count(F.lit(1)).alias("n"),
        F.sum("x").alias("sum"),
        F.min("ts").alias("first"),
        F.max("ts").alias("last"),
        F.first("v").alias("v"),
        F.first("r").alias("r"),
        F.first("raw").alias("raw"),
    ]


def from_groups(g: pd.DataFrame, watermark: int | None, spec: WindowSpec) -> BatchResult:
    """The grouped rows of one batch -> Deltas (same columns as compute_deltas), dead letters,
    Kafka time buckets."""
    by = {kind: part for kind, part in g.groupby("kind")}
    empty = g.iloc[0:0]

    def part(kind: str) -> pd.DataFrame:
        return by.get(kind, empty)

    d = part("d")
    dead = pd.DataFrame({"topic": d["s"], "partition": d["a"], "offset": d["b"], "value": d["v"],
                         "reason": d["r"], "raw_base64": d["raw"]})  # fmt: skip
    k = part("k")
    kafka = pd.DataFrame({"t": k["a"].to_numpy(np.float64) * KAFKA_BUCKET_S, "n": k["n"].to_numpy(np.int64)})
    m = part("m")
    if not len(m):
        return BatchResult(None, dead, kafka)
    n = "n"
    movie = pd.DataFrame({"movie_id": m["a"], n: m[n], "s": m["sum"], "last": m["last"]})
    u = part("u")
    user = pd.DataFrame({"user_id": u["a"], n: u[n], "s": u["sum"], "first": u["first"], "last": u["last"]})
    h = part("h")
    hist = pd.DataFrame({"rating": h["a"].to_numpy(np.float64) / 2, n: h[n]})
    ge = part("g")
    genre = pd.DataFrame({"genre": ge["s"], n: ge[n], "s": ge["sum"]})
    t = part("t")
    trend = pd.DataFrame({"window_start": t["a"], "movie_id": t["b"], n: t[n], "s": t["sum"],
                          "window_end": t["a"] + spec.size_s})  # fmt: skip
    late = int(part("l")[n].sum())
    wm = advance_watermark(watermark, int(movie["last"].max()), spec)
    frames = [f.reset_index(drop=True) for f in (movie, genre, user, hist, trend)]
    return BatchResult(Deltas(*frames, late, wm), dead, kafka)

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


def batch_deltas(
    batch,
    genres,
    watermark: int | None,
    spec: WindowSpec,
    shuffle: bool = False,
    trending_from: int | None = None,
) -> BatchResult:
    """One Spark job. Default: each partition's records are grouped where they are read (pandas
    in the executors' Python workers) and the driver merges the partial groups, at most one row
    per key and partition; `shuffle=True` groups with a Spark `groupBy` instead (a shuffle:
    two stages, which cost more than they save on a small batch: docs/benchmarks.md).
    `trending_from` (shuffle only): trending windows ending before it are left out (the history's
    seed: retention would delete them at once, and there are windows x movies of them)."""
    if shuffle:
        from pyspark.sql import functions as F

        keyed = keyed_rows(batch, genres, watermark, spec)
        if trending_from is not None:
            keyed = keyed.where((F.col("kind") != "t") | (F.col("a") + spec.size_s >= trending_from))
        g = keyed.groupBy("kind", "a", "b", "s").agg(*_aggs()).toPandas()
    else:
        from pyspark.sql.functions import broadcast

        partial = (batch.join(broadcast(genres), "movie_id", "left")
                   .mapInPandas(_partial_groups(watermark, spec), GROUPS).toPandas())  # fmt: skip
        g = merge_groups(partial)
    return from_groups(g, watermark, spec)


GROUPS = ("kind string, a long, b long, s string, n long, sum double, first long, last long, "
          "v string, r string, raw string")  # fmt: skip
_KEYS = ["kind", "a", "b", "s"]
_COLS = [c.split()[0] for c in GROUPS.split(", ")]
_DTYPES = (
    {c: "Int64" for c in ("a", "b", "n", "first", "last")}
    | {"sum": "float64"}
    | {c: object for c in ("kind", "s", "v", "r", "raw")}
)


def _partial_groups(watermark: int | None, spec: WindowSpec):
    """The executor side: a partition's records -> its keyed groups (the groupBy's rows)."""

    def run(frames):
        for pdf in frames:
            yield groups_of(pdf, watermark, spec)

    return run


def groups_of(pdf: pd.DataFrame, watermark: int | None, spec: WindowSpec) -> pd.DataFrame:
    """Keyed groups of some records (streaming.parse's columns plus `genres`), in pandas."""
    from .aggregates import late_mask, window_start

    bad = pdf[pdf["reason"].notna()]
    ev = pdf[pdf["reason"].isna()]
    parts = [pd.DataFrame({"kind": "d", "a": bad["partition"], "b": bad["offset"], "s": bad["topic"], "n": 1,
                           "v": bad["value"], "r": bad["reason"], "raw": bad["raw_base64"]})]  # fmt: skip
    if len(ev):
        ts = ev["timestamp"].to_numpy(np.int64)
        x = ev["rating"].to_numpy(np.float64)
        late = late_mask(ts, watermark, spec)

        def agg(kind: str, keys: dict, rating: np.ndarray, t: np.ndarray) -> pd.DataFrame:
            f = pd.DataFrame({**keys, "x": rating, "t": t})
            out = f.groupby(list(keys)).agg(n=("x", "size"), sum=("x", "sum"), first=("t", "min"),
                                            last=("t", "max"))  # fmt: skip
            return out.reset_index().assign(kind=kind)

        movie, user = ev["movie_id"].to_numpy(np.int64), ev["user_id"].to_numpy(np.int64)
        bucket = np.floor(ev["kafka_ts"].to_numpy(np.float64) / KAFKA_BUCKET_S).astype(np.int64)
        on = ~late
        parts += [
            agg("m", {"a": movie}, x, ts),
            agg("u", {"a": user}, x, ts),
            agg("h", {"a": (x * 2).astype(np.int64)}, x, ts),
            agg("k", {"a": bucket}, x, ts),
            agg("t", {"a": window_start(ts[on], spec), "b": movie[on]}, x[on], ts[on]),
        ]
        if late.any():
            parts.append(pd.DataFrame({"kind": ["l"], "n": [int(late.sum())]}))
        g = pd.DataFrame({"s": ev["genres"].to_numpy(), "x": x, "t": ts}).explode("s").dropna(subset=["s"])
        if len(g):
            parts.append(
                agg("g", {"s": g["s"].to_numpy()}, g["x"].to_numpy(np.float64), g["t"].to_numpy(np.int64))
            )
    parts = [p for p in parts if len(p)]
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    return out.reindex(columns=_COLS).astype(_DTYPES)  # exact Arrow types, nulls included


def merge_groups(partial: pd.DataFrame) -> pd.DataFrame:
    """The driver side: the partitions' groups of the same key summed (one row per key)."""
    if partial.empty:
        return partial
    return (
        partial.groupby(_KEYS, dropna=False, sort=False)
        .agg(
            n=("n", "sum"),
            sum=("sum", "sum"),
            first=("first", "min"),
            last=("last", "max"),
            v=("v", "first"),
            r=("r", "first"),
            raw=("raw", "first"),
        )  # fmt: skip
        .reset_index()
    )


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
    movie = pd.DataFrame({"movie_id": m["a"], "n": m["n"], "s": m["sum"], "last": m["last"]})
    u = part("u")
    user = pd.DataFrame({"user_id": u["a"], "n": u["n"], "s": u["sum"], "first": u["first"],
                         "last": u["last"]})  # fmt: skip
    h = part("h")
    hist = pd.DataFrame({"rating": h["a"].to_numpy(np.float64) / 2, "n": h["n"]})
    ge = part("g")
    genre = pd.DataFrame({"genre": ge["s"], "n": ge["n"], "s": ge["sum"]})
    t = part("t")
    trend = pd.DataFrame({"window_start": t["a"], "movie_id": t["b"], "n": t["n"], "s": t["sum"],
                          "window_end": t["a"] + spec.size_s})  # fmt: skip
    late = int(part("l")["n"].sum())
    wm = advance_watermark(watermark, int(movie["last"].max()), spec)
    frames = [f.reset_index(drop=True) for f in (movie, genre, user, hist, trend)]
    return BatchResult(Deltas(*frames, late, wm), dead, kafka)

"""The history as Spark DataFrames: what `train`, `retrain` and the stream's first start read.

The same events and rules as streamrec.history (the pandas side, which serving and the offline
tools keep): the MovieLens window (`--until`, `--split-at`), the event log's snapshot, and the
latest rating per (user, movie) by event time. Here the executors read the rows and Spark applies
the rules; what reaches the driver is bounded by the keys (movies, users, timestamps), never by
the events:

- the MovieLens ratings file is validated once by the project's own loader (its layouts, headers
  and `file:line` errors) chunk by chunk, and written as a Parquet image (with each row's position
  in the file) next to the Spark storage the executors read; later runs reuse it while the file's
  size and modification time are unchanged;
- the event log's snapshot is the Parquet files its Delta log names at that version, read
  directly (delta-rs writes no deletion vectors or column mapping, so the files are the rows);
- `--split-at F` cuts at the first floor(F * n) events in (time, file position) order, found by
  narrowing timestamp histograms (`first_rows`), exactly as the pandas window cuts them, so the
  model trains on precisely what `replay` leaves out.
"""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from . import logs
from .history import HistorySpec, split_index
from .movielens import RATING_DTYPES
from .settings import spark_storage

LOG = logs.get("history")

RATINGS_SCHEMA = "user_id int, movie_id int, rating float, timestamp long"
IMAGE_SCHEMA = pa.schema([("user_id", pa.int32()), ("movie_id", pa.int32()), ("rating", pa.float32()),
                          ("timestamp", pa.int64()), ("seq", pa.int64())])  # fmt: skip
HISTOGRAM_BUCKETS = 4096  # rows a histogram pass brings to the driver, at most
# Event-order keys: time, then the source (the data folder before the event log, as the pandas
# side concatenates them), then the position in it (file row; Kafka time and offset in the log).
ORDER = ("timestamp", "src", "o1", "o2")


def to_pandas(df) -> pd.DataFrame:
    """Rows of a (small) Spark DataFrame with the ratings' dtypes; an empty one keeps its columns."""
    out = df.toPandas()
    return out.astype({c: t for c, t in RATING_DTYPES.items() if c in out.columns})


def image_dir() -> Path:
    return spark_storage() / "ratings-images"


def ratings_image(folder: Path) -> Path:
    """The validated Parquet image of a MovieLens folder's ratings (written once per file state)."""
    from .movielens import detect_layout, iter_rating_chunks

    folder = Path(folder).resolve()
    path = folder / detect_layout(folder).ratings
    st = path.stat()
    key = hashlib.sha1(f"{path}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
    target = image_dir() / f"{key}.parquet"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{key}.{os.getpid()}.tmp")
    rows = 0
    LOG.info("validating %s into a Parquet image for Spark (once per file version)", path)
    with pq.ParquetWriter(tmp, IMAGE_SCHEMA) as writer:  # one loader chunk in memory at a time
        for chunk in iter_rating_chunks(folder):
            chunk = chunk.assign(seq=range(rows, rows + len(chunk)))
            writer.write_table(pa.Table.from_pandas(chunk, schema=IMAGE_SCHEMA, preserve_index=False))
            rows += len(chunk)
    if rows == 0:
        tmp.unlink(missing_ok=True)
        from .errors import DataError

        raise DataError(f"{path}: no ratings")
    tmp.replace(target)  # atomic: a concurrent run finds a whole image or none
    return target


def first_rows(df, k: int, cols: tuple[str, ...]):
    """A predicate selecting the first `k` rows of `df` in the lexicographic order of `cols` (the
    first an integer time; the rest must make the order total). Narrows the first column with
    histograms of HISTOGRAM_BUCKETS buckets (a few passes over the data), then reads the rows of the
    one time value where the cut falls: the driver holds a histogram and those rows only."""
    from pyspark.sql import functions as F

    t = F.col(cols[0])
    head = df.agg(F.count("*"), F.min(t), F.max(t)).first()
    n, lo, hi = int(head[0]), head[1], head[2]
    if k <= 0:
        return F.lit(False)
    if k >= n:
        return F.lit(True)
    while hi > lo:  # invariant: the k-th row (0-based) has lo <= time <= hi, k counts from lo
        width = math.ceil((hi - lo + 1) / HISTOGRAM_BUCKETS)
        bucket = F.floor((t - F.lit(lo)) / F.lit(width)).cast("long")
        hist = sorted(df.where(t.between(lo, hi)).groupBy(bucket.alias("b")).count().collect())
        for b, c in hist:
            if k < c:
                lo, hi = lo + b * width, min(hi, lo + b * width + width - 1)
                break
            k -= c
    rest = cols[1:]
    tied = df.where(t == lo).select(*rest).orderBy(*rest).limit(k + 1).collect()[-1]
    before = t < F.lit(lo)
    # (time == lo) and (rest) < the k-th row's rest, lexicographically
    less, equal = F.lit(False), F.lit(True)
    for c, v in zip(rest, tied, strict=True):
        less = less | (equal & (F.col(c) < F.lit(v)))
        equal = equal & (F.col(c) == F.lit(v))
    return before | ((t == F.lit(lo)) & less)


def base_frame(spark, spec: HistorySpec):
    """The data folder's part of a spec: its events before `--split-at` and `--until`, with
    event-order keys (src 0, o1 the file row)."""
    from pyspark.sql import functions as F

    df = spark.read.parquet(str(ratings_image(Path(spec.data))))
    if spec.split_at is not None:
        n = df.count()
        df = df.where(first_rows(df, split_index(n, spec.split_at), ("timestamp", "seq")))
    if spec.until is not None:
        df = df.where(F.col("timestamp") < F.lit(spec.until))
    return df.select("user_id", "movie_id", "rating", "timestamp", F.lit(0).alias("src"),
                     F.col("seq").cast("double").alias("o1"), F.lit(0).cast("long").alias("o2"))  # fmt: skip


def log_frame(spark, root: Path, version: int | None):
    """The event log's events (its snapshot `version`, default latest), src 1, ordered among
    themselves by Kafka time and offset."""
    from pyspark.sql import functions as F

    from .event_log import committed_files

    files = [str(f) for f in committed_files(root, version)]
    if not files:
        return spark.createDataFrame([], f"{RATINGS_SCHEMA}, src int, o1 double, o2 long")
    df = spark.read.option("mergeSchema", "true").parquet(*files)  # a legacy file may lack a column
    cols = set(df.columns)

    def col(name: str, kind: str):
        return F.col(name).cast(kind) if name in cols else F.lit(None).cast(kind)

    return df.select(col("user_id", "int").alias("user_id"), col("movie_id", "int").alias("movie_id"),
                     col("rating", "float").alias("rating"), col("timestamp", "long").alias("timestamp"),
                     F.lit(1).alias("src"), F.coalesce(col("kafka_ts", "double"), F.lit(0.0)).alias("o1"),
                     F.coalesce(col("offset", "long"), F.lit(0).cast("long")).alias("o2"))  # fmt: skip


def history_frame(spark, spec: HistorySpec, pinned: bool = False):
    """Raw rating events of a spec with event-order keys (the Spark twin of `load_history`):
    pinned reads the log's snapshot `spec.event_log_version`, otherwise the log as it is now."""
    df = base_frame(spark, spec)
    if spec.event_log:
        version = spec.event_log_version if pinned else None
        df = df.unionByName(log_frame(spark, Path(spec.event_log), version))
    return df


def latest_per_pair(events):
    """The latest rating of each (user, movie) by event order (streamrec.history.latest_per_pair's
    rule: a later event wins, and on equal times the log's over the data folder's)."""
    from pyspark.sql import functions as F

    last = F.max(F.struct(*ORDER, "rating")).alias("m")
    return (
        events.groupBy("user_id", "movie_id")
        .agg(last)
        .select(
            "user_id", "movie_id", F.col("m.rating").alias("rating"), F.col("m.timestamp").alias("timestamp")
        )
    )

"""The stream's event log: every valid event once, as Parquet, one file (or directory) per batch.

The aggregates query writes each micro-batch's valid events before it commits the batch's sink
transaction, under the batch's id (`batch-<id>.parquet`), so a batch Spark replays after a crash
finds its file and does not write it again. A file appears complete or not at all: the driver
writes a hidden temp file and renames it; on a cluster the executors write a directory that
counts once Spark's `_SUCCESS` marker is in it. Logs written before (by Spark's file sink, with
its `_spark_metadata` log) are still read, honouring that log.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import unquote, urlparse

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .movielens import RATING_COLUMNS, RATING_DTYPES, empty_ratings
from .settings import spark_storage


def event_log_dir(root: Path | None = None) -> Path:
    """The stream's event log: under `root` or, by default, the Spark storage every node reaches."""
    return (root or spark_storage()) / "eventlog"


SCHEMA = pa.schema([("user_id", pa.int32()), ("movie_id", pa.int32()), ("rating", pa.float32()),
                    ("timestamp", pa.int64()), ("topic", pa.string()), ("partition", pa.int32()),
                    ("offset", pa.int64()), ("kafka_ts", pa.float64())])  # fmt: skip
COLUMNS = SCHEMA.names


def batch_path(root: Path, batch_id: int) -> Path:
    return root / f"batch-{batch_id:012d}.parquet"  # zero-padded: names sort in batch order


def is_written(root: Path, batch_id: int) -> bool:
    path = batch_path(root, batch_id)
    return path.is_file() or (path / "_SUCCESS").is_file()


def write_batch(root: Path, batch_id: int, events: pd.DataFrame) -> None:
    """The driver's write of one batch's valid events; nothing when that batch is already there."""
    if is_written(root, batch_id):
        return
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".batch-{batch_id:012d}.parquet.tmp"  # a crash leaves only this, overwritten next time
    frame = events[COLUMNS].astype({f.name: f.type.to_pandas_dtype() for f in SCHEMA if f.name != "topic"})
    pq.write_table(pa.Table.from_pandas(frame, schema=SCHEMA, preserve_index=False), tmp)
    os.replace(tmp, batch_path(root, batch_id))


def write_batch_spark(events, root: Path, batch_id: int) -> None:
    """The executors' write of one batch (a Spark DataFrame), for storage every node mounts."""
    if not is_written(root, batch_id):  # a partial directory from a crash is overwritten
        events.select(*COLUMNS).write.mode("overwrite").parquet(str(batch_path(root, batch_id)))


def committed_files(root: Path) -> list[Path]:
    """Parquet files of every committed batch: a file sink's log first (older), then the batches."""
    files = _file_sink_files(root)
    for path in sorted(root.glob("batch-*.parquet")) if root.is_dir() else []:
        if path.is_file():
            files.append(path)
        elif (path / "_SUCCESS").is_file():
            files += sorted(path.glob("part-*.parquet"))
    return files


def _file_sink_files(root: Path) -> list[Path]:
    """Parquet files Spark's file sink says it committed, in batch order (an older event log)."""
    meta = root / "_spark_metadata"
    if not meta.is_dir():
        return []
    batches = []
    for f in meta.iterdir():
        name = f.name.removesuffix(".compact")
        if name.isdigit():
            batches.append((int(name), f.name.endswith(".compact"), f))
    batches.sort()
    last_compact = max((b for b, compact, _ in batches if compact), default=-1)
    files: dict[str, None] = {}
    for batch, _compact, f in batches:
        if batch < last_compact:
            continue
        for line in f.read_text().splitlines()[1:]:  # first line is the format version
            entry = json.loads(line)
            path = unquote(urlparse(entry["path"]).path)
            if entry.get("action", "add") == "delete":
                files.pop(path, None)
            else:
                files[path] = None
    return [Path(p) for p in files]


def read_event_log(root: Path | None = None) -> pd.DataFrame:
    """All committed events as (user_id, movie_id, rating, timestamp); empty when none yet."""
    files = committed_files(root or event_log_dir())
    if not files:
        return empty_ratings()
    frames = [pd.read_parquet(f, columns=RATING_COLUMNS) for f in files]
    return pd.concat(frames, ignore_index=True).astype(RATING_DTYPES)


def count_events(root: Path | None = None) -> int:
    """Committed events, from the Parquet footers only (no data read)."""
    return sum(pq.ParquetFile(f).metadata.num_rows for f in committed_files(root or event_log_dir()))

"""Read the stream's event log (Parquet written by Spark's exactly-once file sink).

Only files committed in `_spark_metadata` are read: a file left by a crashed micro-batch is
on disk but not in the log, and reading the directory naively would count it twice.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import unquote, urlparse

import pandas as pd
import pyarrow.parquet as pq

from .movielens import RATING_COLUMNS, RATING_DTYPES, empty_ratings
from .settings import spark_storage


def event_log_dir(root: Path | None = None) -> Path:
    """The stream's event log: under `root` or, by default, the Spark storage every node reaches."""
    return (root or spark_storage()) / "eventlog"


def committed_files(root: Path) -> list[Path]:
    """Parquet files the sink's metadata log says were committed, in batch order."""
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

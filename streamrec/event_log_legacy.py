"""Event logs written before the Delta table: one Parquet file (or Spark directory) per batch,
`batch-<id>.parquet`, and before that Spark's file sink (`part-*.parquet` listed by its
`_spark_metadata` log). Still read while they exist; `migrate` moves them into the table once
(streamrec.event_log_table calls it on the table's first write and in `eventlog compact`)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import pyarrow as pa
import pyarrow.parquet as pq


def batch_path(root: Path, batch_id: int) -> Path:
    return root / f"batch-{batch_id:012d}.parquet"  # zero-padded: names sort in batch order


def legacy_files(root: Path) -> list[Path]:
    """Parquet files of every committed legacy batch: the file sink's first (older), then batches."""
    files = _file_sink_files(root)
    for path in sorted(root.glob("batch-*.parquet")) if root.is_dir() else []:
        if path.is_file():
            files.append(path)
        elif (path / "_SUCCESS").is_file():  # a Spark directory counts once committed
            files += sorted(path.glob("part-*.parquet"))
    return files


def _file_sink_files(root: Path) -> list[Path]:
    """Parquet files Spark's file sink says it committed, in batch order."""
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


def read_legacy(files: list[Path], schema: pa.Schema) -> pa.Table:
    """The files' rows in `schema` (columns an older layout lacks are null)."""
    tables = []
    for path in files:
        t = pq.read_table(path)
        cols = [
            t[c.name].cast(c.type) if c.name in t.column_names else pa.nulls(len(t), c.type) for c in schema
        ]
        tables.append(pa.Table.from_arrays(cols, schema=schema))
    return pa.concat_tables(tables) if tables else schema.empty_table()


def remove_legacy(root: Path) -> None:
    """Delete the legacy layout (after its rows are committed to the table)."""
    for f in _file_sink_files(root):
        f.unlink(missing_ok=True)
    shutil.rmtree(root / "_spark_metadata", ignore_errors=True)
    for path in root.glob("batch-*.parquet"):
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    for tmp in root.glob(".batch-*.parquet.tmp"):  # what a killed driver left
        tmp.unlink(missing_ok=True)

"""The stream's event log: every valid event once, as a Delta Lake table (delta-rs, no JVM).

The aggregates query appends each micro-batch's valid events on the driver before it commits
the batch's sink transaction, as one Delta commit carrying the app transaction (APP, batch id):
a batch Spark replays after a crash finds its id in the table and appends nothing. Delta's log
makes an append atomic and every table version a snapshot: a model version records the version
it trained on (`history.event_log_version`) and a retrain reads exactly that snapshot again.
Compaction, vacuum, the log's pruning and stats are in streamrec.event_log_maint. Logs written
before the table (per-batch Parquet files, Spark's file-sink layout) are read until the table's
first write or `streamrec eventlog compact` migrates them into it once (streamrec.event_log_legacy).
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlparse

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError

from .errors import DataError
from .event_log_legacy import batch_path, legacy_files, read_legacy, remove_legacy
from .movielens import RATING_COLUMNS, RATING_DTYPES, empty_ratings
from .settings import spark_storage

__all__ = ["batch_path", "committed_files", "count_events", "event_log_dir", "read_event_log", "write_batch"]

APP = "streamrec-stream"  # the stream's app transaction id: its version is the last batch id written
MIGRATION_APP = "streamrec-legacy-migration"  # committed once, with the legacy files' rows
# Time travel needs the log of every version a kept model names: delta-rs must never expire it by
# age on checkpoint (its logRetentionDuration, 30 days, knows no model). `eventlog compact` prunes
# the log instead, only below a checkpoint at or before the oldest version a kept model names
# (streamrec.event_log_maint.prune_log); checkpoints keep reading the latest version fast.
# The vacuum's grace (streamrec.event_log_maint): a file a compaction replaced stays this long for
# readers that listed it just before, and so does a file not in the log yet, which a running
# writer is about to commit. A table property (delta-rs's vacuum takes its argument in whole hours
# only), so Spark's Delta reader and any other Delta tool see the same. Delta's default, a week,
# serves time travel to any version; here the versions kept models name are kept regardless
# (`keep_versions`), and the longest read of a snapshot is a retrain's first pass over it (70 s at
# 25M ratings on the bench machine). An hour held every file of the hour's soak on disk.
GRACE_MINUTES = 15
GRACE_PROPERTY = "delta.deletedFileRetentionDuration"
TABLE_CONFIG = {"delta.enableExpiredLogCleanup": "false", "delta.checkpointInterval": "100",
                GRACE_PROPERTY: f"interval {GRACE_MINUTES} minutes"}  # fmt: skip


def event_log_dir(root: Path | None = None) -> Path:
    """The stream's event log: under `root` or, by default, the Spark storage every node reaches."""
    return (root or spark_storage()) / "eventlog"


SCHEMA = pa.schema([("user_id", pa.int32()), ("movie_id", pa.int32()), ("rating", pa.float32()),
                    ("timestamp", pa.int64()), ("topic", pa.string()), ("partition", pa.int32()),
                    ("offset", pa.int64()), ("kafka_ts", pa.float64())])  # fmt: skip
COLUMNS = SCHEMA.names
ARRIVAL = ("kafka_ts", "offset")  # the order events arrived in (ties of event time go by it)


def is_table(root: Path) -> bool:
    return DeltaTable.is_deltatable(str(root))


def open_table(root: Path, version: int | None = None) -> DeltaTable:
    """The table at its latest version or at `version` (time travel): a DataError when it cannot
    be read, saying so when `version` is older than the pruned log still holds."""
    try:
        return DeltaTable(str(root), version=version)
    except Exception as exc:  # deltalake raises its own TableNotFoundError / DeltaError
        at = "" if version is None else f" at version {version}"
        start = log_start(root) if version is not None else None
        if start is not None and version < start:
            raise DataError(f"cannot read the event log {root}{at}: its log was pruned below version "
                            f"{start} (compaction keeps it from the oldest version a kept model names "
                            "on)") from None  # fmt: skip
        raise DataError(f"cannot read the event log {root}{at}: {str(exc).splitlines()[0]}") from None


CHECKPOINT_FILE = re.compile(r"(\d{20})\.checkpoint\.parquet")  # a checkpoint as delta-rs writes it


def log_start(root: Path) -> int | None:
    """The oldest version the table's log can still load: 0 while its first commit is there, else
    its oldest checkpoint (`eventlog compact` prunes what is below); None without a log."""
    log = root / "_delta_log"
    if (log / f"{0:020d}.json").exists():
        return 0
    found = [int(m[1]) for p in log.glob("*.checkpoint.parquet") if (m := CHECKPOINT_FILE.fullmatch(p.name))]
    return min(found, default=None)


def table_version(root: Path | None = None) -> int | None:
    """The table's latest version; None before its first write."""
    root = root or event_log_dir()
    return open_table(root).version() if is_table(root) else None


def is_written(root: Path, batch_id: int) -> bool:
    """True when the stream already appended batch `batch_id` (or a later one)."""
    last = _writer_table(root).transaction_version(APP) if is_table(root) else None
    return last is not None and batch_id <= last


_writers: dict[Path, DeltaTable] = {}


def _writer_table(root: Path) -> DeltaTable:
    """The writer's table, loaded once and brought up to date by the commits since (a fresh load
    replays the log from the last checkpoint on every batch: ~4x the append's cost)."""
    table = _writers.get(root)
    if table is None:
        table = _writers[root] = open_table(root)
    else:
        table.update_incremental()
    return table


def _arrow(events: pd.DataFrame) -> pa.Table:
    frame = events[COLUMNS].astype({f.name: f.type.to_pandas_dtype() for f in SCHEMA if f.name != "topic"})
    return pa.Table.from_pandas(frame, schema=SCHEMA, preserve_index=False)


def _append(root: Path, rows: pa.Table, app: str, version: int) -> None:
    txn = CommitProperties(app_transactions=[Transaction(app_id=app, version=version)])
    for attempt in (1, 2):
        target = _writers.get(root) if is_table(root) else None
        if target is None:
            _writers.pop(root, None)  # a table deleted (stream --reset) and created again
        try:
            write_deltalake(
                target or str(root), rows, mode="append", configuration=TABLE_CONFIG, commit_properties=txn
            )
            return
        except CommitFailedError:
            # A concurrent metadata commit (`eventlog compact --grace-minutes` setting the grace)
            # fails an append that loaded the table before it, and commits nothing: load the
            # table again and append once more (a second failure fails the batch).
            if attempt == 2 or target is None:
                raise
            _writers.pop(root, None)


def migrate(root: Path) -> int:
    """Move a legacy log's rows into the table in one commit, then delete its files (once: the
    commit's app transaction says it happened, so a crash before the deletion only deletes).
    Creates the table when it does not exist. Returns the rows moved."""
    table = open_table(root) if is_table(root) else None
    done = table is not None and table.transaction_version(MIGRATION_APP) is not None
    files = legacy_files(root)
    moved = 0
    if not done and (files or table is None):
        rows = read_legacy(files, SCHEMA)
        root.mkdir(parents=True, exist_ok=True)
        _append(root, rows, MIGRATION_APP, 0)
        moved = len(rows)
    if files or (root / "_spark_metadata").exists():
        remove_legacy(root)
    return moved


def write_batch(root: Path, batch_id: int, events: pd.DataFrame) -> bool:
    """The driver's append of one batch's valid events; nothing when that batch is already in.

    Single writer (the aggregates query's foreachBatch), so check-then-append is safe: delta-rs
    records the app transaction but does not skip a repeated one by itself. Returns True when
    it appended."""
    if not is_table(root):
        migrate(root)  # the first write: a legacy log moves in (or an empty table is created)
    if is_written(root, batch_id):
        return False
    _append(root, _arrow(events), APP, batch_id)
    return True


def write_batch_spark(events, root: Path, batch_id: int) -> bool:
    """One batch's valid events as a Spark DataFrame (cluster mode): collected to the driver and
    appended there. A micro-batch is small (--max-offsets-per-trigger bounds it), and one
    writer on the driver keeps the exactly-once check simple and the JVM free of Delta jars."""
    if is_table(root) and is_written(root, batch_id):
        return False
    return write_batch(root, batch_id, events.select(*COLUMNS).toPandas())


def add_actions(table: DeltaTable) -> pa.Table:
    """The snapshot's data files with their size and row count (`path`, `size_bytes`, `num_records`)."""
    return pa.table(table.get_add_actions(flatten=True))  # an arro3 table: to pyarrow


def _local(uri: str) -> Path:
    return Path(unquote(urlparse(uri).path)) if uri.startswith("file:") else Path(uri)


def committed_files(root: Path, version: int | None = None) -> list[Path]:
    """Parquet files holding every committed event, as absolute paths: a legacy log's (until it
    is migrated) then the table's active data files (at `version`, default latest).

    Compaction rewrites small files into bigger ones holding the same rows, so a reader that
    tracks the files it has seen reads those rows again: it must tolerate duplicates (serving's
    ratings index keeps the latest rating per (user, movie), so for it they change nothing)."""
    if not root.is_dir():
        return []
    files = [] if version is not None else legacy_files(root)
    if is_table(root):
        files += [_local(u).resolve() for u in open_table(root, version).file_uris()]
    return files


def read_event_log(root: Path | None = None, version: int | None = None) -> pd.DataFrame:
    """Committed events as (user_id, movie_id, rating, timestamp) in arrival order (Kafka time,
    then offset: a table's files come in no set order, and a re-rating at an equal event time is
    decided by arrival, as streamrec.history_frames decides it): the table's snapshot `version`
    (default latest, with a not yet migrated legacy log); empty when none yet."""
    root = root or event_log_dir()
    cols = [*RATING_COLUMNS, *ARRIVAL]
    parts = []
    if version is not None:
        parts.append(open_table(root, version).to_pandas(columns=cols))
    else:
        if root.is_dir() and legacy_files(root):
            parts.append(read_legacy(legacy_files(root), SCHEMA).select(cols).to_pandas())
        if is_table(root):
            parts.append(open_table(root).to_pandas(columns=cols))
    if not parts:
        return empty_ratings()
    frame = pd.concat(parts, ignore_index=True)
    frame[list(ARRIVAL)] = frame[list(ARRIVAL)].fillna(0)  # a legacy row without them: first
    frame = frame.sort_values(list(ARRIVAL), kind="stable", ignore_index=True)
    return frame[RATING_COLUMNS].astype(RATING_DTYPES)


def count_events(root: Path | None = None, version: int | None = None) -> int:
    """Committed events, from the Delta log's per-file statistics and legacy footers (no data read)."""
    root = root or event_log_dir()
    n = 0
    if version is None and root.is_dir():
        n += sum(pq.ParquetFile(f).metadata.num_rows for f in legacy_files(root))
    if is_table(root):
        n += int(pc.sum(add_actions(open_table(root, version))["num_records"]).as_py() or 0)
    return n

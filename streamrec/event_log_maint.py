"""Keeping the event log's table small and its snapshots honest: compaction, vacuum, the log's
pruning, stats.

Compaction rewrites the many small per-batch files into files of up to `target_bytes` (the same
rows: a new table version, older versions unchanged): an eighth of the table, at most
TARGET_FILE_BYTES. A fixed 32 MB target rewrote a table smaller than that whole at every
compaction (a file below the target is merged again), so the bytes written per event grew with
the table, and each rewrite stayed on disk for the grace and for every kept model that pinned it
(the hour's soak of 2026-12-02: 8x the live table on disk). Scaled, a file is merged again only
once the table has about doubled: each event is rewritten O(log(table)) times, and a table has
at most ~16 compacted files below the cap (delta-rs leaves a bin of one file alone).

Vacuum then deletes the data files no snapshot worth keeping needs: it keeps the latest version,
every version a kept model names (`history.event_log_version`; the model store prunes old models,
so older snapshots go with them) and, for the grace (the table's deletedFileRetentionDuration,
GRACE_MINUTES unless set), files a compaction replaced (a reader that listed them a moment ago
still finds them) and files a running writer has not committed yet.
Last, the Delta log (one JSON commit per batch, up to 86,400 a day) loses the commits and
checkpoints below a checkpoint at or before the oldest version that must stay loadable (that of
the oldest kept model, or the latest): every version from there on still loads, older ones no
longer do (a clear DataError).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow.compute as pc
from deltalake import DeltaTable

from . import logs
from .errors import DataError
from .event_log import (
    CHECKPOINT_FILE,
    GRACE_MINUTES,
    GRACE_PROPERTY,
    add_actions,
    count_events,
    is_table,
    legacy_files,
    log_start,
    migrate,
    open_table,
)

LOG = logs.get("eventlog")

# Files this big are left alone, so a compaction rewrites at most this much + the new small files.
TARGET_FILE_BYTES = 32 * 1024 * 1024
MIN_TARGET_BYTES = 1024 * 1024  # below this, a file's fixed costs (footer, one more to list) dominate
TIERS = 8  # the target is the table's bytes / TIERS
# The grace (GRACE_MINUTES, streamrec.event_log) is at least a minute outside tests: files not in
# the log yet, which a running writer (the stream's append, a compaction) may be about to commit,
# are kept that long too, and a grace of 0 beside a running writer deleted such a file.
_INTERVAL = re.compile(r"interval\s+(\d+)\s+(second|minute|hour|day|week)s?")
_MINUTES = {"second": 1 / 60, "minute": 1, "hour": 60, "day": 1440, "week": 10080}


@dataclass(frozen=True)
class Stats:
    events: int
    data_files: int
    bytes: int
    version: int | None
    min_timestamp: int | None
    max_timestamp: int | None
    log_files: int | None = None  # files in _delta_log (commits, checkpoints): what prune_log bounds

    def to_dict(self) -> dict:
        return asdict(self)


def stats(root: Path) -> Stats:
    """Events, data files and their bytes, table version, event-time range (from the log only) and
    the log's own file count; a legacy log not migrated yet counts in events and files (not in
    bytes' table part)."""
    legacy = legacy_files(root) if root.is_dir() else []
    if not is_table(root):
        return Stats(count_events(root), len(legacy), sum(f.stat().st_size for f in legacy), None, None, None)
    table = open_table(root)
    actions = add_actions(table)
    lo = pc.min(actions["min.timestamp"]).as_py() if actions.num_rows else None
    hi = pc.max(actions["max.timestamp"]).as_py() if actions.num_rows else None
    size = _bytes(actions) + sum(f.stat().st_size for f in legacy)
    log_files = sum(1 for f in (root / "_delta_log").iterdir() if f.is_file())
    return Stats(count_events(root), actions.num_rows + len(legacy), size, table.version(), lo, hi, log_files)


def table_bytes(table) -> int:
    return _bytes(add_actions(table))


def _bytes(actions) -> int:
    return int(pc.sum(actions["size_bytes"]).as_py() or 0) if actions.num_rows else 0


def target_bytes(table_size: int) -> int:
    """Compaction's target file size for a table of `table_size` bytes (see the module's doc)."""
    return int(min(TARGET_FILE_BYTES, max(MIN_TARGET_BYTES, table_size // TIERS)))


def kept_versions(root: Path, model_root: Path | None) -> list[int]:
    """Table versions the model store's versions were trained on (their retrains need them)."""
    from .model_store import ModelStore

    store = ModelStore(model_root)
    versions = set()
    for v in store.versions() if store.root.is_dir() else []:
        try:
            h = store.metadata(v).history
        except Exception:  # noqa: BLE001 - a half-written version names no snapshot
            continue
        if h and h.event_log and h.event_log_version is not None and _same(Path(h.event_log), root):
            versions.add(int(h.event_log_version))
    return sorted(versions)


def _same(a: Path, b: Path) -> bool:
    return a.resolve() == b.resolve()


def grace_minutes(root: Path, table: DeltaTable | None = None) -> float | None:
    """The table's grace in minutes (its deletedFileRetentionDuration), None when it has none or
    one this module cannot read (Delta's default then is a week). `table`: `root` already open."""
    value = (table or open_table(root)).metadata().configuration.get(GRACE_PROPERTY)
    m = _INTERVAL.fullmatch((value or "").strip().lower())
    return int(m[1]) * _MINUTES[m[2]] if m else None


def set_grace(root: Path, minutes: int | None = None, table: DeltaTable | None = None) -> float:
    """Make the table's grace `minutes` (None: keep the table's, or set GRACE_MINUTES on a table
    created without one). A change is a metadata commit: a stream's append that loaded the
    table before it fails once and is retried (streamrec.event_log). Returns the grace."""
    table = table or open_table(root)
    current = grace_minutes(root, table)
    wanted = minutes if minutes is not None else (current if current is not None else GRACE_MINUTES)
    if current != wanted:
        table.alter.set_table_properties({GRACE_PROPERTY: f"interval {wanted} minutes"},
                                                    raise_if_not_exists=False)  # fmt: skip
    return wanted


def compact(root: Path, model_root: Path | None = None, grace: int | None = None) -> dict:
    """Migrate a legacy log (once), compact the small files, vacuum, checkpoint, prune the log.
    `grace` in minutes (None: the table's, see `set_grace`). Returns what it did."""
    t0 = time.monotonic()
    migrated = migrate(root)
    table = open_table(root)  # once: each step below leaves it at the version it committed
    grace_min = set_grace(root, grace, table)
    table.update_incremental()  # the grace's commit, and the stream's appends since the open
    before = len(table.file_uris())
    target = target_bytes(table_bytes(table))
    metrics = table.optimize.compact(target_size=target)
    keep = kept_versions(root, model_root)
    removed = vacuum(root, keep, table)
    table.update_incremental()  # after the vacuum's own commits
    table.create_checkpoint()  # a fresh snapshot reads one checkpoint, not every commit since
    pruned = prune_log(root, [*keep, table.version()], grace_min, latest=table.version())
    return {
        "migrated_events": migrated,
        "files_before": before,
        "files_after": len(table.file_uris()),
        "files_compacted": int(metrics.get("numFilesRemoved", 0)),
        "target_bytes": target,
        "grace_minutes": grace_min,
        "files_deleted": len(removed),
        "kept_versions": keep,
        "log_files_deleted": len(pruned),
        "oldest_version": log_start(root),  # the oldest version the log still loads
        "version": table.version(),
        "seconds": round(time.monotonic() - t0, 3),
    }


def vacuum(root: Path, keep_versions: list[int], table: DeltaTable | None = None) -> list[str]:
    """Delete data files that neither the latest version, nor a kept version, nor the table's grace
    (`set_grace`) needs: files a compaction replaced go once their removal is older than the grace,
    files the log does not know once they are. Never runs on a legacy log (vacuum deletes files
    the Delta log does not know)."""
    if legacy_files(root):
        raise RuntimeError(f"{root} still holds a legacy event log: migrate it first")
    table = table or open_table(root)
    current = table.version()
    keep = sorted({v for v in keep_versions if v <= current})
    return table.vacuum(retention_hours=None, dry_run=False, enforce_retention_duration=False,
                        full=True, keep_versions=keep or None)  # fmt: skip


# A table version's files in _delta_log: its commit, checkpoint (one file, or parts) and checksum.
_LOG_FILE = re.compile(r"(\d{20})\.(json|crc|checkpoint(\.\d+\.\d+)?\.parquet)")


def prune_log(
    root: Path, needed: list[int], grace_minutes: float = GRACE_MINUTES, latest: int | None = None
) -> list[str]:
    """Delete the `_delta_log` files (commits, checkpoints) below the newest checkpoint at or before
    the oldest `needed` version (or the latest), so that every version from that one on still
    loads: a reader starts from the newest checkpoint at or before its version and replays the
    commits after it, all kept. Writes that checkpoint when it is missing. Returns the names
    deleted, oldest first (a crash midway leaves an unbroken log from some version on).

    The grace, by file mtimes: the checkpoint pruned below must be older than `grace_minutes`, so
    a reader that listed the log before it existed (and replays from an older checkpoint) has
    had that long to finish; files younger than the grace are never deleted either.

    Hand-written, not `DeltaTable.cleanup_metadata()` (delta-rs 1.6). That one deletes the files
    below the newest checkpoint at or before the version the table is loaded at, and older than
    that snapshot's `delta.logRetentionDuration` (30 days by default): on the latest version it
    deletes the commits kept models' versions need (tried: they no longer load); loaded at the
    oldest needed version it is safe, but its cutoff comes from that old snapshot's properties
    (a month of commits kept, and no way to set it after the fact nor per call) and it would
    prune below a checkpoint written a moment ago, under a reader that listed the log before."""
    log = root / "_delta_log"
    latest = open_table(root).version() if latest is None else latest  # the caller's, when it has it
    oldest = min([v for v in needed if 0 <= v <= latest] + [latest])
    if not (log / f"{oldest:020d}.checkpoint.parquet").exists():
        # delta-rs checkpoints the version a table is loaded at, and leaves _last_checkpoint on the
        # newer checkpoint compact() just wrote: the latest version still loads from that one.
        try:
            open_table(root, oldest).create_checkpoint()
        except DataError:  # it no longer loads: prune below an older checkpoint, if any
            LOG.warning("event log version %d does not load: no checkpoint written for it", oldest)
    cutoff = time.time() - grace_minutes * 60
    files = sorted((int(m[1]), f.name) for f in log.iterdir() if (m := _LOG_FILE.fullmatch(f.name)))
    checkpoints = [v for v, name in reversed(files) if v <= oldest and CHECKPOINT_FILE.fullmatch(name)]
    boundary = next((v for v in checkpoints if _mtime(log / f"{v:020d}.checkpoint.parquet") <= cutoff), None)
    if boundary is None:
        return []
    hint = _last_checkpoint(log)  # where readers start: never below it (it is the newest anyway)
    boundary = boundary if hint is None else min(boundary, hint)
    doomed = [name for v, name in files if v < boundary and _mtime(log / name) <= cutoff]
    for name in doomed:
        (log / name).unlink(missing_ok=True)
    return doomed


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:  # a concurrent prune deleted it
        return float("inf")


def _last_checkpoint(log: Path) -> int | None:
    try:
        return int(json.loads((log / "_last_checkpoint").read_text())["version"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def compact_on_schedule(root: Path, batch_id: int, every: int, model_root: Path | None) -> dict | None:
    """The stream's compaction: after every `every`-th batch (0: never). A failure is logged, not
    raised: the batch's events are committed, and the next scheduled run tries again."""
    if every <= 0 or batch_id <= 0 or batch_id % every:
        return None
    try:
        done = compact(root, model_root)
        LOG.info("event log compacted: %s", done)
        return done
    except Exception:  # noqa: BLE001 - maintenance must not stop the stream
        LOG.warning("event log compaction failed (retried after %d batches)", every, exc_info=True)
        return None

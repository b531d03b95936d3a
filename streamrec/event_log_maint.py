"""Keeping the event log's table small and its snapshots honest: compaction, vacuum, stats.

Compaction rewrites the many small per-batch files into files of up to TARGET_FILE_BYTES (the
same rows: a new table version, older versions unchanged). Vacuum then deletes the data files
no snapshot worth keeping needs: it keeps the latest version, every version a kept model names
(`history.event_log_version`; the model store prunes old models, so older snapshots go with
them) and, for GRACE_HOURS, files a compaction replaced (a reader that listed them a moment ago
still finds them) and files a running writer has not committed yet.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow.compute as pc

from . import logs
from .event_log import add_actions, count_events, is_table, legacy_files, migrate, open_table

LOG = logs.get("eventlog")

# Files this big are left alone, so a compaction rewrites at most this much + the new small files.
TARGET_FILE_BYTES = 32 * 1024 * 1024
# Files a compaction replaced stay this long for readers that listed them before; so do files not
# in the log yet, which a running writer (the stream's append, a compaction) may be about to
# commit: a grace of 0 beside a running writer deleted such a file, so only tests use 0.
GRACE_HOURS = 1


@dataclass(frozen=True)
class Stats:
    events: int
    data_files: int
    bytes: int
    version: int | None
    min_timestamp: int | None
    max_timestamp: int | None

    def to_dict(self) -> dict:
        return asdict(self)


def stats(root: Path) -> Stats:
    """Events, data files and their bytes, table version and event-time range (from the log only);
    a legacy log not migrated yet counts in events and files (not in bytes' table part)."""
    legacy = legacy_files(root) if root.is_dir() else []
    if not is_table(root):
        return Stats(count_events(root), len(legacy), sum(f.stat().st_size for f in legacy), None, None, None)
    table = open_table(root)
    actions = add_actions(table)
    lo = pc.min(actions["min.timestamp"]).as_py() if actions.num_rows else None
    hi = pc.max(actions["max.timestamp"]).as_py() if actions.num_rows else None
    size = int(pc.sum(actions["size_bytes"]).as_py() or 0) + sum(f.stat().st_size for f in legacy)
    return Stats(count_events(root), actions.num_rows + len(legacy), size, table.version(), lo, hi)


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


def compact(root: Path, model_root: Path | None = None, grace_hours: int = GRACE_HOURS) -> dict:
    """Migrate a legacy log (once), compact the small files, checkpoint, vacuum. Returns what it did."""
    t0 = time.monotonic()
    migrated = migrate(root)
    table = open_table(root)
    before = len(table.file_uris())
    metrics = table.optimize.compact(target_size=TARGET_FILE_BYTES)
    table = open_table(root)
    table.create_checkpoint()  # a fresh snapshot reads one checkpoint, not every commit since
    keep = kept_versions(root, model_root)
    removed = vacuum(root, keep, grace_hours)
    return {
        "migrated_events": migrated,
        "files_before": before,
        "files_after": len(open_table(root).file_uris()),
        "files_compacted": int(metrics.get("numFilesRemoved", 0)),
        "files_deleted": len(removed),
        "kept_versions": keep,
        "version": open_table(root).version(),
        "seconds": round(time.monotonic() - t0, 3),
    }


def vacuum(root: Path, keep_versions: list[int], grace_hours: int = GRACE_HOURS) -> list[str]:
    """Delete data files that neither the latest version, nor a kept version, nor the grace
    window needs. Never runs on a legacy log (vacuum deletes files the Delta log does not know)."""
    if legacy_files(root):
        raise RuntimeError(f"{root} still holds a legacy event log: migrate it first")
    table = open_table(root)
    current = table.version()
    keep = sorted({v for v in keep_versions if v <= current})
    return table.vacuum(retention_hours=grace_hours, dry_run=False, enforce_retention_duration=False,
                        full=True, keep_versions=keep or None)  # fmt: skip


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

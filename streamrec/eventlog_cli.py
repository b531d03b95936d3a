"""`streamrec eventlog compact|stats`: the event log table's maintenance and numbers.

Part of the core like `kafka` and `cluster`: the event log lives in streamrec (no component)."""

from __future__ import annotations

import json

import click

from .settings import home


@click.group("eventlog", help="the stream's event log (a Delta table): compact it, report on it")
def eventlog() -> None:
    pass


@eventlog.command("compact", help="migrate a legacy log once, rewrite small files into big ones, delete "
                  "data and log files no kept snapshot needs (the latest, kept models' versions, "
                  "the grace)")  # fmt: skip
# At least 1: files younger than the grace also cover a running stream's append or compaction,
# written but not committed yet (0 deleted such files in a test with a concurrent writer).
@click.option("--grace-minutes", type=click.IntRange(min=1), default=None,
              help="keep replaced and uncommitted files, and the log a reader may be replaying, this long "
                   "(readers, running writers); sets the table's delta.deletedFileRetentionDuration "
                   "[default: the table's, 15 when it has none]")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
def compact_cmd(grace_minutes: int | None, as_json: bool) -> int:
    from .event_log import event_log_dir
    from .event_log_maint import compact

    done = compact(event_log_dir(), home() / "models", grace_minutes)
    if as_json:
        print(json.dumps(done))
    else:
        moved = f", {done['migrated_events']:,} legacy events migrated" if done["migrated_events"] else ""
        print(f"event log version {done['version']}: {done['files_before']} -> {done['files_after']} data "
              f"files, {done['files_deleted']} deleted, snapshots kept for models: "
              f"{done['kept_versions'] or 'none'}, {done['log_files_deleted']} log files pruned (versions "
              f"from {done['oldest_version']} load){moved}")  # fmt: skip
    return 0


@eventlog.command("stats", help="events, data files, bytes, table version, event-time range, log files")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
def stats_cmd(as_json: bool) -> int:
    from .event_log import event_log_dir
    from .event_log_maint import stats

    s = stats(event_log_dir())
    if as_json:
        print(json.dumps(s.to_dict()))
    else:
        span = f"{s.min_timestamp} .. {s.max_timestamp}" if s.min_timestamp is not None else "none"
        log = f", {s.log_files} log files" if s.log_files is not None else ""
        print(f"{s.events:,} events in {s.data_files} data files ({s.bytes:,} bytes), "
              f"table version {s.version}, event time {span}{log}")  # fmt: skip
    return 0

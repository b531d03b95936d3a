"""The event log as a Delta table: appended once per batch id, compacted, vacuumed around the
snapshots kept models name, older layouts read then migrated once (table logic only; the stream
writing it is in test_streaming.py and test_cluster.py)."""

import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import write_deltalake

from streamrec.cli import main
from streamrec.errors import DataError
from streamrec.event_log import (
    SCHEMA,
    batch_path,
    committed_files,
    count_events,
    is_written,
    migrate,
    read_event_log,
    table_version,
    write_batch,
)
from streamrec.event_log_maint import compact, grace_minutes, kept_versions, set_grace, stats
from streamrec.history import HistorySpec, load_history
from tests.store_support import current_model


def _events(n: int, first_offset: int = 0, with_nulls: bool = False, ts: int = 1_600_000_000) -> pd.DataFrame:
    df = pd.DataFrame({
        "user_id": range(1, n + 1), "movie_id": 7, "rating": 4.5, "timestamp": ts,
        "topic": "ratings", "partition": 0, "offset": range(first_offset, first_offset + n),
        "kafka_ts": 1.7e9, "reason": None,
    })  # fmt: skip
    if with_nulls:  # what toPandas gives when the batch also held bad records: floats
        df = df.astype({"user_id": "float64", "movie_id": "float64"})
    return df


def _legacy_file(path, n: int, first_offset: int = 0) -> None:
    """A file as the per-batch writer before the table wrote it."""
    frame = _events(n, first_offset).drop(columns="reason")
    pq.write_table(pa.Table.from_pandas(frame.astype({"user_id": "int32", "movie_id": "int32",
                                                      "rating": "float32", "partition": "int32"}),
                                        schema=SCHEMA, preserve_index=False), path)  # fmt: skip


def test_a_batch_is_appended_once_under_its_id(tmp_path):
    assert write_batch(tmp_path, 3, _events(2, with_nulls=True))
    assert is_written(tmp_path, 3) and not is_written(tmp_path, 4)
    version = table_version(tmp_path)
    assert not write_batch(tmp_path, 3, _events(5, first_offset=100))  # a replay of batch 3: nothing
    assert not write_batch(tmp_path, 2, _events(5, first_offset=100))  # nor an older one
    assert table_version(tmp_path) == version
    log = pd.read_parquet(committed_files(tmp_path)[0])
    assert log["offset"].tolist() == [0, 1] and str(log["user_id"].dtype) == "int32"
    assert list(log.columns) == SCHEMA.names
    write_batch(tmp_path, 12, _events(1, first_offset=2))
    assert len(committed_files(tmp_path)) == 2 and all(f.is_absolute() for f in committed_files(tmp_path))
    assert count_events(tmp_path) == len(read_event_log(tmp_path)) == 3


def test_every_version_is_a_snapshot_read_again_after_more_appends(tmp_path):
    for b in range(3):
        write_batch(tmp_path, b, _events(10, first_offset=10 * b))
    v = table_version(tmp_path)
    first = read_event_log(tmp_path, v)
    write_batch(tmp_path, 3, _events(10, first_offset=30))
    pd.testing.assert_frame_equal(read_event_log(tmp_path, v), first)
    assert len(read_event_log(tmp_path)) == 40 and count_events(tmp_path, v) == 30
    with pytest.raises(DataError, match="version 99"):
        read_event_log(tmp_path, 99)


def test_a_legacy_log_is_read_until_migrated_once(tmp_path):
    old = tmp_path / "part-old.parquet"  # Spark's file sink, honouring its metadata
    orphan = tmp_path / "part-orphan.parquet"  # on disk but never committed by the file sink
    _legacy_file(old, 1)
    _legacy_file(orphan, 5)
    (tmp_path / "_spark_metadata").mkdir()
    (tmp_path / "_spark_metadata" / "0").write_text("v1\n" + json.dumps({"path": f"file://{old}"}) + "\n")
    _legacy_file(batch_path(tmp_path, 0), 2, first_offset=1)
    (tmp_path / ".batch-000000000001.parquet.tmp").write_bytes(b"PAR1 half a file")  # a killed driver
    assert committed_files(tmp_path) == [old, batch_path(tmp_path, 0)]
    assert read_event_log(tmp_path)["user_id"].tolist() == [1, 1, 2] and count_events(tmp_path) == 3
    assert table_version(tmp_path) is None
    write_batch(tmp_path, 1, _events(4, first_offset=3))  # the table's first write migrates first
    assert not old.exists() and not batch_path(tmp_path, 0).exists()
    assert not (tmp_path / "_spark_metadata").exists()
    assert sorted(read_event_log(tmp_path)["user_id"]) == [1, 1, 1, 2, 2, 3, 4]
    assert migrate(tmp_path) == 0 and count_events(tmp_path) == 7  # once


def test_a_migration_killed_before_deleting_the_old_files_is_not_repeated(tmp_path):
    _legacy_file(batch_path(tmp_path, 0), 2)
    migrate(tmp_path)
    _legacy_file(batch_path(tmp_path, 0), 2)  # as if the deletion had not happened
    assert migrate(tmp_path) == 0
    assert count_events(tmp_path) == 2 and not batch_path(tmp_path, 0).exists()


def test_compaction_bounds_the_files_and_vacuum_keeps_what_kept_models_name(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("STREAMREC_HOME", str(home))
    log = tmp_path / "log"
    for b in range(1, 7):
        write_batch(log, b, _events(5, first_offset=5 * b, ts=1_600_000_000 + b))
    kept = 3  # table version 3: the migration commit (0) and batches 1-3
    before = read_event_log(log, kept)
    current_model(home, event_log=str(log), event_log_version=kept)
    current_model(home, event_log=str(tmp_path / "another-log"), event_log_version=5)  # not this log
    assert kept_versions(log, home / "models") == [kept]
    done = compact(log, home / "models", grace=0)
    assert (done["files_before"], done["files_after"], done["kept_versions"]) == (6, 1, [kept])
    assert done["files_deleted"] == 3  # batches 4-6's small files: neither the latest nor kept need them
    pd.testing.assert_frame_equal(read_event_log(log, kept), before)  # a kept model can retrain
    assert len(read_event_log(log)) == count_events(log) == 30
    s = stats(log)
    assert s.to_dict() == {"events": 30, "data_files": 1, "bytes": s.bytes, "version": done["version"],
                           "min_timestamp": 1_600_000_001, "max_timestamp": 1_600_000_006,
                           "log_files": len(list((log / "_delta_log").iterdir()))}  # fmt: skip
    assert s.bytes > 0
    with pytest.raises(Exception):  # noqa: B017 - version 5's files are gone: no model needs them
        read_event_log(log, 5)


def test_the_training_snapshot_is_pinned_and_reproducible(tmp_path, monkeypatch):
    from batch.publish import default_spec
    from streamrec.settings import BUNDLED_DATA

    monkeypatch.setenv("STREAMREC_HOME", str(tmp_path))
    log = tmp_path / "eventlog"
    write_batch(log, 0, _events(3))
    spec = default_spec(BUNDLED_DATA, split_at=0.5)
    assert spec.event_log == str(log) and spec.event_log_version == table_version(log)
    first = load_history(spec, pinned=True)
    write_batch(log, 1, _events(4, first_offset=3))  # the stream goes on
    again = load_history(HistorySpec.from_dict(spec.to_dict()), pinned=True)  # as the metadata stores it
    pd.testing.assert_frame_equal(again, first)
    assert len(load_history(spec)) == len(first) + 4  # unpinned: the log as it is now
    assert default_spec(BUNDLED_DATA, split_at=0.5, event_log_version=1).event_log_version == 1
    with pytest.raises(DataError):
        default_spec(BUNDLED_DATA, event_log_version=42)


def test_eventlog_commands(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("STREAMREC_HOME", str(tmp_path))
    monkeypatch.delenv("STREAMREC_SPARK_STORAGE", raising=False)
    for b in range(3):
        write_batch(tmp_path / "eventlog", b, _events(2, first_offset=2 * b))
    assert main(["eventlog", "stats", "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    required = {"events", "data_files", "bytes", "version", "min_timestamp", "max_timestamp"}
    assert set(s) == required | {"log_files"}
    assert (s["events"], s["data_files"], s["version"]) == (6, 3, 3)
    assert main(["eventlog", "compact", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["files_after"] == 1
    assert main(["eventlog", "stats"]) == 0 and "6 events in 1 data files" in capsys.readouterr().out


def test_a_snapshot_goes_with_the_last_model_version_that_named_it(tmp_path):
    from streamrec.model_store import ModelStore

    log = tmp_path / "log"
    for b in range(1, 4):
        write_batch(log, b, _events(2, first_offset=2 * b))
    current_model(tmp_path, event_log=str(log), event_log_version=1)
    compact(log, tmp_path / "models", grace=0)  # batch 1's file: in no version but 1-3 now
    assert len(read_event_log(log, 1)) == 2
    write_batch(log, 4, _events(2, first_offset=8))
    latest = table_version(log)
    current_model(tmp_path, event_log=str(log), event_log_version=latest)  # now CURRENT
    assert kept_versions(log, tmp_path / "models") == [1, latest]
    ModelStore(tmp_path / "models").prune(keep=1)
    assert kept_versions(log, tmp_path / "models") == [latest]
    compact(log, tmp_path / "models", grace=0)
    assert count_events(log) == len(read_event_log(log, latest)) == 8
    with pytest.raises(DataError, match="pruned"):  # version 1 is gone with the model that named it
        read_event_log(log, 1)


def test_compaction_prunes_the_log_below_the_oldest_kept_version_and_time_travel_survives(tmp_path):
    """The Delta log (a JSON commit per batch) loses what lies below a checkpoint at the oldest kept
    model's version: that version, later ones and the latest load the same rows; the app
    transactions live on in the checkpoints; older versions fail clearly."""
    from streamrec import event_log
    from streamrec.event_log import APP, MIGRATION_APP, open_table
    from streamrec.model_store import ModelStore

    log, models = tmp_path / "log", tmp_path / "models"
    for b in range(1, 31):  # table versions 1-30 (0: the migration commit that created it)
        write_batch(log, b, _events(2, first_offset=2 * b, ts=1_600_000_000 + b))
    older, kept = 10, 20
    current_model(tmp_path, event_log=str(log), event_log_version=older)
    current_model(tmp_path, event_log=str(log), event_log_version=kept)  # now CURRENT
    before = {v: read_event_log(log, v) for v in (older, kept)}
    newest = read_event_log(log)  # the latest version: compaction rewrites it into one file, same rows

    def log_files() -> list[str]:
        return sorted(f.name for f in (log / "_delta_log").iterdir())

    n_before = len(log_files())
    held = compact(log, models)  # the grace (15 minutes): every log file is younger, none goes
    assert (held["log_files_deleted"], held["oldest_version"]) == (0, 0)
    assert f"{older:020d}.checkpoint.parquet" in log_files()  # written for the oldest kept version
    done = compact(log, models, grace=0)
    assert done["kept_versions"] == [older, kept] and done["oldest_version"] == older
    assert done["log_files_deleted"] == older  # the commits of versions 0-9
    assert [f for f in log_files() if f.endswith(".json")][0] == f"{older:020d}.json"
    assert len(log_files()) < n_before and stats(log).log_files == len(log_files())
    for v, rows in before.items():  # the kept versions: the same rows as before the pruning
        pd.testing.assert_frame_equal(read_event_log(log, v), rows)
        assert count_events(log, v) == len(rows) and len(committed_files(log, v)) > 0
    by_event = ["user_id", "timestamp"]
    pd.testing.assert_frame_equal(read_event_log(log).sort_values(by_event, ignore_index=True),
                                  newest.sort_values(by_event, ignore_index=True))  # fmt: skip
    assert count_events(log) == len(newest) == 60
    last = json.loads((log / "_delta_log" / "_last_checkpoint").read_text())["version"]
    assert last == done["version"]  # the latest still loads from its own checkpoint, not version 10's

    # The app transactions: in the checkpoints, as the cached writer and a fresh load see them.
    assert is_written(log, 30) and not is_written(log, 31)
    event_log._writers.clear()  # a restarted stream: loads from the checkpoint
    assert open_table(log).transaction_version(APP) == 30 and is_written(log, 30)
    assert open_table(log, older).transaction_version(APP) == older  # version 10's own checkpoint
    assert open_table(log).transaction_version(MIGRATION_APP) == 0
    assert not write_batch(log, 17, _events(3, first_offset=500))  # an old batch id: skipped
    assert migrate(log) == 0 and table_version(log) == done["version"]  # the migration is not redone
    pruned = f"at version {older - 1}: its log was pruned below version {older}"
    for read in (read_event_log, count_events, committed_files):
        with pytest.raises(DataError, match=pruned):
            read(log, older - 1)

    # The older model goes: the log is pruned up to the next kept version, old checkpoint included.
    write_batch(log, 31, _events(2, first_offset=100))
    ModelStore(models).prune(keep=1)
    assert kept_versions(log, models) == [kept]
    again = compact(log, models, grace=0)
    assert again["oldest_version"] == kept
    assert again["log_files_deleted"] == kept - older + 1  # commits 10-19 and version 10's checkpoint
    assert f"{older:020d}.checkpoint.parquet" not in log_files()
    pd.testing.assert_frame_equal(read_event_log(log, kept), before[kept])
    assert len(read_event_log(log)) == 62 and open_table(log).transaction_version(APP) == 31
    with pytest.raises(DataError, match="pruned below version 20"):
        read_event_log(log, older)


def test_the_log_is_pruned_below_a_checkpoint_only_once_it_is_older_than_the_grace(tmp_path):
    """A reader that listed the log before the checkpoint existed replays the commits before it:
    they stay until the checkpoint is older than the grace, however old they are themselves."""
    import os
    import time

    log = tmp_path / "log"
    for b in range(1, 6):
        write_batch(log, b, _events(2, first_offset=2 * b))

    def age_log() -> None:
        two_hours_ago = time.time() - 2 * 3600
        for f in (log / "_delta_log").iterdir():
            os.utime(f, (two_hours_ago, two_hours_ago))

    age_log()  # commits written two hours ago, no checkpoint yet
    done = compact(log, tmp_path / "models")  # checkpoints the latest version now
    assert (done["log_files_deleted"], done["oldest_version"]) == (0, 0)
    age_log()  # as if at the next compaction, two hours later
    again = compact(log, tmp_path / "models")
    assert again["oldest_version"] == again["version"] == done["version"]  # no model: the latest
    assert again["log_files_deleted"] == done["version"]  # every commit before it
    assert len(read_event_log(log)) == 10 and is_written(log, 5) and not write_batch(log, 5, _events(1))


@pytest.mark.integration
def test_train_twice_from_one_event_log_version_learns_from_the_same_events(spark, tmp_path, monkeypatch):
    from batch.publish import TrainOptions, default_spec, run_training
    from batch.train import Params, RankingParams
    from streamrec.model_store import ModelStore
    from streamrec.settings import BUNDLED_DATA

    monkeypatch.setenv("STREAMREC_HOME", str(tmp_path))
    log = tmp_path / "eventlog"
    for b in range(2):
        write_batch(log, b, _events(40, first_offset=40 * b, ts=1_700_000_000 + b))
    store = ModelStore(tmp_path / "models")

    def train(version: int | None) -> dict:
        spec = default_spec(BUNDLED_DATA, split_at=0.5, event_log_version=version)
        opts = TrainOptions(spec, Params(rank=4, iters=2), RankingParams(rank=4, iters=2), force=True)
        return store.metadata(run_training(spark, opts, store)["version"]).to_dict()

    first = train(None)  # the latest version, recorded
    assert first["history"]["event_log_version"] == table_version(log) == 2
    write_batch(log, 2, _events(40, first_offset=80, ts=1_700_000_002))  # the stream goes on
    compact(log, store.root, grace=0)  # and compacts: version 2's files stay, a model names it
    again = train(2)
    assert again["history"] == first["history"] and again["counts"] == first["counts"]
    assert again["newest_event_ts"] == first["newest_event_ts"] == 1_700_000_001


def test_compaction_beside_a_running_writer_loses_nothing(tmp_path):
    """`eventlog compact` in another process while the stream appends: with the grace, a file
    written but not committed yet is not vacuumed (a grace of 0 deleted one)."""
    import subprocess
    import sys

    log = tmp_path / "log"
    write_batch(log, 0, _events(10))
    code = ("import sys; from pathlib import Path; from streamrec.event_log_maint import compact\n"
            "for _ in range(5): compact(Path(sys.argv[1]), Path(sys.argv[2]))")  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-c", code, str(log), str(tmp_path / "models")])
    for b in range(1, 80):
        write_batch(log, b, _events(10, first_offset=10 * b))
    assert proc.wait(120) == 0
    events = pd.concat([pd.read_parquet(f) for f in committed_files(log)], ignore_index=True)
    assert count_events(log) == len(events) == 800
    assert sorted(events["offset"]) == list(range(800))


def test_the_streams_compaction_runs_every_n_batches_and_a_failure_does_not_stop_it(tmp_path, monkeypatch):
    from streamrec import event_log_maint

    log = tmp_path / "log"
    ran = [b for b in range(7) if write_batch(log, b, _events(1, first_offset=b)) is not None
           and event_log_maint.compact_on_schedule(log, b, 3, tmp_path / "models")]  # fmt: skip
    assert ran == [3, 6] and stats(log).data_files == 1  # batch 6's compaction left one file
    assert event_log_maint.compact_on_schedule(log, 9, 0, None) is None  # 0: never

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(event_log_maint, "compact", broken)
    assert event_log_maint.compact_on_schedule(log, 9, 3, None) is None  # logged, not raised


def test_compaction_rewrites_each_event_a_bounded_number_of_times(tmp_path, monkeypatch):
    """A table below the cap is not rewritten whole at every compaction (a fixed 32 MB target did:
    the bytes written grew with the table's age, 6.8x the table after 12 rounds here), and its
    compacted files stay few."""
    import numpy as np

    from streamrec import event_log_maint as maint
    from streamrec.event_log import add_actions, open_table

    monkeypatch.setattr(maint, "MIN_TARGET_BYTES", 1)  # the scaling, on a table of kilobytes
    rng, log, offset, written = np.random.default_rng(0), tmp_path / "log", 0, 0
    for r in range(12):
        for b in range(10):
            n = 300
            frame = _events(n, first_offset=offset, ts=1_600_000_000 + offset)
            frame["user_id"], frame["movie_id"] = rng.integers(1, 20_000, n), rng.integers(1, 9_000, n)
            frame["rating"] = rng.integers(1, 11, n) / 2
            write_batch(log, r * 10 + b + 1, frame)
            offset += n
        before = set(add_actions(open_table(log))["path"].to_pylist())
        compact(log, tmp_path / "models", grace=0)
        files = add_actions(open_table(log))
        sizes = zip(files["path"].to_pylist(), files["size_bytes"].to_pylist(), strict=True)
        written += sum(size for path, size in sizes if path not in before)
    table = maint.table_bytes(open_table(log))
    assert written / table < 4.0, f"compactions wrote {written / table:.1f}x the table"
    assert files.num_rows <= 2 * maint.TIERS
    assert count_events(log) == offset


def test_the_compaction_target_scales_with_the_table_between_bounds():
    from streamrec.event_log_maint import MIN_TARGET_BYTES, TARGET_FILE_BYTES, TIERS, target_bytes

    assert target_bytes(0) == MIN_TARGET_BYTES
    assert target_bytes(TIERS * 5 * MIN_TARGET_BYTES) == 5 * MIN_TARGET_BYTES
    assert target_bytes(10**12) == TARGET_FILE_BYTES


def test_the_grace_is_the_tables_own_setting_in_minutes(tmp_path):
    """The vacuum's grace is the table's deletedFileRetentionDuration: 15 minutes on a new table,
    changed by `compact(grace=...)` and kept until changed again, set at the first compaction of a
    table written without it. A file a compaction replaced stays while its removal is younger."""
    log, models = tmp_path / "log", tmp_path / "models"
    for b in range(1, 4):
        write_batch(log, b, _events(3, first_offset=10 * b))
    assert grace_minutes(log) == 15
    done = compact(log, models)
    assert (done["grace_minutes"], done["files_compacted"], done["files_deleted"]) == (15, 3, 0)
    assert len(list(log.glob("*.parquet"))) == 4  # the three replaced ones wait out the grace
    done = compact(log, models, grace=0)  # nothing left to compact: the three go
    assert (done["grace_minutes"], done["files_deleted"]) == (0, 3) and len(list(log.glob("*.parquet"))) == 1
    assert compact(log, models)["grace_minutes"] == 0 and grace_minutes(log) == 0
    old = tmp_path / "old"  # written before the table had the setting: Delta's default is a week
    write_deltalake(str(old), pq.read_table(next(log.glob("*.parquet"))))
    assert grace_minutes(old) is None
    assert compact(old, models)["grace_minutes"] == 15 and grace_minutes(old) == 15


def test_an_append_beside_a_grace_change_is_retried_once(tmp_path, monkeypatch):
    """`eventlog compact --grace-minutes` in another process commits the table's new setting; a
    stream's append that loaded the table just before conflicts with it (delta-rs: metadata
    changed), commits nothing, and is appended again on a fresh load: the batch lands once."""
    import streamrec.event_log as event_log

    write_batch(tmp_path, 1, _events(2))
    real, calls = event_log.write_deltalake, []

    def after_a_concurrent_change(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            set_grace(tmp_path, 5)  # lands between the writer's load and its commit
        return real(*args, **kwargs)

    monkeypatch.setattr(event_log, "write_deltalake", after_a_concurrent_change)
    assert write_batch(tmp_path, 2, _events(2, first_offset=2))
    assert len(calls) == 2  # the first commit failed, the second landed
    assert count_events(tmp_path) == 4 and grace_minutes(tmp_path) == 5
    assert not write_batch(tmp_path, 2, _events(2, first_offset=2))  # and only once

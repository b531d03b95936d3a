"""The event log's files: written once per batch id, complete or invisible, older file-sink logs
still read (pure file logic; the stream writing it is in test_streaming.py and test_cluster.py)."""

import json

import pandas as pd
import pyarrow.parquet as pq

from streamrec.event_log import (
    batch_path,
    committed_files,
    count_events,
    is_written,
    read_event_log,
    write_batch,
)


def _events(n: int, first_offset: int = 0, with_nulls: bool = False) -> pd.DataFrame:
    df = pd.DataFrame({
        "user_id": range(1, n + 1), "movie_id": 7, "rating": 4.5, "timestamp": 1_600_000_000,
        "topic": "ratings", "partition": 0, "offset": range(first_offset, first_offset + n),
        "kafka_ts": 1.7e9, "reason": None,
    })  # fmt: skip
    if with_nulls:  # what toPandas gives when the batch also held bad records: floats
        df = df.astype({"user_id": "float64", "movie_id": "float64"})
    return df


def test_a_batch_is_written_once_under_its_id(tmp_path):
    write_batch(tmp_path, 3, _events(2, with_nulls=True))
    assert is_written(tmp_path, 3) and not is_written(tmp_path, 4)
    write_batch(tmp_path, 3, _events(5, first_offset=100))  # a replay of batch 3: kept as it was
    log = pd.read_parquet(batch_path(tmp_path, 3))
    assert log["offset"].tolist() == [0, 1] and str(log["user_id"].dtype) == "int32"
    write_batch(tmp_path, 12, _events(1, first_offset=2))
    assert committed_files(tmp_path) == [batch_path(tmp_path, 3), batch_path(tmp_path, 12)]
    assert count_events(tmp_path) == len(read_event_log(tmp_path)) == 3


def test_incomplete_writes_are_not_read(tmp_path):
    write_batch(tmp_path, 0, _events(2))
    (tmp_path / ".batch-000000000001.parquet.tmp").write_bytes(b"PAR1 half a file")  # a killed driver
    crashed = batch_path(tmp_path, 2)  # a killed Spark job: parts without _SUCCESS
    crashed.mkdir()
    pq.write_table(pq.read_table(batch_path(tmp_path, 0)), crashed / "part-00000.parquet")
    assert committed_files(tmp_path) == [batch_path(tmp_path, 0)]
    assert not is_written(tmp_path, 2)
    (crashed / "_SUCCESS").touch()  # the same directory once committed
    assert committed_files(tmp_path) == [batch_path(tmp_path, 0), crashed / "part-00000.parquet"]
    assert count_events(tmp_path) == 4


def test_an_older_file_sink_log_is_read_first_honouring_its_metadata(tmp_path):
    old = tmp_path / "part-old.parquet"
    orphan = tmp_path / "part-orphan.parquet"  # on disk but never committed by the file sink
    for f in (old, orphan):
        write_batch(tmp_path, 99, _events(1))
        batch_path(tmp_path, 99).rename(f)
    meta = tmp_path / "_spark_metadata"
    meta.mkdir()
    (meta / "0").write_text("v1\n" + json.dumps({"path": f"file://{old}", "action": "add"}) + "\n")
    write_batch(tmp_path, 0, _events(2, first_offset=1))
    assert committed_files(tmp_path) == [old, batch_path(tmp_path, 0)]
    assert read_event_log(tmp_path)["user_id"].tolist() == [1, 1, 2]

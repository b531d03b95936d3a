"""The event log's write per micro-batch on the driver: the Delta table's append (delta-rs, with
the exactly-once check) against the per-batch Parquet file it replaced (temp file + rename),
interleaved batch by batch; then one compaction of the table (no grace) and a read of it.
A one-off lever check: `.venv/bin/python -m bench.eventlog_append_bench [batches] [events]`."""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from streamrec.event_log import SCHEMA, count_events, read_event_log, write_batch
from streamrec.event_log_maint import compact


def _batch(n: int, b: int) -> pd.DataFrame:
    rng = np.random.default_rng(b)
    return pd.DataFrame({
        "user_id": rng.integers(1, 100_000, n), "movie_id": rng.integers(1, 60_000, n),
        "rating": rng.integers(1, 11, n) / 2, "timestamp": 1_700_000_000 + b, "topic": "ratings",
        "partition": rng.integers(0, 3, n), "offset": np.arange(b * n, (b + 1) * n), "kafka_ts": 1.7e9,
    })  # fmt: skip


def _parquet_file(root: Path, batch_id: int, events: pd.DataFrame) -> None:
    """The former writer: one file per batch, written aside and renamed."""
    tmp, final = root / f".batch-{batch_id:012d}.parquet.tmp", root / f"batch-{batch_id:012d}.parquet"
    frame = events.astype({f.name: f.type.to_pandas_dtype() for f in SCHEMA if f.name != "topic"})
    pq.write_table(pa.Table.from_pandas(frame, schema=SCHEMA, preserve_index=False), tmp)
    os.replace(tmp, final)


def _ms(xs: list[float]) -> str:
    return f"median {statistics.median(xs) * 1e3:.1f} ms, p95 {np.percentile(xs, 95) * 1e3:.1f} ms"


def run(batches: int = 300, events: int = 1000) -> dict:
    with tempfile.TemporaryDirectory() as d:
        delta, files = Path(d) / "delta", Path(d) / "files"
        files.mkdir()
        t_delta, t_files = [], []
        for b in range(batches):
            frame = _batch(events, b)
            t = time.perf_counter()
            write_batch(delta, b, frame)
            t_delta.append(time.perf_counter() - t)
            t = time.perf_counter()
            _parquet_file(files, b, frame)
            t_files.append(time.perf_counter() - t)
        t = time.perf_counter()
        assert not write_batch(delta, batches - 1, frame)  # a replayed batch: the check only
        t_replay = time.perf_counter() - t
        t = time.perf_counter()
        done = compact(delta, Path(d) / "no-models", grace=0)
        t_compact = time.perf_counter() - t
        t = time.perf_counter()
        n = len(read_event_log(delta))  # the compacted table
        t_snapshot = time.perf_counter() - t
        res = {"delta": _ms(t_delta), "parquet_file": _ms(t_files),
               "replayed_batch_ms": round(t_replay * 1e3, 1), "compact_s": round(t_compact, 2),
               "compact": done, "read_s": round(t_snapshot, 3), "rows_read": n,
               "events": count_events(delta)}  # fmt: skip
    for k, v in res.items():
        print(f"{k}: {v}")
    return res


if __name__ == "__main__":
    run(*(int(a) for a in sys.argv[1:]))

"""The API's ratings index (serving.ratings_index): one look at the event log, and what it holds
after compactions, against the design before 2026-12-03, in the same run:
`.venv/bin/python -m bench.ratings_index_bench` (about a minute).

A look while the stream runs finds one new batch (500 events: the soak's second at 500/s) and
merges it in. Before: every batch read so far was kept as a frame of its own and each look re-sorted
all of them (streamrec.history.latest_per_pair, then by user). Now: one sorted copy of the latest
rating per pair, and the batch merged in (serving.rating_rows.merge). A compaction rewrites the
log's files with the same rows; before, each one's rows were read and kept once more.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from serving.rating_rows import merge, rows_of
from streamrec.history import latest_per_pair

SIZES = (100_000, 1_000_000, 5_000_000)
BATCH = 500
LOOKS = 15


def _events(rng: np.random.Generator, n: int, first_offset: int) -> pd.DataFrame:
    return pd.DataFrame({
        "user_id": rng.integers(1, 160_000, n).astype("int32"),
        "movie_id": rng.integers(1, 60_000, n).astype("int32"),
        "rating": rng.choice([1.0, 2.5, 3.0, 4.0, 5.0], n).astype("float32"),
        "timestamp": rng.integers(0, 10**9, n),
        "kafka_ts": 1.7e9 + np.arange(n) / 500,
        "offset": np.arange(first_offset, first_offset + n),
    })  # fmt: skip


def _rebuild(parts: list[pd.DataFrame]) -> None:
    """The look before: everything read so far, re-sorted (serving.ratings_index at 289a75b)."""
    rows = latest_per_pair(pd.concat(parts, ignore_index=True)).sort_values("user_id", kind="stable")
    _ = [rows[c].to_numpy() for c in ("user_id", "movie_id", "rating", "timestamp")]


def _size(n: int) -> dict:
    rng = np.random.default_rng(n)
    parts = [_events(rng, n, 0)]
    rows = rows_of(parts[0])
    before, after = [], []
    for look in range(LOOKS):
        batch = _events(rng, BATCH, n + look * BATCH)
        t = time.perf_counter()
        parts.append(batch)
        _rebuild(parts)
        before.append(time.perf_counter() - t)
        t = time.perf_counter()
        rows = merge(rows, rows_of(batch))
        after.append(time.perf_counter() - t)
    held = sum(a.nbytes for a in vars(rows).values())
    return {"rows": len(rows), "before_ms": 1000 * float(np.median(before)),
            "after_ms": 1000 * float(np.median(after)), "held_mb": held / 1e6}  # fmt: skip


def main() -> None:
    print(f"one look with {BATCH} new events, median of {LOOKS}; before = re-sort everything read")
    for n in SIZES:
        r = _size(n)
        print(f"  {r['rows']:>9,} rows: before {r['before_ms']:7.1f} ms, now {r['after_ms']:6.1f} ms "
              f"({r['before_ms'] / r['after_ms']:.0f}x); held {r['held_mb']:.0f} MB once "
              f"(before: once more after every compaction)", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()

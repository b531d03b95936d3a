"""Per-batch stream metrics: a StreamingQueryListener writes Spark's progress (input rows,
rows/s, duration, state rows) to `stream_metrics` and logs one compact line per batch; the
sinks add latency, dead letters and late events for the same (query, batch) row."""

from __future__ import annotations

import sys
import threading
import time

import numpy as np
from pyspark.sql.streaming import StreamingQueryListener

from streamrec.sink import Sink

METRIC_UPSERT = """
    INSERT INTO stream_metrics (query, batch_id, at, {cols}) VALUES (?, ?, ?, {marks})
    ON CONFLICT (query, batch_id) DO UPDATE SET {updates}"""


def upsert_metrics(sink: Sink, query: str, batch_id: int, **values) -> None:
    cols = list(values)
    sql = METRIC_UPSERT.format(
        cols=", ".join(cols),
        marks=", ".join("?" for _ in cols),
        updates=", ".join(f"{c} = excluded.{c}" for c in cols),
    )
    sink.execute(sql, (query, batch_id, time.time(), *values.values()))


def latency_ms(kafka_ts: np.ndarray, committed_at: float) -> dict:
    """p50/p95/max of commit time minus Kafka record (produce) time, in milliseconds."""
    if len(kafka_ts) == 0:
        return {}
    lat = (committed_at - np.asarray(kafka_ts, dtype=np.float64)) * 1000.0
    return {
        "latency_p50_ms": float(np.percentile(lat, 50)),
        "latency_p95_ms": float(np.percentile(lat, 95)),
        "latency_max_ms": float(lat.max()),
    }


class ProgressListener(StreamingQueryListener):
    def __init__(self, sink_url: str, quiet: bool = False):
        self.sink_url = sink_url
        self.quiet = quiet
        self._sink: Sink | None = None
        self._lock = threading.Lock()

    def onQueryStarted(self, event) -> None:
        pass

    def onQueryIdle(self, event) -> None:
        pass

    def onQueryTerminated(self, event) -> None:
        pass

    def onQueryProgress(self, event) -> None:
        p = event.progress
        state_rows = sum(op.numRowsTotal for op in p.stateOperators) if p.stateOperators else None
        rate = p.processedRowsPerSecond
        with self._lock:
            if self._sink is None:
                self._sink = Sink(self.sink_url, threadsafe=True)
            with self._sink.transaction():
                upsert_metrics(
                    self._sink, p.name, p.batchId,
                    input_rows=p.numInputRows,
                    rows_per_s=float(rate) if rate == rate else None,  # NaN on empty batches
                    duration_ms=int(p.batchDuration),
                    **({"state_rows": int(state_rows)} if state_rows is not None else {}),
                )  # fmt: skip
        if not self.quiet and p.numInputRows:
            extra = f" state={state_rows}" if state_rows is not None else ""
            print(f"[{p.name}] batch {p.batchId}: {p.numInputRows} rows, {rate:,.0f} rows/s, "
                  f"{p.batchDuration} ms{extra}", file=sys.stderr, flush=True)  # fmt: skip

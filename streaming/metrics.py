"""Per-batch stream metrics: a StreamingQueryListener writes Spark's progress (input rows,
rows/s, duration, state rows) to `stream_metrics` and logs one compact line per batch; the
sinks add latency, dead letters and late events for the same (query, batch) row."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import sqlalchemy as sa
from pyspark.sql.streaming import StreamingQueryListener

from streamrec import logs
from streamrec.errors import first_line
from streamrec.sink import Sink, stream_metrics

LOG = logs.get("stream")


def upsert_metrics(sink: Sink, query: str, batch_id: int, **values) -> None:
    """One (query, batch) row of stream_metrics; writers add their own columns to it. `at` is the
    first write's time (the batch's), never moved by later upserts: a shutdown's flush of recent
    progress once re-stamped every batch with the same time."""
    row = {"query": query, "batch_id": batch_id, "at": time.time(), **values}
    sink.upsert(stream_metrics, [row], list(values) or None)


def latency_ms(kafka_ts: np.ndarray, committed_at: float, counts: np.ndarray | None = None) -> dict:
    """p50/p95/max of commit time minus Kafka record (produce) time, in milliseconds.
    `counts`: how many records each time stands for (Kafka times bucketed by the executors)."""
    if len(kafka_ts) == 0:
        return {}
    lat = (committed_at - np.asarray(kafka_ts, dtype=np.float64)) * 1000.0
    w = np.ones(len(lat)) if counts is None else np.asarray(counts, dtype=np.float64)
    order = np.argsort(lat)
    lat, cum = lat[order], np.cumsum(w[order])

    def pct(q: float) -> float:  # the smallest latency with at least q of the records at or below
        return float(lat[min(int(np.searchsorted(cum, q * cum[-1])), len(lat) - 1)])

    return {"latency_p50_ms": pct(0.50), "latency_p95_ms": pct(0.95), "latency_p99_ms": pct(0.99),
            "latency_max_ms": float(lat[-1])}  # fmt: skip


def record_progress(sink: Sink, progress: dict) -> dict:
    """Upsert one query progress (Spark's JSON shape) into stream_metrics; returns the values."""
    ops = progress.get("stateOperators") or []
    rate = progress.get("processedRowsPerSecond")
    values = {
        "input_rows": int(progress.get("numInputRows", 0)),
        "rows_per_s": float(rate) if rate is not None and rate == rate else None,  # NaN when idle
        "duration_ms": int(progress.get("batchDuration", 0)),
    }
    if ops:
        values["state_rows"] = int(sum(op.get("numRowsTotal", 0) for op in ops))
    upsert_metrics(sink, progress["name"], int(progress["batchId"]), **values)
    return values


class ProgressOnly(StreamingQueryListener):
    """A listener for batch progress only: the other events are ignored."""

    def onQueryStarted(self, event) -> None:
        pass

    def onQueryIdle(self, event) -> None:
        pass

    def onQueryTerminated(self, event) -> None:
        pass


class ProgressListener(ProgressOnly):
    """Live: writes each batch's progress to stream_metrics and logs one compact line."""

    def __init__(self, sink_url: str, quiet: bool = False):
        self.sink_url = sink_url
        self.quiet = quiet
        self._sink: Sink | None = None
        self._lock = threading.Lock()

    def onQueryProgress(self, event) -> None:
        progress = json.loads(event.progress.json)
        with self._lock:
            try:
                if self._sink is None:
                    self._sink = Sink(self.sink_url, threadsafe=True)
                with self._sink.transaction():
                    v = record_progress(self._sink, progress)
                    m = stream_metrics.c  # the batch writer committed this batch's latency already
                    lat = self._sink.query(sa.select(m.latency_p50_ms, m.latency_p95_ms).where(
                        m.query == progress["name"], m.batch_id == int(progress["batchId"])))  # fmt: skip
            except Exception as exc:  # noqa: BLE001 - metrics are best effort; the batch writers retry
                LOG.warning(
                    f"[{progress['name']}] batch {progress['batchId']}: progress not recorded "
                    f"({first_line(exc)})"
                )
                LOG.debug("progress not recorded", exc_info=True)  # fmt: skip
                self._sink = None
                return
        if not self.quiet and v["input_rows"]:
            state = f" state={v['state_rows']}" if "state_rows" in v else ""
            p50, p95 = tuple(lat[0]) if lat else (None, None)
            latency = f", latency p50 {p50:,.0f} ms / p95 {p95:,.0f} ms" if p95 is not None else ""
            speed = f"{v['rows_per_s'] or 0:,.0f} rows/s, {v['duration_ms']} ms{state}{latency}"
            LOG.info(f"[{progress['name']}] batch {progress['batchId']}: {v['input_rows']} rows, {speed}")


def flush_progress(sink_url: str, queries: list) -> None:
    """Record every query's recent progress synchronously: the listener bus is asynchronous,
    so at shutdown its last events may not have arrived. Upserts make this idempotent."""
    sink = Sink(sink_url)
    try:
        with sink.transaction():
            for q in queries:
                for progress in q.recentProgress:
                    record_progress(sink, progress)
    finally:
        sink.close()

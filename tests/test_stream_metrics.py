"""The stream's per-batch log line, from a progress event and the sink (no Spark session)."""

import json
import logging
from types import SimpleNamespace

from streaming.metrics import ProgressListener, upsert_metrics
from streamrec.sink import open_sink


def test_the_batch_line_shows_rows_speed_and_the_batchs_latency(tmp_path, caplog):
    url = f"sqlite:///{tmp_path / 's.db'}"
    with open_sink(url) as sink:
        sink.create_schema()
        with sink.transaction():  # what the aggregates writer committed for batch 7
            upsert_metrics(sink, "aggregates", 7, latency_p50_ms=312.0, latency_p95_ms=905.4)
    progress = {"name": "aggregates", "batchId": 7, "numInputRows": 1200, "processedRowsPerSecond": 2400.0,
                "batchDuration": 500}  # fmt: skip
    event = SimpleNamespace(progress=SimpleNamespace(json=json.dumps(progress)))
    with caplog.at_level(logging.INFO, logger="streamrec"):
        ProgressListener(url).onQueryProgress(event)
    assert (
        "[aggregates] batch 7: 1200 rows, 2,400 rows/s, 500 ms, latency p50 312 ms / p95 905 ms"
        in caplog.text
    )
    with open_sink(url) as sink:
        assert sink.query("SELECT input_rows, duration_ms FROM stream_metrics")[0] == (1200, 500)


def test_a_later_upsert_keeps_the_batchs_time(tmp_path):
    import time

    url = f"sqlite:///{tmp_path / 's.db'}"
    with open_sink(url) as sink:
        sink.create_schema()
        with sink.transaction():
            upsert_metrics(sink, "foldin", 3, latency_p95_ms=800.0)
        first = sink.query("SELECT at FROM stream_metrics")[0][0]
        time.sleep(0.05)
        with sink.transaction():  # e.g. the shutdown flush of recent progress
            upsert_metrics(sink, "foldin", 3, input_rows=10)
        at, rows, p95 = sink.query("SELECT at, input_rows, latency_p95_ms FROM stream_metrics")[0]
    assert (at, rows, p95) == (first, 10, 800.0)

"""Reading Kafka once per trigger, side by side: latency at a paced 1,000 events/s with the event
log written by the aggregates query (the job since 2026-11-30), and with the event log's former
query running beside it (Kafka read and parsed a third time, valid events to Spark's Parquet file
sink with its own checkpoint, as the job ran before), alternating twice after a warm-up run.
One broker, one model, one Spark session.
A one-off lever check: `.venv/bin/python -m bench.eventlog_bench` (about 7 minutes)."""

from __future__ import annotations

from bench import stream_bench as sb
from streaming.parse import kafka_stream, parse, valid


def file_sink_query(spark, cfg):
    """The former third query: its own Kafka read, parse and validation, Parquet file sink."""
    events = valid(parse(kafka_stream(spark, cfg.bootstrap, cfg.topic, cfg.max_offsets)))
    cols = ("user_id", "movie_id", "rating", "timestamp", "topic", "partition", "offset", "kafka_ts")
    return (events.select(*cols).writeStream.queryName("eventlog-file-sink").format("parquet")
            .option("path", str(cfg.state_dir / "file-sink-eventlog"))
            .option("checkpointLocation", cfg.checkpoint("eventlog-file-sink"))
            .trigger(processingTime=f"{cfg.trigger_s} seconds").start())  # fmt: skip


def run(events: int = 12_000) -> list[dict]:
    layouts = [("in the aggregates query", {}), ("its own query", {"beside": file_sink_query})] * 2
    return sb.compare("event_log", layouts, events, warm_up=3000)


if __name__ == "__main__":
    run()

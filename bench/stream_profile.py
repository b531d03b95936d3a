"""Where a streaming micro-batch spends its time: one query at a time, alone on the machine.

    .venv/bin/python -m bench.stream_profile      # ~1 minute; prints addBatch ms per 20k-row batch

Stages, each a separate query over the same preloaded topic: the bare Kafka read, + JSON parsing
and validation, + the Parquet event log write.
"""

from __future__ import annotations

import tempfile
import time
import uuid

import pandas as pd

from bench.common import private_broker
from producer.replay import replay
from streaming.parse import kafka_stream, parse, valid
from streamrec.history import window
from streamrec.movielens import load_ratings
from streamrec.settings import BUNDLED_DATA
from streamrec.spark import get_spark


def run(spark, per_batch: int = 20_000) -> dict:
    live = window(load_ratings(BUNDLED_DATA)[0], split_at=0.8)
    out = {}
    with private_broker() as (bootstrap, _), tempfile.TemporaryDirectory() as tmp:
        topic = f"prof-{uuid.uuid4().hex[:8]}"
        replay(pd.concat([live] * 3, ignore_index=True), bootstrap, topic, progress=False)
        stages = {
            "kafka read": lambda raw: raw.writeStream.format("noop"),
            "+ parse and validate": lambda raw: parse(raw).selectExpr("count(reason) OVER ()"
                                                                      " AS n").writeStream.format("noop"),
            "+ Parquet event log": lambda raw: valid(parse(raw)).writeStream.format("parquet")
            .option("path", f"{tmp}/{uuid.uuid4().hex}"),
        }  # fmt: skip
        for name, build in stages.items():
            raw = kafka_stream(spark, bootstrap, topic, per_batch)
            t0 = time.monotonic()
            q = (
                build(raw)
                .option("checkpointLocation", f"{tmp}/{uuid.uuid4().hex}")
                .trigger(availableNow=True)
            )
            q = q.start()
            q.awaitTermination()
            batches = [p["durationMs"]["addBatch"] for p in q.recentProgress if p["numInputRows"]]
            out[name] = {"seconds": time.monotonic() - t0, "add_batch_ms": batches}
            print(f"{name}: addBatch ms per {per_batch}-row batch {batches}", flush=True)
    return out


if __name__ == "__main__":
    run(get_spark("streamrec-profile"))

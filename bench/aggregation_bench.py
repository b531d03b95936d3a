"""Where a batch's aggregates are grouped, side by side: latency at a paced 1,000 events/s with
the raw records collected to the driver (the local-mode default), per partition in the executors
merged on the driver (the cluster default), and a Spark groupBy (a shuffle);
then the driver path again (run-to-run noise). One broker, one model, one Spark session.
A one-off lever check: `.venv/bin/python -m bench.aggregation_bench` (about 4 minutes)."""

from __future__ import annotations

import threading
import time
import uuid

from batch.publish import TrainOptions, default_spec, run_training
from bench import stream_bench as sb
from bench.common import private_broker
from producer.replay import replay
from streaming.job import run_stream
from streamrec.history import window
from streamrec.kafka_admin import ensure_topic
from streamrec.model_store import ModelStore
from streamrec.movielens import load_ratings
from streamrec.settings import BUNDLED_DATA
from streamrec.spark import get_spark

LATENCY_QUERIES = ("aggregates", "foldin")


def run(modes: tuple[str, ...] = ("driver", "executors", "shuffle", "driver"), events: int = 12_000) -> list:
    spark = get_spark("streamrec-aggregation-bench")
    live = window(load_ratings(BUNDLED_DATA)[0], split_at=0.8).iloc[:events]
    out = []
    with private_broker() as (bootstrap, tmp):
        store = ModelStore(tmp / "models")
        run_training(
            spark, TrainOptions(default_spec(BUNDLED_DATA, split_at=0.8, with_event_log=False)), store
        )
        for mode in modes:
            topic = f"agg-{uuid.uuid4().hex[:6]}"
            ensure_topic(bootstrap, topic)
            cfg = sb._cfg(tmp, bootstrap, topic, store.root, aggregation=mode)
            stop = threading.Event()
            thread = threading.Thread(target=run_stream, args=(spark, cfg, stop), daemon=True)
            thread.start()
            time.sleep(25)  # warm-up, as in stream_bench
            replay(live, bootstrap, topic, rate=1000, progress=False)
            sb._wait_until_consumed(cfg, len(live))
            stop.set()
            thread.join(120)
            s = sb._latency_summary(cfg, len(live), 1000)
            keys = ("p50_ms", "p95_ms", "batch_ms_median")
            out.append({"aggregation": mode,
                        **{q: {k: round(s[q][k]) for k in keys} for q in LATENCY_QUERIES}})  # fmt: skip
            print(out[-1], flush=True)
    return out


if __name__ == "__main__":
    run()

"""Latency at a paced 1,000 events/s with micro-batch triggers of 1 s, 0.5 s and 0 (back to back),
one stream after the other on one broker and one model, then 1 s again (run-to-run noise).
A one-off lever check: `.venv/bin/python -m bench.trigger_bench` (about 4 minutes)."""

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


def run(triggers: tuple[float, ...] = (1.0, 0.5, 0.0, 1.0), events: int = 15_000) -> list[dict]:
    spark = get_spark("streamrec-trigger-bench")
    live = window(load_ratings(BUNDLED_DATA)[0], split_at=0.8).iloc[:events]
    out = []
    with private_broker() as (bootstrap, tmp):
        store = ModelStore(tmp / "models")
        run_training(
            spark, TrainOptions(default_spec(BUNDLED_DATA, split_at=0.8, with_event_log=False)), store
        )
        for trigger in triggers:
            topic = f"trig-{uuid.uuid4().hex[:6]}"
            ensure_topic(bootstrap, topic)
            cfg = sb._cfg(tmp, bootstrap, topic, store.root, trigger_s=trigger)
            stop = threading.Event()
            thread = threading.Thread(target=run_stream, args=(spark, cfg, stop), daemon=True)
            thread.start()
            time.sleep(25)  # warm-up, as in stream_bench
            replay(live, bootstrap, topic, rate=1000, progress=False)
            sb._wait_until_consumed(cfg, len(live))
            stop.set()
            thread.join(120)
            s = sb._latency_summary(cfg, len(live), 1000)
            out.append({"trigger_s": trigger, **{q: {k: s[q][k] for k in ("p50_ms", "p95_ms")}
                                                 for q in ("aggregates", "foldin")}})  # fmt: skip
            print(out[-1], flush=True)
    return out


if __name__ == "__main__":
    run()

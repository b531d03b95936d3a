"""The item fold-in's cost and what it buys, on one broker, one model and one Spark session:

- latency of the existing queries at a paced 1,000 events/s with the item fold-in off (users
  only, as before) and on, alternated twice (run-to-run noise shows in the repeat);
- time to recommendable: over the whole live part paced at 250 events/s (what the item fold-in
  keeps up with here), for each movie the base model never saw,
  from the Kafka time of the event that gives it its --min-support-th rating to (a) its row in
  `item_vectors` reaching --min-support (what the API serves, re-read at most once a second) and
  (b) the first stream list that contains it (the sink polled every 50 ms).

A one-off lever check: `.venv/bin/python -m bench.item_foldin_bench` (about 6 minutes).
"""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pandas as pd

from bench import stream_bench as sb
from producer.replay import replay
from streamrec.event_log import committed_files
from streamrec.model_store import ModelStore
from streamrec.sink import open_sink

ALTERNATION = (("users only", False), ("users + items", True), ("users only", False), ("users + items", True))


def run(events: int = 12_000, warm_up: int = 3_000, recommendable_rate: float = 250) -> dict:
    from streamrec.spark import get_spark

    spark = get_spark("streamrec-item-foldin-bench")
    out: dict = {"events": events, "rate": 1000, "latency": [], "recommendable_rate": recommendable_rate}
    with sb.lever_setup(spark, 30_000) as (bootstrap, tmp, models, whole):
        live = whole.iloc[:events]
        sb.latency(spark, bootstrap, tmp, models, live.iloc[:warm_up], 1000, item_foldin=True)  # JVM warm-up
        for label, on in ALTERNATION:
            s = sb.latency(spark, bootstrap, tmp, models, live, 1000, item_foldin=on)
            keys = ("p50_ms", "p95_ms", "p99_ms", "batch_ms_median")
            row = {
                "variant": label,
                **{q: {k: round(s[q][k]) for k in keys} for q in ("aggregates", "foldin")},
            }
            out["latency"].append(row)
            print(row, flush=True)
        # the whole live part, at a rate the item operator keeps up with on 2 cores
        out["recommendable"] = time_to_recommendable(spark, bootstrap, tmp, models, whole, recommendable_rate)
        print({k: v for k, v in out["recommendable"].items() if k != "movies"}, flush=True)
    return out


def time_to_recommendable(spark, bootstrap, tmp, models, live: pd.DataFrame, rate: float) -> dict:
    model = ModelStore(models).load()
    min_support = model.items.min_support
    _, known = model.items.rows(live["movie_id"].to_numpy())
    new = set(live["movie_id"][~known].astype(int))
    first_listed: dict[int, float] = {}
    first_servable: dict[int, float] = {}
    with sb._running_stream(spark, bootstrap, tmp, models, item_foldin=True) as (topic, cfg):
        done = threading.Event()

        def poll() -> None:
            ids = ",".join(str(m) for m in new)
            while not done.is_set():
                now = time.time()
                with open_sink(cfg.sink_url) as s:
                    listed = s.query(
                        f"SELECT DISTINCT movie_id FROM user_recommendations WHERE movie_id IN ({ids})"
                    )
                    servable = s.query(
                        f"SELECT movie_id FROM item_vectors WHERE movie_id IN ({ids}) AND source = 'stream' "
                        f"AND n_ratings >= {min_support}"
                    )
                for (m,) in listed:
                    first_listed.setdefault(int(m), now)
                for (m,) in servable:
                    first_servable.setdefault(int(m), now)
                time.sleep(0.05)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        replay(live, bootstrap, topic, rate=rate, progress=False)
        sb._wait_until_consumed(cfg, len(live), timeout=300)
        time.sleep(3)  # the batch after the last one that solved a movie
        done.set()
        poller.join(10)
        log = pd.concat([pd.read_parquet(f) for f in committed_files(cfg.event_log_dir)], ignore_index=True)
    reached = _threshold_times(log, new, min_support)
    rows = []
    for m, t0 in reached.items():
        rows.append({"movie_id": m, "threshold_kafka_ts": t0,
                     "servable_s": first_servable[m] - t0 if m in first_servable else None,
                     "listed_s": first_listed[m] - t0 if m in first_listed else None})  # fmt: skip
    servable = [r["servable_s"] for r in rows if r["servable_s"] is not None]
    listed = [r["listed_s"] for r in rows if r["listed_s"] is not None]
    return {
        "new_movies_rated": len(new),
        "reached_min_support": len(rows),
        "min_support": min_support,
        "servable_median_s": float(np.median(servable)) if servable else None,
        "listed": len(listed),
        "listed_median_s": float(np.median(listed)) if listed else None,
        "movies": rows,
    }


def _threshold_times(log: pd.DataFrame, movies: set[int], min_support: int) -> dict[int, float]:
    """Kafka time (epoch s) of the event giving each movie its min_support-th distinct rater."""
    log = log[log["movie_id"].isin(movies)].sort_values("kafka_ts", kind="stable")
    log = log.drop_duplicates(["movie_id", "user_id"], keep="first")
    nth = log.groupby("movie_id").nth(min_support - 1)
    return {int(m): float(t) for m, t in zip(nth["movie_id"], nth["kafka_ts"], strict=True)}


if __name__ == "__main__":
    print(json.dumps(run(), default=str)[:2000])

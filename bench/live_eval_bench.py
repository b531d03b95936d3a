"""Live evaluation, measured on a real stream (one broker, one model from the oldest 80 %, one
Spark session):

- the cost of shadow-scoring a candidate: latency of both queries at a paced 1,000 events/s with
  no candidate and with one (a retrain's stand-in: the same model with noisy ranking factors),
  alternated twice;
- the live hit rate of the served lists over the whole live part (20,168 events, paced), against
  the running popularity list on the same events and against `evaluate`'s prequential replay of
  the same part (which refreshes every list after every event; the stream refreshes per batch).

A one-off check: `.venv/bin/python -m bench.live_eval_bench` (about 10 minutes).
"""

from __future__ import annotations

import json

import numpy as np

from bench import stream_bench as sb
from streamrec.model_store import ModelStore, write_npz
from streamrec.sink import open_sink

ALTERNATION = (("no candidate", False), ("candidate shadowed", True), ("no candidate", False),
               ("candidate shadowed", True))  # fmt: skip


def _candidate(store: ModelStore) -> str:
    model = store.load()
    staged = store.staging_dir()
    noisy = model.ranking.factors + np.random.default_rng(7).normal(0, 0.1, model.ranking.factors.shape)
    write_npz(staged / "factors.npz", model.items, model.user_ids, model.user_factors, model.user_bias,
              noisy.astype(np.float32), model.rank_user_factors, model.user_support)  # fmt: skip
    meta = {k: v for k, v in model.meta.to_dict().items() if k not in ("version", "files", "format")}
    return store.publish(staged, meta, make_current=False)


def live_hit_rate(cfg) -> list[dict]:
    with open_sink(cfg.sink_url) as s:
        sums = "SUM(events), SUM(hits), SUM(pop_hits)"
        rows = s.query(f"SELECT model_version, source, {sums} FROM live_eval GROUP BY model_version, source "
                       "ORDER BY model_version, source")  # fmt: skip
    return [{"model_version": v, "source": src, "events": int(n), "hit_rate": h / n,
             "popularity_hit_rate": p / n} for v, src, n, h, p in rows if n]  # fmt: skip


def run(events: int = 12_000, rate: float = 1000) -> dict:
    from streamrec.spark import get_spark

    spark = get_spark("streamrec-live-eval-bench")
    out: dict = {"events": events, "rate": rate, "latency": []}
    with sb.lever_setup(spark, 30_000) as (bootstrap, tmp, models, live):
        store = ModelStore(models)
        candidate = _candidate(store)
        part = live.iloc[:events]
        sb.latency(spark, bootstrap, tmp, models, part.iloc[:3000], rate)  # JVM warm-up, not kept
        for label, on in ALTERNATION:
            store.set_candidate(candidate) if on else store.clear_candidate()
            s = sb.latency(spark, bootstrap, tmp, models, part, rate, item_foldin=False)
            keys = ("p50_ms", "p95_ms", "p99_ms", "batch_ms_median")
            row = {
                "variant": label,
                **{q: {k: round(s[q][k]) for k in keys} for q in ("aggregates", "foldin")},
            }
            out["latency"].append(row)
            print(row, flush=True)
        store.clear_candidate()
        with sb._running_stream(spark, bootstrap, tmp, models) as (topic, cfg):  # the whole live part
            from producer.replay import replay

            replay(live, bootstrap, topic, rate=rate, progress=False)
            sb._wait_until_consumed(cfg, len(live), timeout=300)
            out["live"] = live_hit_rate(cfg)
            out["live_events"] = len(live)
        print(out["live"], flush=True)
    return out


if __name__ == "__main__":
    print(json.dumps(run(), default=str)[:3000])

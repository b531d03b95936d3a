"""Streaming: sustained throughput with all three queries, end-to-end latency at a paced
1,000 events/s (Kafka record timestamp -> sink commit) with the per-query breakdown, and how
soon a brand-new user's first recommendations appear on an otherwise idle stream, and what an
idle stream costs in CPU."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from batch.publish import TrainOptions, default_spec, run_training
from bench.common import private_broker
from producer.replay import replay
from streaming.job import StreamConfig, run_stream
from streamrec.events import encode
from streamrec.history import window
from streamrec.kafka_admin import ensure_topic, new_producer
from streamrec.model_store import ModelStore
from streamrec.movielens import load_ratings
from streamrec.settings import BUNDLED_DATA
from streamrec.sink import open_sink


def _metrics(sink_url: str) -> pd.DataFrame:
    with open_sink(sink_url) as s:
        rows = s.query(
            "SELECT query, batch_id, input_rows, duration_ms, latency_p50_ms, latency_p95_ms, "
            "latency_p99_ms, "
            "at "
            "FROM stream_metrics ORDER BY query, batch_id"
        )
    return pd.DataFrame(
        [tuple(r) for r in rows], columns=["query", "batch", "rows", "ms", "p50", "p95", "p99", "at"]
    )


def _cfg(tmp, bootstrap, topic, models, **kw) -> StreamConfig:
    run = tmp / uuid.uuid4().hex[:6]
    return StreamConfig(
        bootstrap=bootstrap,
        sink_url=f"sqlite:///{run / 'sink.db'}",
        state_dir=run,
        event_log_dir=run / "eventlog",
        model_root=models,
        data=BUNDLED_DATA,
        topic=topic,
        quiet=True,
        **kw,
    )


def throughput(spark, bootstrap, tmp, models, topic: str, n_events: int, per_batch: int | None) -> dict:
    """Drain a preloaded backlog with every query running (a fresh checkpoint and sink each time)."""
    cfg = _cfg(tmp, bootstrap, topic, models, available_now=True, max_offsets=per_batch)
    t0 = time.monotonic()
    res = run_stream(spark, cfg)
    wall = time.monotonic() - t0
    m = _metrics(cfg.sink_url)
    steady = m[(m.batch >= 1) & (m.rows > 0)]  # batch 0 carries start-up and the initial state
    steady = steady if len(steady) else m[m.rows > 0]  # one batch took everything
    per_query = {
        q: {"rows_per_s": float(g.rows.sum() / (g.ms.sum() / 1000)), "ms_per_batch": float(g.ms.median())}
        for q, g in steady.groupby("query")
    }
    return {
        "events": n_events,
        "per_batch": per_batch,
        "batches": int(m[m.rows > 0].groupby("query").size().max()),
        "wall_seconds": wall,
        "run_seconds": res["seconds"],
        "events_per_s_wall": n_events / res["seconds"],
        "per_query_steady": per_query,
    }


PHASES: dict[str, dict[str, float]] = {}  # the last running stream's profile, see _phases


def _phases(spark) -> dict[str, dict[str, float]]:
    """Where a batch's time goes: per query, the median of each phase of Spark's `durationMs`
    (addBatch: the batch's own jobs and sink writes; queryPlanning; walCommit and commitOffsets:
    the offset and commit logs; latestOffset: asking Kafka for the end offsets...) over the batches
    that carried events, and how many those were."""
    out = {}
    for q in spark.streams.active:
        rows = [p.durationMs for p in q.recentProgress if p.numInputRows > 0]
        if rows:
            keys = sorted({k for r in rows for k in r})
            out[q.name] = {k: float(np.median([r.get(k, 0) for r in rows])) for k in keys}
            out[q.name]["batches"] = len(rows)
    return out


@contextmanager
def _running_stream(spark, bootstrap, tmp, models, beside=None, **kw) -> Iterator[tuple[str, StreamConfig]]:
    """A stream (trigger 1 s unless `kw` says otherwise) on a fresh topic, warmed up; stopped at a
    batch boundary on exit. `beside(spark, cfg)`, when given, starts one more query that runs
    alongside in the same session (a lever benchmark's extra load) and returns it."""
    topic = f"live-{uuid.uuid4().hex[:8]}"
    ensure_topic(bootstrap, topic)
    cfg = _cfg(tmp, bootstrap, topic, models, **({"trigger_s": 1.0} | kw))
    stop = threading.Event()
    thread = threading.Thread(target=run_stream, args=(spark, cfg, stop), daemon=True)
    thread.start()
    extra = beside(spark, cfg) if beside else None
    time.sleep(25)  # warm-up: queries started, initial state loaded (an empty first batch)
    try:
        yield topic, cfg
    finally:
        PHASES.clear()
        PHASES.update(_phases(spark))
        stop.set()
        if extra is not None:
            extra.stop()
        thread.join(120)


@contextmanager
def lever_setup(spark, events: int) -> Iterator[tuple[str, object, object, pd.DataFrame]]:
    """For a one-off lever benchmark: a private broker, a model from the oldest 80 %, and the first
    `events` live events -> (bootstrap, tmp dir, model store root, events)."""
    live = window(load_ratings(BUNDLED_DATA)[0], split_at=0.8).iloc[:events]
    with private_broker() as (bootstrap, tmp):
        store = ModelStore(tmp / "models")
        run_training(
            spark, TrainOptions(default_spec(BUNDLED_DATA, split_at=0.8, with_event_log=False)), store
        )
        yield bootstrap, tmp, store.root, live


def latency(
    spark, bootstrap, tmp, models, events: pd.DataFrame, rate: float = 1000, beside=None, **kw
) -> dict:
    """Latency of a paced replay into a warmed-up stream (`kw`: StreamConfig settings, the lever;
    `beside`: an extra query, see `_running_stream`)."""
    with _running_stream(spark, bootstrap, tmp, models, beside, **kw) as (topic, cfg):
        replay(events, bootstrap, topic, rate=rate, progress=False)
        _wait_until_consumed(cfg, len(events))
    return _latency_summary(cfg, len(events), rate) | {"phases_ms": dict(PHASES)}


def compare(
    name: str, variants: list[tuple[str, dict]], events: int, warm_up: int = 0, new_users: bool = False
) -> list[dict]:
    """A one-off lever benchmark: latency at a paced 1,000 events/s of each (label, `latency`
    keyword arguments) in turn, on one broker, one model and one Spark session; `warm_up` events
    through the first variant first, not kept (the JVM's warm-up); with `new_users`, also each
    variant's new-user time (median of 5; `kw` without `beside`). Prints each as it finishes."""
    from streamrec.spark import get_spark

    out = []
    with lever_setup(get_spark(f"streamrec-{name}-bench"), events) as (bootstrap, tmp, models, live):
        if warm_up:
            latency(get_spark(), bootstrap, tmp, models, live.iloc[:warm_up], 1000, **variants[0][1])
        for label, kw in variants:
            s = latency(get_spark(), bootstrap, tmp, models, live, 1000, **kw)
            keys = ("p50_ms", "p95_ms", "batch_ms_median")
            out.append(
                {name: label, **{q: {k: round(s[q][k]) for k in keys} for q in ("aggregates", "foldin")}}
            )
            if new_users:
                out[-1]["new_user_s"] = new_user(get_spark(), bootstrap, tmp, models, **kw)["median_s"]
            print(out[-1], flush=True)
    return out


def _wait_until_consumed(cfg: StreamConfig, n: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = _metrics(cfg.sink_url)
        if all(m[m["query"] == q].rows.sum() >= n for q in ("foldin", "aggregates")):
            return
        time.sleep(1)


def _latency_summary(cfg: StreamConfig, n: int, rate: float) -> dict:
    m = _metrics(cfg.sink_url)
    out = {"events": n, "rate": rate}
    busy = m[(m.rows > 0) & m.p50.notna()]
    t0 = float(busy["at"].min()) if len(busy) else 0.0
    for q in ("aggregates", "foldin"):
        g = busy[busy["query"] == q]
        w = g.rows.to_numpy()
        out[q] = {
            "batches": len(g),
            "p50_ms": float(np.average(g.p50, weights=w)),
            # Across batches: each batch's percentile weighted by its events (an approximation;
            # within a batch the figures are exact to the 10 ms Kafka-time bucket).
            "p95_ms": float(np.percentile(np.repeat(g.p95.to_numpy(), w), 95)),
            "p99_ms": float(np.percentile(np.repeat(g.p99.fillna(g.p95).to_numpy(), w), 99)),
            "batch_ms_median": float(g.ms.median()),
            # per batch, for the latency-over-time chart: seconds since the first busy batch
            "series": [[round(float(a) - t0, 2), float(p50), float(p95), int(r)]
                       for a, p50, p95, r in zip(g["at"], g.p50, g.p95, g.rows, strict=True)],
        }  # fmt: skip
    return out


def new_user(spark, bootstrap, tmp, models, trials: int = 5, **kw) -> dict:
    """Seconds from producing a new user's three ratings to their recommendations in the sink
    (`kw`: StreamConfig settings)."""
    seconds = []
    with _running_stream(spark, bootstrap, tmp, models, **kw) as (topic, cfg):
        for n in range(trials):
            user = 9_000_000 + n
            rated = pd.DataFrame({"user_id": user, "movie_id": [260, 1196, 2571],
                                  "rating": [5.0, 4.5, 4.0], "timestamp": int(time.time())})  # fmt: skip
            t0 = time.monotonic()
            replay(rated, bootstrap, topic, progress=False)
            while time.monotonic() - t0 < 60:
                with open_sink(cfg.sink_url) as s:
                    found = s.query(
                        "SELECT COUNT(*) FROM user_recommendations WHERE user_id = :u", {"u": user}
                    )
                if found[0][0]:
                    seconds.append(time.monotonic() - t0)
                    break
                time.sleep(0.05)
            time.sleep(2)  # let the stream go idle again
    return {"trials": trials, "found": len(seconds), "seconds": seconds,
            "median_s": float(np.median(seconds)) if seconds else None}  # fmt: skip


_TICK = os.sysconf("SC_CLK_TCK")


def _processes() -> dict[int, tuple[int, float, bytes]]:
    """pid -> (parent pid, CPU seconds: its own and its waited-for children's, command line)."""
    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat, cmd = (d / "stat").read_text(), (d / "cmdline").read_bytes()
        except OSError:  # gone meanwhile
            continue
        f = stat[stat.rindex(")") + 2 :].split()  # from field 3 (state) on: the name may hold spaces
        out[int(d.name)] = (int(f[1]), sum(int(x) for x in f[11:15]) / _TICK, cmd)  # utime..cstime
    return out


def cpu_seconds(broker_tag: str | None = None) -> dict[str, float]:
    """CPU seconds so far of the stream, this process's tree (the Python driver, the Spark JVM and
    its Python workers; workers that exited and were waited for included), and of the broker (a
    `kafka.Kafka` process whose command line holds `broker_tag`, with its children), apart."""
    procs = _processes()
    children: dict[int, list[int]] = defaultdict(list)
    for pid, (ppid, _, _) in procs.items():
        children[ppid].append(pid)

    def tree(root: int) -> list[int]:
        todo, seen = [root], []
        while todo:
            pid = todo.pop()
            seen.append(pid)
            todo += children.get(pid, [])
        return seen

    brokers = [pid for pid, (_, _, cmd) in procs.items()
               if broker_tag and b"kafka.Kafka" in cmd and broker_tag.encode() in cmd]  # fmt: skip
    broker = {pid for root in brokers for pid in tree(root)}
    stream = [pid for pid in tree(os.getpid()) if pid not in broker]
    return {"stream": sum(procs[p][1] for p in stream), "broker": sum(procs[p][1] for p in broker)}


def idle_cpu(seconds: float = 30.0, broker_tag: str | None = None) -> dict[str, float]:
    """Percent of one core (100 = a whole core) used over a quiet `seconds` window by the stream
    (Spark JVM, Python driver and workers) and by the broker."""
    before, t0 = cpu_seconds(broker_tag), time.monotonic()
    time.sleep(seconds)
    after, dt = cpu_seconds(broker_tag), time.monotonic() - t0
    return {k: round(100 * (after[k] - before[k]) / dt, 2) for k in before}


def _wait_for_list(sink, user: int, t0: float, timeout: float = 60) -> float | None:
    """Seconds from `t0` until `user` has a list in the sink (looked for every 10 ms)."""
    while time.monotonic() - t0 < timeout:
        if sink.query("SELECT 1 FROM user_recommendations WHERE user_id = :u LIMIT 1", {"u": user}):
            return time.monotonic() - t0
        time.sleep(0.01)
    return None


def first_lists(spark, bootstrap, tmp, models, trials: int = 5, idle_s: float = 30.0,
                broker_tag: str | None = None, **kw) -> dict:  # fmt: skip
    """On one otherwise idle stream (`kw`: StreamConfig settings), a brand-new user's three ratings
    to their first list in the sink, timed two ways, alternated trial by trial:

    - `warm`: sent by a producer that is already connected and has sent before, as `serve`'s
      (kafka-python, acks=all, idempotent), the clock started just before the first send;
    - `replay`: as `new_user`, `producer.replay` with a new producer each time, so the clock also
      counts the topic check, the producer's connection and its producer id.

    Then the idle stream's CPU over `idle_s` seconds (`idle_cpu`), and where the new users'
    batches spent their time (`_phases`)."""
    seconds: dict[str, list[float]] = {"warm": [], "replay": []}
    movies, ratings = [260, 1196, 2571], [5.0, 4.5, 4.0]
    with (
        _running_stream(spark, bootstrap, tmp, models, **kw) as (topic, cfg),
        open_sink(cfg.sink_url) as sink,
    ):
        producer = new_producer(bootstrap)

        def send(user: int) -> None:
            for m, r in zip(movies, ratings, strict=True):
                k, v = encode(user, m, r, int(time.time()))
                producer.send(topic, key=k, value=v)
            producer.flush(10)

        try:
            send(8_999_999)  # connected, with its producer id and the topic's metadata: as serve's
            _wait_for_list(sink, 8_999_999, time.monotonic())
            time.sleep(2)
            for n in range(trials):
                for way in ("warm", "replay") if n % 2 == 0 else ("replay", "warm"):
                    user = 9_000_000 + 2 * n + (way == "replay")
                    t0 = time.monotonic()
                    if way == "warm":
                        send(user)
                    else:
                        rated = pd.DataFrame({"user_id": user, "movie_id": movies, "rating": ratings,
                                              "timestamp": int(time.time())})  # fmt: skip
                        replay(rated, bootstrap, topic, progress=False)
                    if (took := _wait_for_list(sink, user, t0)) is not None:
                        seconds[way].append(round(took, 3))
                    time.sleep(2)  # let the stream go idle again
        finally:
            producer.close(timeout=5)
        time.sleep(3)
        idle = idle_cpu(idle_s, broker_tag)
        load = float(Path("/proc/loadavg").read_text().split()[0])  # the machine's, over that minute
    return {"trials": trials, "seconds": seconds,
            **{f"{w}_median_s": float(np.median(x)) if x else None for w, x in seconds.items()},
            "idle_cpu_pct": idle, "idle_window_s": idle_s, "load_avg_1m": load,
            "phases_ms": dict(PHASES)}  # fmt: skip


def run(spark) -> dict:
    ratings = load_ratings(BUNDLED_DATA)[0]
    live = window(ratings, split_at=0.8)
    with private_broker() as (bootstrap, tmp):
        store = ModelStore(tmp / "models")
        run_training(
            spark, TrainOptions(default_spec(BUNDLED_DATA, split_at=0.8, with_event_log=False)), store
        )
        backlog = pd.concat([live] * 10, ignore_index=True)  # 200k events; re-ratings are fine here
        topic = f"tp-{uuid.uuid4().hex[:8]}"
        replay(backlog, bootstrap, topic, progress=False)
        res = {"throughput": []}
        for per_batch in (20_000, 100_000, None):  # None: the CLI default, no cap per batch
            res["throughput"].append(
                throughput(spark, bootstrap, tmp, store.root, topic, len(backlog), per_batch)
            )
            print(f"stream throughput: {res['throughput'][-1]}", flush=True)
        res["latency"] = latency(
            spark, bootstrap, tmp, store.root, live.iloc[:30_000] if len(live) > 30_000 else live
        )
        print(f"stream latency: {res['latency']}", flush=True)
        res["new_user"] = new_user(spark, bootstrap, tmp, store.root)
        print(f"new user: {res['new_user']}", flush=True)
    return res

"""Where a running stream's batch time goes as it runs: the soak's load (a looped replay at 500
events/s, new users every pass) without its faults, retrains or API, one stream at a time in
this process, with timers around the batch writers' steps.

    .venv/bin/python -m bench.stream_growth [minutes] [filecontext|reload|cache ...]
        # minutes per variant (default 6), filecontext and cache by default: ~16 min in all

Variants, one after the other on one broker and one trained model (`train --split-at 0.8`), each
with its own topic, checkpoints, event log and sink:
  filecontext  Spark's default checkpoint file manager (FileContext), which forks `readlink` and
               `chmod` per checkpoint file on a local path; the stream now writes them through the
               FileSystem API (streamrec.spark.CHECKPOINT_FILE_MANAGER);
  reload       the item fold-in as it was: every batch reads back and decodes the stored raters
               of every streamed movie it touched (streaming.item_folder.load_raters);
  cache        the stream as it is (the rater cache, streaming.item_folder.RaterCache).
Printed per variant and time bucket: medians of each query's batch duration and rows, of Spark's
own steps (progress `durationMs`) and state-store commits, of the item fold-in's step
(`items.apply`), and the aggregates' mean wait for the sink's write lock (their write minus their
collect and apply: the fold-in's transaction holds it meanwhile).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

RATE = 500.0
BUCKET_S = 120.0
TIMED = ("write_batch", "apply_deltas", "apply_user_outputs", "prune")


VARIANTS = ("filecontext", "cache")
FILE_CONTEXT = "org.apache.spark.sql.execution.streaming.checkpointing.FileContextBasedCheckpointFileManager"
MANAGER_KEY = "spark.sql.streaming.checkpointFileManagerClass"  # read by each query when it starts


def run(minutes: float = 6.0, variants: tuple[str, ...] = VARIANTS) -> dict:
    from streamrec.kafka_local import free_port_pair

    with tempfile.TemporaryDirectory(prefix="streamrec-growth-") as tmp:
        home = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMREC_")}
        env |= {"STREAMREC_HOME": str(home), "STREAMREC_KAFKA_PORT": str(free_port_pair())}
        os.environ.update(env)  # this process's stream too
        _cli(env, "kafka", "start")
        try:
            _cli(env, "train", "--split-at", "0.8")
            return {name: _variant(home, env, name, minutes) for name in variants}
        finally:
            _cli(env, "kafka", "stop")


def _cli(env: dict, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "streamrec.cli", *args], env=env, check=True, capture_output=True)


def _variant(home: Path, env: dict, name: str, minutes: float) -> dict:
    import streaming.job as job
    from streaming import item_vectors
    from streaming.job import StreamConfig, run_stream
    from streamrec.kafka_admin import ensure_topic
    from streamrec.settings import BUNDLED_DATA
    from streamrec.spark import get_spark

    spark = get_spark("streamrec-growth")
    d = home / name
    bootstrap = f"127.0.0.1:{env['STREAMREC_KAFKA_PORT']}"
    topic = f"growth-{name}"
    ensure_topic(bootstrap, topic)
    cfg = StreamConfig(bootstrap=bootstrap, sink_url=f"sqlite:///{d / 'sink.db'}", state_dir=d / "state",
                       event_log_dir=d / "eventlog", model_root=home / "models", data=BUNDLED_DATA,
                       topic=topic, quiet=True)  # fmt: skip
    d.mkdir()
    timings: list[tuple[float, str, float]] = []
    progress: list[dict] = []
    patches = {(job, n): _timed(timings, n, getattr(job, n)) for n in TIMED}
    writer = item_vectors.ItemVectorWriter
    patches[(writer, "apply")] = _timed(timings, "items.apply", writer.apply)
    once = job.once_per_batch

    def timed_once(url, query, apply, retry_s=300.0, collect=job.collect_rows):
        apply, collect = (
            _timed(timings, f"{query}.apply", apply),
            _timed(timings, f"{query}.collect", collect),
        )
        return _timed(timings, f"{query}.write", once(url, query, apply, retry_s, collect))

    patches[(job, "once_per_batch")] = timed_once
    if name == "reload":
        patches[(item_vectors, "RaterCache")] = _Reloading
    manager = spark.conf.get(MANAGER_KEY)
    if name == "filecontext":
        spark.conf.set(MANAGER_KEY, FILE_CONTEXT)
    saved = {k: getattr(*k) for k in patches}
    for (owner, attr), f in patches.items():
        setattr(owner, attr, f)
    listener = _listener(progress)
    spark.streams.addListener(listener)
    stop = threading.Event()
    stream = threading.Thread(target=run_stream, args=(spark, cfg, stop), daemon=True)
    stream.start()
    replay = None
    try:
        while not progress:
            if not stream.is_alive():
                raise RuntimeError("the stream stopped before its first batch")
            time.sleep(0.5)
        replay = subprocess.Popen([sys.executable, "-m", "streamrec.cli", "replay", "--loop", "--rate",
                                   f"{RATE:g}", "--no-progress", "--topic", topic],
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  start_new_session=True)  # fmt: skip
        t0 = time.time()
        while time.time() - t0 < minutes * 60:
            time.sleep(60)
            print(f"[growth {name}] {(time.time() - t0) / 60:.0f} min", flush=True)
    finally:
        if replay is not None:
            os.killpg(replay.pid, signal.SIGTERM)
            replay.wait(60)
        stop.set()
        stream.join(300)
        spark.streams.removeListener(listener)
        spark.conf.set(MANAGER_KEY, manager)
        for (owner, attr), f in saved.items():
            setattr(owner, attr, f)
    return summarise(timings, progress, t0)


class _Reloading:
    """The item fold-in before the cache: every touched movie's raters read from the table."""

    def __init__(self, *a, **k):
        pass

    def clear(self) -> None:
        pass

    def drop(self, movies) -> None:
        pass

    def raters(self, sink, model, stored, movies):
        from streaming.item_folder import load_raters

        return load_raters(sink, model, movies)


def _timed(out: list, name: str, f):
    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        try:
            return f(*args, **kwargs)
        finally:
            out.append((time.time(), name, time.perf_counter() - t))

    return wrapper


def _listener(out: list):
    from streaming.metrics import ProgressOnly

    class Progress(ProgressOnly):
        def onQueryProgress(self, event) -> None:
            out.append(json.loads(event.progress.json))

    return Progress()


def summarise(timings: list, progress: list, t0: float, bucket_s: float = BUCKET_S) -> dict:
    """Per time bucket (minutes from the replay's start): medians of each timed step (ms), of each
    query's batch duration (ms) and rows; the aggregates' mean wait for the write lock."""
    import datetime as dt

    series: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for wall, name, s in timings:
        if wall >= t0:
            series[name][int((wall - t0) // bucket_s)].append(s * 1000)
    for p in progress:
        at = dt.datetime.fromisoformat(p["timestamp"].replace("Z", "+00:00")).timestamp()
        if p["numInputRows"] and at >= t0:
            b = int((at - t0) // bucket_s)
            series[f"{p['name']} batch ms"][b].append(p["batchDuration"])
            series[f"{p['name']} rows"][b].append(p["numInputRows"])
            for step, ms in p.get("durationMs", {}).items():
                if step != "triggerExecution":
                    series[f"{p['name']} {step} ms"][b].append(ms)
            if p.get("stateOperators"):
                ops = p["stateOperators"]
                series[f"{p['name']} state commit ms"][b].append(sum(o.get("commitTimeMs", 0) for o in ops))
                series[f"{p['name']} state rows"][b].append(sum(o.get("numRowsTotal", 0) for o in ops))
    out = {name: {int(b * bucket_s / 60): round(float(np.median(v)), 1) for b, v in sorted(by.items())}
           for name, by in series.items()}  # fmt: skip
    # The lock wait from means (the mean of a difference is the difference of the means).
    w, c, a = (series.get(f"aggregates.{x}", {}) for x in ("write", "collect", "apply"))
    out["aggregates lock wait"] = {
        int(b * bucket_s / 60): round(_mean_gap(w[b], c.get(b, []), a.get(b, [])), 1) for b in sorted(w)
    }
    return out


def save(res: dict, minutes: float) -> None:
    """Into docs/benchmark-results.json (`growth`, the variants run replacing their earlier runs),
    and docs/benchmarks.md rendered again."""
    import datetime as dt

    from bench.common import machine
    from bench.report import write_markdown
    from streamrec.settings import PROJECT_ROOT

    out = PROJECT_ROOT / "docs" / "benchmark-results.json"
    results = json.loads(out.read_text()) if out.exists() else {}
    growth = results.setdefault("growth", {"variants": {}})
    growth |= {"date": dt.datetime.now().strftime("%Y-%m-%d %H:%M"), "machine": machine(), "minutes": minutes}
    growth["variants"].update(res)
    out.write_text(json.dumps(results, indent=2))
    write_markdown(results, PROJECT_ROOT / "docs" / "benchmarks.md")


def _mean_gap(whole: list[float], *parts: list[float]) -> float:
    return float(np.mean(whole) - sum(np.mean(p) if p else 0.0 for p in parts))


if __name__ == "__main__":
    args = sys.argv[1:]
    res = run(float(args[0]) if args else 6.0, tuple(args[1:]) or VARIANTS)
    first = ("items.apply", "aggregates lock wait", "aggregates batch ms", "foldin batch ms")
    for name, out in res.items():
        print(f"\n{name}")
        minutes = sorted(out["aggregates batch ms"])
        print(f"  {'minute':34s}" + "".join(f"{m:8d}" for m in minutes))
        for k in [*first, *sorted(set(out) - set(first))]:
            print(f"  {k:34s}" + "".join(f"{out[k].get(m, float('nan')):8.0f}" for m in minutes))
    save(res, float(args[0]) if args else 6.0)

"""`streamrec stream`: the Structured Streaming job, until SIGTERM / Ctrl-C."""

from __future__ import annotations

import argparse
import json

import click

from streamrec.errors import StreamrecError
from streamrec.events import TOPIC
from streamrec.settings import (
    DURATION,
    POSITIVE,
    data_option,
    home,
    kafka_options,
    run_with_args,
    sink_option,
    spark_storage,
)


@click.command("stream", help="run the streaming job until SIGTERM / Ctrl-C: live aggregates, dead letters, "
               "per-user fold-in")  # fmt: skip
@kafka_options
@click.option("--topic", default=TOPIC, help="topic to consume")
@sink_option()
@click.option("--trigger", type=DURATION, default="0",
              help="micro-batch interval, e.g. 1s, 500ms; 0: back to back while events come, and an "
                   "idle query asks Kafka every --polling-delay")  # fmt: skip
@click.option("--polling-delay", type=DURATION, default="250ms",
              help="an idle query's pause before it asks Kafka again (Spark's pollingDelay): with "
                   "--trigger 0, shorter means faster first lists and more idle CPU (10ms: ~20 % of a "
                   "core)")  # fmt: skip
@click.option("--available-now", is_flag=True, help="process what is in Kafka now, then stop")
@click.option("--top-k", type=POSITIVE, default=10, help="recommendations kept per user")
@click.option("--window", type=DURATION, default="7d", help="trending window size (event time)")
@click.option("--watermark-delay", type=DURATION, default="1d", help="lateness allowed for trending")
@click.option("--max-offsets-per-trigger", type=POSITIVE, default=None, help="cap on records per batch")
@data_option("MovieLens folder for titles and genres while no model is published")
@click.option("--reset", is_flag=True, help="forget checkpoints, event log and sink tables; start fresh")
@click.option("--sink-retry", type=DURATION, default="5m",
              help="how long a batch retries a failing sink (locked, full, down) then it stops")  # fmt: skip
@click.option("--aggregate-on", type=click.Choice(["auto", "driver", "executors", "shuffle"]), default="auto",
              help="where a batch's aggregates are grouped: auto = the driver in local mode (faster "
                   "on one machine), else the executors' partitions (driver memory: by keys)")  # fmt: skip
@click.option("--item-foldin/--no-item-foldin", default=True, show_default=True,
              help="fold in movies the model does not serve yet (item_raters, item_vectors)")  # fmt: skip
@click.option("--keep-trending", type=DURATION, default="90d", help="trending windows kept (event time)")
@click.option("--keep-metrics", type=DURATION, default="7d", help="stream_metrics rows kept")
@click.option("--keep-live-eval", type=DURATION, default="90d", help="live_eval minutes kept")
@click.option("--keep-dead-letters", type=DURATION, default="30d", help="dead letters kept")
@click.option("--max-dead-letters", type=POSITIVE, default=100_000, help="dead letters kept at most")
@click.option("--eventlog-compact-every", type=click.IntRange(min=0), default=300,
              help="compact + vacuum the event log and prune its Delta log every N batches "
                   "(0: only `eventlog compact`)")  # fmt: skip
@click.option("--quiet", is_flag=True, help="no per-batch log lines")
def stream(**kwargs) -> int:
    return run_with_args(run)(**kwargs)


def config_from_args(args: argparse.Namespace, bootstrap: str):
    from streamrec.event_log import event_log_dir
    from streamrec.sink import default_url

    from .aggregates import WindowSpec
    from .job import StreamConfig
    from .retention import Retention

    if min(args.trigger, args.polling_delay, args.watermark_delay, args.sink_retry) < 0 or args.window <= 0:
        raise StreamrecError("--window must be positive, --trigger, --polling-delay, --watermark-delay and "
                             "--sink-retry >= 0")  # fmt: skip
    return StreamConfig(
        bootstrap=bootstrap,
        sink_url=args.sink or default_url(),
        state_dir=spark_storage(),
        event_log_dir=event_log_dir(),
        model_root=home() / "models",
        data=args.data,
        topic=args.topic,
        trigger_s=args.trigger,
        polling_delay_s=args.polling_delay,
        available_now=args.available_now,
        k=args.top_k,
        sink_retry_s=args.sink_retry,
        window=WindowSpec(int(args.window), int(args.watermark_delay)),
        max_offsets=args.max_offsets_per_trigger,
        quiet=args.quiet,
        aggregation=args.aggregate_on,
        item_foldin=args.item_foldin,
        eventlog_compact_every=args.eventlog_compact_every,
        retention=Retention(
            trending_s=args.keep_trending,
            metrics_s=args.keep_metrics,
            live_eval_s=args.keep_live_eval,
            dead_letters_s=args.keep_dead_letters,
            dead_letters_max=args.max_dead_letters,
        ),  # fmt: skip
    )


def run(args: argparse.Namespace) -> int:
    from streamrec.kafka_admin import ensure_topic
    from streamrec.kafka_local import ensure_broker
    from streamrec.spark import get_spark
    from streamrec.stop_signals import stop_requested

    from .job import reset, run_stream

    bootstrap = ensure_broker(args)
    ensure_topic(bootstrap, args.topic)  # fail fast and clearly when the broker is unreachable
    cfg = config_from_args(args, bootstrap)
    if args.reset:
        reset(cfg)
        print(f"stream state reset (checkpoints, event log, sink tables in {cfg.sink_url})")
    with stop_requested(lambda: print("stopping at the next batch boundary...", flush=True)) as stop:
        spark = get_spark("streamrec-stream")
        if not args.available_now:
            print(f"streaming {args.topic}@{bootstrap} -> {cfg.sink_url} (Ctrl-C to stop)", flush=True)
        res = run_stream(spark, cfg, stop)
    print(
        f"stream stopped after {res['seconds']}s: {res['batches']} batches, "
        f"{res['rating_events']:,} rating events in aggregates (history included), "
        f"{res['dead_letters']} dead letters, {res['user_vectors']} user vectors, "
        f"{res['item_vectors']} movie vectors"
    )
    return 0


@click.command("status", help="where things stand: broker, models, stream tables and metrics")
@kafka_options
@sink_option("sink DB URL")
def status_cmd(**kwargs) -> int:
    return run_with_args(status)(**kwargs)


def status(args: argparse.Namespace) -> int:
    import sqlalchemy as sa

    from streamrec.kafka_local import LocalKafka
    from streamrec.model_store import ModelStore
    from streamrec.sink import AGGREGATE_TABLES, default_url, open_sink, stream_metrics

    if args.bootstrap_servers:
        print(f"kafka:   external cluster {args.bootstrap_servers}")
    else:
        broker = LocalKafka(args.kafka_port)
        print(
            f"kafka:   local broker {'running' if broker.is_running() else 'not running'} at {broker.address}"
        )
    store = ModelStore()
    print(
        f"models:  CURRENT={store.current_version() or '-'}; versions: {', '.join(store.versions()) or '-'}"
    )
    url = args.sink or default_url()
    with open_sink(url) as sink:
        if not sink.has_table("stream_metrics"):
            print(f"sink:    {url} (no stream tables yet: run `streamrec stream`)")
            return 0
        tables = [*AGGREGATE_TABLES, "dead_letters", "user_vectors", "user_recommendations", "item_vectors",
                  "stream_metrics"]  # fmt: skip
        counts = {t: sink.count(t) for t in tables if sink.has_table(t)}  # older sinks lack newer tables
        print(f"sink:    {url}")
        seeded = json.loads(sink.get_state("bootstrap") or "null")
        if seeded:
            cut = f"split-at {seeded['split_at']}, until {seeded['until']}"
            print(f"history: aggregates seeded from {seeded['data']} ({cut})")
        else:
            print("history: none (aggregates hold stream events only)")
        if shipped := sink.get_state("model_shipped"):
            print(f"fold-in: the stream last shipped model {shipped} to its executors")
        if sink.has_table("item_vectors"):
            print("movies:  " + _item_summary(sink, shipped))
        if sink.has_table("live_eval"):
            for line in _live_eval_summary(sink):
                print("live:    " + line)
        print("tables:  " + ", ".join(f"{t}={n:,}" for t, n in counts.items()))
        m = stream_metrics.c
        rows = sink.query(
            sa.select(m.query, sa.func.max(m.batch_id), sa.func.sum(m.input_rows),
                      sa.func.sum(m.dead_letters), sa.func.sum(m.late_events))
            .group_by(m.query).order_by(m.query)
        )  # fmt: skip
        for q, batch, n, dead, late in rows:
            extra = _recent_latency(sink, q)
            extra += f", {dead or 0} dead letters, {late or 0} late" if q == "aggregates" else ""
            print(f"query:   {q}: last batch {batch}, {int(n or 0):,} rows{extra}")
    return 0


def _live_eval_summary(sink) -> list[str]:
    """Hit rate@k of the served lists on live events, per model version and list source, with
    popularity's on the same events (streaming.live_eval)."""
    import sqlalchemy as sa

    from streamrec.sink import live_eval

    e = live_eval.c
    sums = [sa.func.sum(e.events), sa.func.sum(e.hits), sa.func.sum(e.pop_hits)]
    rows = sink.query(sa.select(e.model_version, e.source, *sums).group_by(e.model_version, e.source)
                      .order_by(e.model_version, e.source))  # fmt: skip
    return [f"{v} {s}: {int(n):,} events, hit rate {h / n:.4f} (popularity {p / n:.4f} on the same events)"
            for v, s, n, h, p in rows if n]  # fmt: skip


def _item_summary(sink, version: str | None) -> str:
    """Movies the model does not serve from training: streamed (servable or not yet) and content."""
    import sqlalchemy as sa

    from streamrec.model_store import ModelStore
    from streamrec.sink import item_vectors

    v = item_vectors.c
    rows = sink.query(sa.select(v.source, v.n_ratings).where(v.model_version == version))
    try:
        min_support = ModelStore().metadata(version).min_support if version else 1
    except StreamrecError:  # the version was pruned since: count every streamed movie
        min_support = 1
    streamed = [n or 0 for s, n in rows if s == "stream"]
    servable = sum(n >= min_support for n in streamed)
    content = sum(s == "content" for s, _ in rows)
    return (f"{len(streamed):,} folded in by the stream ({servable:,} servable: >= {min_support} ratings), "
            f"{content:,} from content only (model {version or '-'})")  # fmt: skip


def _recent_latency(sink, query: str, batches: int = 20) -> str:
    """Latency now: the median of the last batches' p50s and the 95th percentile of their p95s
    (end to end, Kafka record time -> sink commit), as the dashboard and /stats/stream show it."""
    import numpy as np
    import sqlalchemy as sa

    from streamrec.sink import stream_metrics

    m = stream_metrics.c
    rows = sink.query(
        sa.select(m.latency_p50_ms, m.latency_p95_ms)
        .where(m.query == query, m.batch_id >= 0, m.latency_p95_ms.is_not(None))
        .order_by(m.batch_id.desc())
        .limit(batches)
    )
    if not rows:
        return ""
    p50, p95 = np.median([r[0] for r in rows]), np.percentile([r[1] for r in rows], 95)
    return f", latency over the last {len(rows)} batches p50 {p50:,.0f} ms / p95 {p95:,.0f} ms"

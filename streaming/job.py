"""The streaming job: two Structured Streaming queries over topic `ratings`.

  aggregates  every record -> the event log (valid events, Parquet, one file per batch id),
              dead letters + per-key aggregate deltas, one sink transaction per batch
  foldin      valid events -> transformWithStateInPandas per user -> user_vectors + recs, then
              per movie (item fold-in of movies CURRENT does not serve yet) -> item_vectors

Each query checkpoints its Kafka offsets and records (query, batch_id) in the same sink
transaction as its data, so a replayed batch after a crash is skipped, never re-applied; the
event log's file for a batch is written before that commit and found, not rewritten, on a replay.
The event log once was a third query (Spark's file sink): reading and parsing Kafka once for it
and the aggregates took a third of the CPU off each batch (docs/benchmarks.md).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

from streamrec import logs
from streamrec.content import load_tags
from streamrec.errors import StreamrecError, first_line
from streamrec.event_log import write_batch, write_batch_spark
from streamrec.event_log_maint import compact_on_schedule
from streamrec.history import HistorySpec
from streamrec.history_frames import RATINGS_SCHEMA, history_frame, to_pandas
from streamrec.history_frames import latest_per_pair as latest_per_pair_frame
from streamrec.model_store import ModelStore
from streamrec.movielens import empty_ratings, load_movies
from streamrec.sink import (
    Sink,
    dead_letters,
    live_eval,
    movie_stats,
    open_sink,
    rating_histogram,
    stream_batches,
    user_recommendations,
    user_vectors,
)

from .aggregates import WindowSpec, apply_deltas, compute_deltas
from .foldin_processor import OUTPUT_SCHEMA, FoldInProcessor
from .item_folder import store_seeds
from .item_vectors import ItemVectorWriter
from .live_eval import POPULAR_TOP, write_popular
from .metrics import ProgressListener, flush_progress, latency_ms, upsert_metrics
from .model_shipping import ModelShipper
from .parse import kafka_stream, parse, valid
from .retention import Retention, apply_retention
from .spark_aggregates import BatchResult, batch_deltas, genres_frame

BOOTSTRAP_BATCH = -1  # the history, applied once as a pseudo-batch of the aggregates query

LOG = logs.get("stream")


@dataclass
class StreamConfig:
    bootstrap: str
    sink_url: str
    state_dir: Path  # checkpoints live in state_dir/checkpoints/<query>
    event_log_dir: Path
    model_root: Path
    data: Path  # MovieLens folder for titles/genres when no model exists yet
    topic: str = "ratings"
    # 0: batches back to back while events come; idle, each query asks Kafka every polling_delay_s
    # (Spark's spark.sql.streaming.pollingDelay, read when a query starts). With 250 ms the idle
    # stream took 1.8-5.2 % of a core (Spark's 10 ms: ~20 %) and a new event waits 125 ms on
    # average for its batch to start, against 0.5 s at a 1 s trigger (docs/benchmarks.md).
    trigger_s: float = 0.0
    polling_delay_s: float = 0.25
    available_now: bool = False
    k: int = 10
    window: WindowSpec = field(default_factory=WindowSpec)
    max_offsets: int | None = None
    quiet: bool = False
    sink_retry_s: float = 300.0  # how long a batch retries a failing sink before the stream stops
    # Where a batch's aggregates are grouped: "executors" (each partition where it is read, merged
    # on the driver), "shuffle" (a Spark groupBy) or "driver" (the raw records collected). "auto":
    # the driver in local mode, where it was measured faster (bench/aggregation_bench.py), else
    # the executors.
    aggregation: str = "auto"
    # Movies CURRENT does not serve yet, folded in on the driver (streaming.item_folder).
    item_foldin: bool = True
    retention: Retention = field(default_factory=Retention)  # what the sink keeps (streaming.retention)
    # The event log's compaction + vacuum + log pruning (streamrec.event_log_maint) after every N-th
    # batch (0: never): ~5 min at the 1 s trigger, so the table holds a few hundred small files at
    # most, and its _delta_log the commits since the oldest kept model's version (and the grace).
    eventlog_compact_every: int = 300

    def checkpoint(self, query: str) -> str:
        return str(self.state_dir / "checkpoints" / query)


@dataclass
class Context:
    """What the batch writers need, prepared once on the driver."""

    spec: HistorySpec | None  # the data-folder part of CURRENT's history (None without a model)
    titles: pd.Series
    genres_of: pd.Series
    movies: pd.DataFrame | None = None  # the catalogue (content vectors of movies with no rating)
    tags: pd.DataFrame | None = None


def prepare(cfg: StreamConfig) -> Context:
    """Titles, genres and which base history CURRENT was trained on (read later, by Spark)."""
    store = ModelStore(cfg.model_root)
    version = store.current_version()
    if version:
        spec = store.metadata(version).history
        # Only the data-folder part: the event log's events come back from Kafka itself.
        spec = HistorySpec(spec.data, spec.until, spec.split_at)
        movies = load_movies(Path(spec.data))
        tags = load_tags(Path(spec.data))
    else:
        spec = None
        movies, tags = load_movies(cfg.data), None
    m = movies.set_index("movie_id")
    return Context(spec, m["title"], m["genres"], movies, tags)


def history_events(spark, ctx: Context):
    """The base history's rating events as a Spark DataFrame the executors read (None without a
    model): the first start seeds the aggregates and the fold-in state from it, and no part of
    it is collected to the driver (streamrec.history_frames)."""
    return history_frame(spark, ctx.spec) if ctx.spec is not None else None


def _foldin_started(cfg: StreamConfig) -> bool:
    """True once the fold-in query has committed a batch: Spark then ignores its initialState."""
    commits = Path(cfg.checkpoint("foldin")) / "commits"
    return commits.is_dir() and any(p.name.isdigit() for p in commits.iterdir())


def bootstrap_aggregates(sink: Sink, ctx: Context, cfg: StreamConfig, history) -> int | None:
    """Apply the base history's aggregates once (idempotent). Returns the history events they
    count when applied now, None when they already were.

    All-time aggregates count rating events, so they are built from the raw history events
    (re-ratings included), not from the de-duplicated ratings: by Spark, with the stream's own
    per-batch grouping (streaming.spark_aggregates), so only per-key rows reach the driver.
    """
    with sink.transaction():
        if sink.batch_applied("aggregates", BOOTSTRAP_BATCH):
            return None
        events = 0
        if history is not None:
            d = history_deltas(history, ctx, cfg)
            if d is not None:
                apply_deltas(sink, d, ctx.titles)
                events = int(d.movie["n"].sum())
                if d.watermark is not None:
                    sink.set_state("watermark", str(d.watermark))
        sink.set_state("bootstrap", json.dumps(ctx.spec.to_dict() if ctx.spec else None))
        sink.mark_batch("aggregates", BOOTSTRAP_BATCH, time.time())
    return events


def history_deltas(history, ctx: Context, cfg: StreamConfig):
    """The history's aggregates as one batch's deltas (None when it holds no event), grouped by
    a Spark groupBy: history rows are valid events without Kafka coordinates. Trending windows
    the retention (`--keep-trending`) would delete at once are not computed: the driver would
    hold windows x movies of them, O(history)."""
    from pyspark.sql import functions as F

    newest = history.agg(F.max("timestamp")).first()[0]
    if newest is None:
        return None
    # Retention keeps windows ending after watermark - trending_s, and the watermark is at most
    # the newest event time: a window more is kept, never one less.
    keep_from = int(newest - cfg.retention.trending_s - cfg.window.size_s)
    rows = history.select(
        "user_id", "movie_id", "rating", "timestamp",
        F.lit(None).cast("string").alias("reason"), F.lit(0.0).alias("kafka_ts"),
        F.lit(None).cast("string").alias("topic"), F.lit(None).cast("int").alias("partition"),
        F.lit(None).cast("long").alias("offset"), F.lit(None).cast("string").alias("value"),
        F.lit(None).cast("string").alias("raw_base64"),
    )  # fmt: skip
    genres = genres_frame(history.sparkSession, ctx.genres_of)
    return batch_deltas(rows, genres, None, cfg.window, shuffle=True, trending_from=keep_from).deltas


def seed_rows(history, items: ItemVectorWriter) -> pd.DataFrame:
    """The latest history ratings of the movies CURRENT knows below --min-support (collected:
    fewer than --min-support training ratings each)."""
    from pyspark.sql import functions as F

    model = items.model()
    if model is None or model.items.servable is None:
        return empty_ratings()
    under = model.items.ids[~model.items.servable].astype(np.int32)
    ids = F.broadcast(history.sparkSession.createDataFrame(pd.DataFrame({"movie_id": under}), "movie_id int"))
    return to_pandas(latest_per_pair_frame(history).join(ids, "movie_id", "left_semi"))


def collect_rows(df, sink: Sink, batch_id: int) -> pd.DataFrame:
    return df.toPandas()


def once_per_batch(sink_url: str, query: str, apply, retry_s: float = 300.0, collect=collect_rows) -> object:
    """A foreachBatch function that applies each micro-batch exactly once.

    `collect(df, sink, batch_id)` brings what the batch writes to the driver (once, outside the
    write lock; it may also write files that a replay of the batch finds and keeps);
    `apply(sink, collected, batch_id, now)` runs inside one transaction that also records
    (query, batch_id); a batch Spark replays after a crash is found in that ledger and skipped.
    When the sink itself fails (locked, disk full, connection lost) the transaction is rolled
    back and the batch retried with backoff for up to `retry_s`, with one line per attempt;
    only then does the query fail (and a restart re-runs the batch, idempotently).
    """
    sink = Sink(sink_url, threadsafe=True)

    def write(df, batch_id: int) -> None:
        pdf = None
        for delay in backoff(retry_s):
            try:
                if sink.batch_applied(query, batch_id):  # replayed: skip collecting it too
                    return
                if pdf is None:
                    pdf = collect(df, sink, batch_id)
                with sink.transaction():
                    if sink.batch_applied(query, batch_id):  # re-check under the write lock
                        return
                    now = time.time()
                    apply(sink, pdf, batch_id, now)
                    sink.mark_batch(query, batch_id, now)
                return
            except sink.unavailable_errors as exc:
                if delay is None:
                    raise StreamrecError(f"{query} batch {batch_id}: the sink failed for {retry_s:g} s: "
                                         f"{first_line(exc)}") from exc  # fmt: skip
                LOG.warning(f"{query} batch {batch_id}: sink unavailable ({first_line(exc)}); "
                            f"nothing written, retrying in {delay:g} s")  # fmt: skip
                LOG.debug("sink error", exc_info=True)
                time.sleep(delay)
                with contextlib.suppress(Exception):
                    sink.reconnect()

    return write


def backoff(total_s: float, first: float = 0.5, cap: float = 10.0):
    """Delays 0.5, 1, 2, ... (at most `cap`) while their sum stays within `total_s`; then None."""
    delay, spent = first, 0.0
    while spent + delay <= total_s:
        yield delay
        spent += delay
        delay = min(delay * 2, cap)
    yield None


def _on_driver(
    pdf: pd.DataFrame, genres_of: pd.Series, watermark: int | None, cfg: StreamConfig
) -> BatchResult:
    """The pre-cluster path, kept to measure against: raw records to the driver, pandas deltas."""
    bad, good = pdf[pdf["reason"].notna()], pdf[pdf["reason"].isna()]
    dead = bad[["topic", "partition", "offset", "value", "reason", "raw_base64"]]
    d = compute_deltas(good, genres_of, watermark, cfg.window) if len(good) else None
    kafka = pd.DataFrame({"t": good["kafka_ts"].to_numpy(), "n": 1})
    return BatchResult(d, dead, kafka)


def aggregation_mode(spark, cfg: StreamConfig) -> str:
    if cfg.aggregation != "auto":
        return cfg.aggregation
    return "driver" if spark.sparkContext.master.startswith("local") else "executors"


def aggregate_in_spark(spark, cfg: StreamConfig, ctx_genres: pd.Series, mode: str):
    """Write one batch's event log file and collect its deltas where `mode` says
    (streaming.spark_aggregates on the executors). The watermark is read before the job: only
    this query's batches move it, one at a time."""
    # The executors' genre lookup is built (one Spark job, cached) only when they will use it.
    genres = genres_frame(spark, ctx_genres) if mode != "driver" else None

    def collect(df, sink: Sink, batch_id: int) -> BatchResult:
        wm = sink.get_state("watermark")
        watermark = int(wm) if wm else None
        if mode == "driver":  # the records are on the driver anyway: it appends them too
            pdf = df.toPandas()
            write_batch(cfg.event_log_dir, batch_id, pdf[pdf["reason"].isna()])
            compact_on_schedule(cfg.event_log_dir, batch_id, cfg.eventlog_compact_every, cfg.model_root)
            return _on_driver(pdf, ctx_genres, watermark, cfg)
        df.persist()  # read from Kafka and parsed once for both jobs
        try:
            write_batch_spark(valid(df), cfg.event_log_dir, batch_id)  # collected, appended by the driver
            compact_on_schedule(cfg.event_log_dir, batch_id, cfg.eventlog_compact_every, cfg.model_root)
            return batch_deltas(df, genres, watermark, cfg.window, shuffle=mode == "shuffle")
        finally:
            df.unpersist()

    return collect


def apply_aggregates(ctx: Context, popular_dir: Path | None = None):
    def apply(sink: Sink, res: BatchResult, batch_id: int, now: float) -> None:
        sink.upsert(dead_letters, [
            {"topic": t, "kafka_partition": int(p), "kafka_offset": int(o), "raw_value": v, "reason": r,
             "batch_id": batch_id, "raw_base64": b}
            for t, p, o, v, r, b in res.dead.itertuples(index=False)
        ], None)  # a record already dead-lettered stays as it was  # fmt: skip
        late = 0
        if res.deltas is not None:
            apply_deltas(sink, res.deltas, ctx.titles)
            sink.set_state("watermark", str(res.deltas.watermark))
            late = res.deltas.late_events
            if popular_dir is not None:  # the running top chart, for the live evaluation's baseline
                publish_top_chart(sink, popular_dir)
        # Latency ends here, after the writes and just before the commit (not at `now`).
        upsert_metrics(sink, "aggregates", batch_id, dead_letters=len(res.dead), late_events=late,
                       **latency_ms(res.kafka_times["t"].to_numpy(), time.time(),
                                    res.kafka_times["n"].to_numpy()))  # fmt: skip

    return apply


def apply_foldin_outputs(items: ItemVectorWriter):
    """The fold-in query's batch: users' vectors and lists, and the streamed movies' vectors."""

    def apply(sink: Sink, pdf: pd.DataFrame, batch_id: int, now: float) -> None:
        is_rating = pdf["movie_id"].notna() if "movie_id" in pdf else pd.Series(False, index=pdf.index)
        items.apply(sink, pdf[is_rating], now)
        apply_user_outputs(sink, pdf[~is_rating], batch_id, now, pdf["min_kafka_ts"].to_numpy())

    return apply


def publish_top_chart(sink: Sink, directory: Path) -> None:
    """Every movie's all-time rating count, history included, as the executors' running
    popularity list (streaming.live_eval): after the bootstrap and after each aggregates batch."""
    m = movie_stats.c
    top = sink.query(sa.select(m.movie_id).order_by(m.n_ratings.desc(), m.movie_id).limit(POPULAR_TOP))
    write_popular(directory, np.array([r[0] for r in top], np.int64))


ADDITIVE = ("events", "hits", "rank_sum", "pop_hits", "only_this", "only_ref")  # live_eval's counts


def apply_live_eval(sink: Sink, pdf: pd.DataFrame, now: float) -> None:
    """Add the batch's live-evaluation counts (one row per active user, scored on the executors)
    to `live_eval`, per model version, list source and minute: O(keys), not O(events). A
    candidate's counts go to its own rows (source "shadow"), on the same events as CURRENT's."""
    if "eval_source" not in pdf:
        return
    rows = pdf[pdf["eval_source"].notna() & (pdf["eval_events"].fillna(0) > 0)]
    if rows.empty:
        return
    served = rows.assign(only_this=0, only_ref=0)[
        ["model_version", "eval_source", "eval_bucket", "eval_events", "eval_hits", "eval_rank_sum",
         "eval_pop_hits", "only_this", "only_ref"]]  # fmt: skip
    shadowed = rows[rows["shadow_version"].notna()]
    shadow = pd.DataFrame({
        "model_version": shadowed["shadow_version"], "eval_source": "shadow",
        "eval_bucket": shadowed["eval_bucket"],
        "eval_events": shadowed["eval_events"], "eval_hits": shadowed["shadow_hits"],
        "eval_rank_sum": shadowed["shadow_rank_sum"], "eval_pop_hits": shadowed["eval_pop_hits"],
        "only_this": shadowed["shadow_only"], "only_ref": shadowed["current_only"],
    })  # fmt: skip
    both = pd.concat([served, shadow], ignore_index=True)
    g = both.groupby(["model_version", "eval_source", "eval_bucket"]).sum().reset_index()
    t = live_eval.c
    sink.upsert(live_eval, [
        {"model_version": r.model_version, "source": r.eval_source, "bucket": int(r.eval_bucket),
         "events": int(r.eval_events), "hits": int(r.eval_hits), "rank_sum": int(r.eval_rank_sum),
         "pop_hits": int(r.eval_pop_hits), "only_this": int(r.only_this), "only_ref": int(r.only_ref),
         "updated_at": now}
        for r in g.itertuples()
    ], lambda ex: {c: t[c] + ex[c] for c in ADDITIVE} | {"updated_at": ex.updated_at})  # fmt: skip


def apply_user_outputs(sink: Sink, pdf: pd.DataFrame, batch_id: int, now: float, kafka_ts=None) -> None:
    """Upsert refreshed user vectors and replace those users' recommendation lists."""
    apply_live_eval(sink, pdf, now)
    scored = pdf[pdf["model_version"].notna()]
    sink.upsert(user_vectors, [
        {"user_id": int(r.user_id), "model_version": r.model_version, "n_ratings": int(r.n_ratings),
         "n_used": int(r.n_used), "vector": r.vector, "bias": None if pd.isna(r.bias) else float(r.bias),
         "updated_at": now}
        for r in scored.itertuples()
    ], ["model_version", "n_ratings", "n_used", "vector", "bias", "updated_at"])  # fmt: skip
    users = [int(u) for u in scored["user_id"]]
    if users:
        sink.execute(sa.delete(user_recommendations).where(user_recommendations.c.user_id.in_(users)))
        sink.execute(sa.insert(user_recommendations), [
            {"user_id": int(r.user_id), "rank": rank, "movie_id": int(m), "score": float(s),
             "predicted_rating": float(p), "model_version": r.model_version, "source": r.source}
            for r in scored.itertuples()
            for rank, (m, s, p) in enumerate(zip(r.rec_movie_ids, r.rec_scores, r.rec_predicted,
                                                 strict=True), 1)
        ])  # fmt: skip
    versions = sorted(set(scored["model_version"]))
    kafka_ts = pdf["min_kafka_ts"].to_numpy() if kafka_ts is None else kafka_ts
    upsert_metrics(sink, "foldin", batch_id, model_version=",".join(versions) or None,
                   **latency_ms(kafka_ts, time.time()))  # fmt: skip


def start_queries(
    spark, cfg: StreamConfig, ctx: Context, scope: str, items: ItemVectorWriter, history
) -> list:
    raw = kafka_stream(spark, cfg.bootstrap, cfg.topic, cfg.max_offsets)
    parsed = parse(raw)
    events = valid(parsed)

    def trig(w):
        return (
            w.trigger(availableNow=True)
            if cfg.available_now
            else w.trigger(processingTime=f"{cfg.trigger_s} seconds")
        )

    # Each query reads it once, when it starts: set before both start (a session setting).
    spark.conf.set("spark.sql.streaming.pollingDelay", f"{round(cfg.polling_delay_s * 1000)}ms")

    write_aggregates = once_per_batch(cfg.sink_url, "aggregates", apply_aggregates(ctx, items.directory),
                                      cfg.sink_retry_s,
                                      aggregate_in_spark(spark, cfg, ctx.genres_of,
                                                         aggregation_mode(spark, cfg)))  # fmt: skip
    aggregates = trig(
        parsed.writeStream.queryName("aggregates")
        .foreachBatch(write_aggregates)
        .option("checkpointLocation", cfg.checkpoint("aggregates"))
    ).start()
    # The fold-in state: each user's latest rating per movie, computed by Spark (read by the
    # operator on its first batch only; a restart's checkpoint has it).
    if history is not None and not _foldin_started(cfg):
        initial = latest_per_pair_frame(history)
    else:
        initial = spark.createDataFrame([], RATINGS_SCHEMA)
    users = events.select("user_id", "movie_id", "rating", "timestamp", "kafka_ts").groupBy("user_id")
    # One stateful operator keyed by user (fold-in, lists); with --item-foldin it also emits each
    # rating of a streamed movie with the rater's fresh vectors, solved on the driver in the
    # batch's sink transaction (streaming.item_folder).
    folded = users.transformWithStateInPandas(
        statefulProcessor=FoldInProcessor(scope, cfg.k, str(items.directory), emit_ratings=cfg.item_foldin),
        outputStructType=OUTPUT_SCHEMA,
        outputMode="Append",
        timeMode="None",
        initialState=initial.groupBy("user_id"),
    )
    foldin = trig(
        folded.writeStream.queryName("foldin")
        .outputMode("append")
        .foreachBatch(once_per_batch(cfg.sink_url, "foldin", apply_foldin_outputs(items), cfg.sink_retry_s))
        .option("checkpointLocation", cfg.checkpoint("foldin"))
    ).start()
    return [aggregates, foldin]


def run_stream(spark, cfg: StreamConfig, stop: threading.Event | None = None) -> dict:
    """Run until `stop` is set (with available_now: until everything available is processed)."""
    stop = stop or threading.Event()
    sink = Sink(cfg.sink_url)
    try:
        sink.create_schema()
        # The history seeds the aggregates once and the fold-in state on its first batch only:
        # a restart past both skips loading it (and shipping it to Spark as initial state).
        needed = not sink.batch_applied("aggregates", BOOTSTRAP_BATCH) or not _foldin_started(cfg)
        ctx = prepare(cfg)
        history = history_events(spark, ctx) if needed else None
        loaded = bootstrap_aggregates(sink, ctx, cfg, history)
    finally:
        sink.close()
    listener = ProgressListener(cfg.sink_url, quiet=cfg.quiet)
    spark.streams.addListener(listener)
    started = time.monotonic()
    shipper = ModelShipper(spark.sparkContext, ModelStore(cfg.model_root))
    # a candidate (train --candidate) is shipped beside CURRENT and shadow-scored, never served
    shadow = ModelShipper(spark.sparkContext, ModelStore(cfg.model_root), candidate=True, scope=shipper.scope)
    items = ItemVectorWriter(
        cfg.state_dir / "items" / shipper.scope, ModelStore(cfg.model_root), ctx.movies, ctx.tags
    )

    def ship() -> None:  # a newly published model reaches the executors' next tasks
        shadow.sync()
        if version := shipper.sync():
            with open_sink(cfg.sink_url) as s, s.transaction():  # for `streamrec status`
                s.set_state("model_shipped", version)
                items.swap(s, version, time.time())  # streamed movies the new version knows: dropped

    ship()
    with open_sink(cfg.sink_url) as s:
        if cfg.item_foldin and not _foldin_started(cfg) and history is not None:
            with s.transaction():  # a movie CURRENT knows below --min-support: its training raters
                store_seeds(s, items.seeds(seed_rows(history, items)))
        publish_top_chart(s, items.directory)
    queries = start_queries(spark, cfg, ctx, shipper.scope, items, history)
    try:
        if cfg.available_now:
            for q in queries:
                q.awaitTermination()
        else:
            pruned_at = 0.0
            while not stop.is_set():
                for q in queries:
                    if not q.isActive:
                        raise StreamrecError(f"query {q.name} stopped: {first_line(q.exception())}")
                ship()
                if time.monotonic() - pruned_at >= cfg.retention.every_s:
                    pruned_at = time.monotonic()
                    prune(cfg)
                stop.wait(0.5)
    except StreamrecError:
        raise
    except Exception as exc:  # StreamingQueryException and friends: one line for the user
        raise StreamrecError(f"the stream failed: {first_line(exc)}") from exc
    finally:
        stop_gracefully(queries)
        flush_progress(cfg.sink_url, queries)
        spark.streams.removeListener(listener)
    return {
        "seconds": round(time.monotonic() - started, 1),
        "bootstrapped_history": loaded is not None,
        "history_events_loaded": loaded or 0,
        **summary(cfg.sink_url),
    }


def prune(cfg: StreamConfig) -> dict[str, int]:
    """Apply the sink's retention once (one transaction); a failure is logged, never fatal."""
    try:
        with open_sink(cfg.sink_url) as s, s.transaction():
            wm = s.get_state("watermark")
            deleted = apply_retention(s, cfg.retention, time.time(), int(wm) if wm else None)
    except Exception as exc:  # noqa: BLE001 - a busy or full sink: the next round retries
        LOG.warning(f"retention skipped this round: {first_line(exc)}")
        return {}
    if any(deleted.values()):
        LOG.info("retention: deleted " + ", ".join(f"{n:,} {t}" for t, n in deleted.items() if n))
    return deleted


def stop_gracefully(queries: list, timeout: float = 60.0) -> None:
    """Stop each query between micro-batches (waits for a running batch to finish).

    If the signal also reached the JVM (sent to the whole process group), Spark is already
    shutting down; an interrupted batch is then simply re-run, idempotently, on restart.
    """
    for q in queries:
        try:
            deadline = time.monotonic() + timeout
            while q.isActive and q.status.get("isTriggerActive") and time.monotonic() < deadline:
                time.sleep(0.1)
            q.stop()
        except Exception:  # noqa: BLE001 - Spark already stopped: nothing left to stop
            pass


def summary(sink_url: str) -> dict:
    with open_sink(sink_url) as sink:
        count = {t: sink.count(t) for t in ("dead_letters", "user_vectors", "item_vectors", "movie_stats")}
        events = sink.query(sa.select(sa.func.coalesce(sa.func.sum(rating_histogram.c.n_ratings), 0)))[0][0]
        batches = sink.query(sa.select(sa.func.count()).where(stream_batches.c.batch_id >= 0))[0][0]
    return {"rating_events": int(events), "batches": int(batches), **count}


def reset(cfg: StreamConfig) -> None:
    """Forget all stream state: checkpoints, event log (the whole table: its log and every
    snapshot; models naming one of its versions can no longer be retrained from it) and the
    sink's tables."""
    shutil.rmtree(cfg.state_dir / "checkpoints", ignore_errors=True)
    shutil.rmtree(cfg.event_log_dir, ignore_errors=True)
    with open_sink(cfg.sink_url) as sink:
        sink.drop_all()

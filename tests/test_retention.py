"""Retention of the sink's time-growing tables (streaming.retention), on a real SQLite sink."""

import sqlalchemy as sa

from streaming.retention import DAY, Retention, apply_retention
from streamrec.sink import (
    RETENTION_INDEXES,
    Sink,
    dead_letters,
    live_eval,
    stream_batches,
    stream_metrics,
    trending,
)

NOW = 1_800_000_000.0


def _sink(tmp_path) -> Sink:
    sink = Sink(f"sqlite:///{tmp_path / 'sink.db'}")
    sink.create_schema()
    return sink


def test_each_table_keeps_what_is_within_its_retention_and_nothing_else(tmp_path):
    sink = _sink(tmp_path)
    r = Retention(trending_s=10 * DAY, metrics_s=DAY, live_eval_s=2 * DAY, dead_letters_s=3 * DAY,
                  dead_letters_max=1000, ledger_batches=2)  # fmt: skip
    wm = 1_500_000_000
    with sink.transaction():
        stats = {"movie_id": 1, "n_ratings": 1, "rating_sum": 4.0, "avg_rating": 4.0}
        sink.upsert(trending, [{"window_start": wm - s - 7 * DAY, "window_end": wm - s, **stats}
                               for s in (0, 9 * DAY, 11 * DAY)], None)  # fmt: skip
        sink.upsert(stream_metrics, [{"query": "foldin", "batch_id": i, "at": NOW - age}
                                     for i, age in enumerate((10, 2 * DAY))], None)  # fmt: skip
        counts = {"events": 1, "hits": 0, "rank_sum": 0, "pop_hits": 0}
        sink.upsert(live_eval, [{"model_version": "v1", "source": "stream", "bucket": NOW - age, **counts}
                                for age in (60, 3 * DAY)], None)  # fmt: skip
        ages = ((-1, 9 * DAY), (0, 5 * DAY), (1, DAY), (2, 10), (3, 5))
        sink.upsert(stream_batches, [{"query": "aggregates", "batch_id": i, "committed_at": NOW - age}
                                     for i, age in ages], None)  # fmt: skip
        sink.upsert(dead_letters, [{"topic": "t", "kafka_partition": 0, "kafka_offset": i, "reason": "x",
                                    "batch_id": i} for i in (0, 1, 2)], None)  # fmt: skip
    with sink.transaction():
        deleted = apply_retention(sink, r, NOW, wm)
    assert deleted == {
        "trending": 1,
        "stream_metrics": 1,
        "live_eval": 1,
        "dead_letters": 1,
        "stream_batches": 2,
    }
    assert sorted(x[0] for x in sink.query(sa.select(trending.c.window_end))) == [wm - 9 * DAY, wm]
    assert [x[0] for x in sink.query(sa.select(dead_letters.c.batch_id))] == [1, 2]  # batch 0: 5 days old
    ledger = sorted(x[0] for x in sink.query(sa.select(stream_batches.c.batch_id)))
    assert ledger == [-1, 2, 3]  # the newest 2 batches, and the bootstrap marker
    with sink.transaction():  # idempotent
        assert sum(apply_retention(sink, r, NOW, wm).values()) == 0


def test_a_flood_of_dead_letters_is_capped_by_whole_batches_oldest_first(tmp_path):
    sink = _sink(tmp_path)
    with sink.transaction():
        sink.upsert(dead_letters, [{"topic": "t", "kafka_partition": 0, "kafka_offset": 10 * b + i,
                                    "reason": "x", "batch_id": b} for b in range(5) for i in range(10)],
                    None)  # fmt: skip
        apply_retention(sink, Retention(dead_letters_max=25), NOW, None)
    kept = sorted({x[0] for x in sink.query(sa.select(dead_letters.c.batch_id))})
    assert kept == [2, 3, 4] and sink.count("dead_letters") == 30  # the cap plus the cut batch's rest


def test_the_stream_applies_it_as_configured_and_survives_a_sink_it_cannot_write(tmp_path, caplog):
    from streaming.job import StreamConfig, prune

    sink = _sink(tmp_path)
    with sink.transaction():
        sink.upsert(stream_metrics, [{"query": "aggregates", "batch_id": 1, "at": 1.0}], None)
    cfg = StreamConfig(bootstrap="-", sink_url=sink.url, state_dir=tmp_path, event_log_dir=tmp_path,
                       model_root=tmp_path, data=tmp_path, retention=Retention(metrics_s=60))  # fmt: skip
    assert prune(cfg)["stream_metrics"] == 1 and sink.count("stream_metrics") == 0
    broken = StreamConfig(**{**cfg.__dict__, "sink_url": f"sqlite:///{tmp_path / 'missing' / 'x.db'}"})
    assert prune(broken) == {} and "retention skipped" in caplog.text


def test_the_retention_deletes_by_index_also_in_a_sink_created_before_the_indexes(tmp_path):
    sink = _sink(tmp_path)
    with sink.engine.begin() as c:  # a sink DB from before the indexes
        for index in RETENTION_INDEXES:
            c.exec_driver_sql(f"DROP INDEX {index.name}")
    sink.create_schema()  # an upgraded stream's start
    plans = {}
    for table, col in ((stream_metrics, "at"), (trending, "window_end"), (live_eval, "bucket"),
                       (dead_letters, "batch_id")):  # fmt: skip
        stmt = sa.delete(table).where(table.c[col] < 5)
        stmt = stmt.compile(sink.engine, compile_kwargs={"literal_binds": True})
        with sink.engine.connect() as c:
            plans[table.name] = " ".join(str(r[-1]) for r in c.exec_driver_sql(f"EXPLAIN QUERY PLAN {stmt}"))
    assert all(
        f"USING INDEX ix_{name}_" in plan or "USING COVERING INDEX" in plan for name, plan in plans.items()
    ), plans

"""The streaming job against the real broker and Spark: exact aggregates, fold-in vectors,
dead letters, model hot swap, crash safety (SIGKILL + restart) and the PostgreSQL sink."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from batch.publish import TrainOptions, default_spec, run_training
from batch.train import Params, RankingParams
from producer.replay import replay
from streaming.job import StreamConfig, run_stream
from streaming.retention import DAY, Retention
from streamrec.event_log import committed_files, count_events, read_event_log
from streamrec.events import encode, validate
from streamrec.history import latest_per_pair, load_history, window
from streamrec.kafka_admin import ensure_topic, producer
from streamrec.model_store import ModelStore, write_npz
from streamrec.movielens import load_ratings
from streamrec.settings import BUNDLED_DATA, PROJECT_ROOT
from streamrec.spark import CHECKPOINT_FILE_MANAGER
from tests.bad_records import BAD_KINDS, corpus, reason_matches
from tests.streamcheck import (
    assert_aggregates_exact,
    assert_item_vectors_counted,
    assert_vectors_match_fold_in,
    fresh_postgres_db,
    table,
)

pytestmark = pytest.mark.integration
SPLIT = 0.8


@pytest.fixture(scope="module")
def ratings():
    return load_ratings(BUNDLED_DATA)[0]


@pytest.fixture(scope="module")
def base_model(spark, state_home):
    """Base model v1 from the oldest 80% of events (small and quick: rank 10, 6 iterations)."""
    store = ModelStore(state_home / "stream-models")
    opts = TrainOptions(default_spec(BUNDLED_DATA, split_at=SPLIT, with_event_log=False),
                        Params(rank=10, iters=6), RankingParams(rank=10, iters=6))  # fmt: skip
    res = run_training(spark, opts, store)
    return store, store.load(res["version"])


@pytest.fixture(scope="module")
def history(base_model):
    """Raw history events of the base model (overrides the suite's `history`: this module streams
    on top of a model trained on the oldest 80%)."""
    _, model = base_model
    return load_history(model.meta.history)


# The bundled history spans decades of event time and these tests check `trending` exactly over
# all of it (the session's CLI setting, STREAMREC_STREAM_KEEP_TRENDING, for configs built here).
KEEP_ALL = Retention(trending_s=36_500 * DAY)


def make_cfg(tmp: Path, kafka: str, topic: str, model_root: Path, **kw) -> StreamConfig:
    return StreamConfig(
        bootstrap=kafka, sink_url=kw.pop("sink_url", f"sqlite:///{tmp / 'sink.db'}"), state_dir=tmp,
        event_log_dir=tmp / "eventlog", model_root=model_root, data=BUNDLED_DATA, topic=topic,
        available_now=kw.pop("available_now", True), trigger_s=0.5, quiet=True,
        retention=kw.pop("retention", KEEP_ALL), **kw,
    )  # fmt: skip


def test_scenario_end_to_end_aggregates_vectors_event_log(spark, kafka, topic, tmp_path, base_model,
                                                          history, ratings, movies):  # fmt: skip
    _, model = base_model
    live = window(ratings, split_at=SPLIT, limit=1500)
    assert replay(live, kafka, topic, progress=False).confirmed == 1500
    # The cluster's way of aggregating (the other stream tests take local mode's, the driver).
    cfg = make_cfg(tmp_path, kafka, topic, model.path.parent, aggregation="executors")
    res = run_stream(spark, cfg)
    assert res["bootstrapped_history"] and res["dead_letters"] == 0
    assert res["history_events_loaded"] == len(history)
    all_events = pd.concat([history, live], ignore_index=True)
    assert_aggregates_exact(cfg.sink_url, all_events, movies, cfg.window)
    vecs = assert_vectors_match_fold_in(cfg.sink_url, model, all_events, expect_users=set(live.user_id))
    new_users = set(live.user_id) - set(history.user_id)
    assert new_users and new_users <= set(vecs.user_id)  # cold start: new users got vectors

    log = read_event_log(cfg.event_log_dir)
    assert count_events(cfg.event_log_dir) == len(log) == len(live)
    key = ["user_id", "movie_id", "timestamp"]
    assert (
        log.sort_values(key)
        .reset_index(drop=True)
        .equals(live.astype(log.dtypes.to_dict()).sort_values(key).reset_index(drop=True))
    )
    metrics = table(cfg.sink_url, "SELECT query, input_rows, latency_p95_ms FROM stream_metrics",
                    ["query", "rows", "p95"])  # fmt: skip
    for q in ("aggregates", "foldin"):
        assert metrics[metrics["query"] == q]["rows"].sum() == 1500
    assert (metrics[metrics["query"] == "aggregates"]["p95"] > 0).all()

    # A second run over the same checkpoint is a no-op: nothing double counts.
    run_stream(spark, cfg)
    assert_aggregates_exact(cfg.sink_url, all_events, movies, cfg.window)


@pytest.mark.parametrize("sink", ["sqlite", "postgresql"])
def test_bad_records_go_to_dead_letters_and_good_ones_are_all_counted(spark, kafka, topic, tmp_path, sink,
                                                                      request):  # fmt: skip
    ensure_topic(kafka, topic, partitions=1)
    bad = {
        b"not json": "not JSON",
        b"[1, 2]": "not a JSON object",
        b'{"user_id": 1, "movie_id": 2, "rating": 4.0}': "missing field timestamp",
        b'{"user_id": "x", "movie_id": 2, "rating": 4.0, "timestamp": 1500000000}':
            "user_id is not an integer",
        b'{"user_id": 1, "movie_id": 2, "rating": 9.5, "timestamp": 1500000000}':
            "rating outside 0.5..5.0 in steps of 0.5",
        b'{"user_id": 1, "movie_id": 99999999999, "rating": 3.0, "timestamp": 1500000000}': "id out of range",
        b'{"user_id": 1, "movie_id": 2, "rating": 3.0, "timestamp": 5}': "timestamp out of range",
        # Bytes that are not UTF-8 once stopped the stream for good (Arrow refused the batch on
        # every restart); a raw NUL did the same on PostgreSQL. Now each is one dead letter.
        b"\x80\x81\xfe\xff random bytes": "not UTF-8",
        '{"user_id": 1, "movie_id": 2, "rating": 4.0, "timestamp": 1500000000}'.encode("utf-16"): "not UTF-8",
        b'{"user_id": 1, "movie_id": 2, "rating": 4.0, "timestamp": 1500000000, "note": "\xff"}': "not UTF-8",
        b'{"user_id": 1, "movie_id": 2, "rating": 4.0, "timestamp": 15000\x000000}': "not JSON",
        b'{"user_id": 1, "movie_id": 2, "rating": 4.0, "timestamp": 1500000000, "n": "a\x00b"}': "not JSON",
    }  # fmt: skip
    assert {raw: validate(raw)[1] for raw in bad} == bad  # the reference validator agrees
    good = [(u, 1 + u % 5, 0.5 * (1 + u % 10), 1_500_000_000 + u) for u in range(1, 71)]
    bad_raws = list(bad)
    with producer(kafka) as p:
        for i, event in enumerate(good):  # a bad record after every 5th good one
            k, v = encode(*event)
            p.send(topic, key=k, value=v)
            if i % 5 == 4 and bad_raws:
                p.send(topic, value=bad_raws.pop())
        p.flush()
    assert not bad_raws
    url = fresh_postgres_db(request.getfixturevalue("postgres_url")) if sink == "postgresql" else None
    cfg = make_cfg(tmp_path, kafka, topic, tmp_path / "no-models", **({"sink_url": url} if url else {}))
    run_stream(spark, cfg)  # no model yet: the fold-in only keeps state
    dead = table(cfg.sink_url, "SELECT kafka_offset, raw_value, reason, raw_base64 FROM dead_letters",
                 ["o", "raw", "reason", "b64"])  # fmt: skip
    assert len(dead) == len(bad)
    assert (
        dict(zip(dead["b64"].map(base64.b64decode), dead["reason"], strict=True)) == bad
    )  # exact bytes kept
    assert "\x00" not in "".join(dead["raw"])  # the text copy is safe for every sink
    hist = table(cfg.sink_url, "SELECT SUM(n_ratings) FROM rating_histogram", ["n"])
    assert int(hist["n"].iloc[0]) == len(good)
    vectors = table(cfg.sink_url, "SELECT COUNT(*) FROM user_vectors", ["n"])
    assert int(vectors["n"].iloc[0]) == 0  # no model published: the processor only keeps state


def _wait_for(sink_url: str, query: str, rows: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            got = table(sink_url, "SELECT COALESCE(SUM(input_rows), 0) FROM stream_metrics WHERE query = :q",
                        ["n"], {"q": query})  # fmt: skip
            if int(got["n"].iloc[0]) >= rows:
                return
        except sa.exc.OperationalError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{query} did not process {rows} rows in {timeout}s")


def _until(condition, log_path: Path, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; stream log: {log_path.read_text()[-2000:]}")
        time.sleep(0.2)


def _publish_perturbed_copy(store: ModelStore, model) -> str:
    """A new model version: the same model with both models' item factors scaled (different, valid)."""
    staged = store.staging_dir()
    items = dataclasses.replace(model.items, factors=model.items.factors * 1.5)
    write_npz(staged / "factors.npz", items, model.user_ids, model.user_factors, model.user_bias,
              model.ranking.factors * 1.5, model.rank_user_factors, model.user_support)  # fmt: skip
    meta = {k: v for k, v in model.meta.to_dict().items() if k not in ("version", "files", "format")}
    return store.publish(staged, meta)


def test_the_trigger_polling_delay_and_checkpoint_files_reach_both_queries_when_they_start(
    spark, kafka, topic, tmp_path
):
    """Spark reads spark.sql.streaming.pollingDelay once, when a query starts (a field of its
    StreamExecution): the stream sets it before starting its queries; later changes are not seen."""
    ensure_topic(kafka, topic)
    cfg = dataclasses.replace(make_cfg(tmp_path, kafka, topic, tmp_path / "no-models", available_now=False),
                              trigger_s=0.0, polling_delay_s=0.25)  # fmt: skip
    stop = threading.Event()
    thread = threading.Thread(target=run_stream, args=(spark, cfg, stop), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            running = {q.name: q._jsq.streamingQuery() for q in spark.streams.active}
            if {"aggregates", "foldin"} <= set(running):
                break
            time.sleep(0.2)
        spark.conf.set("spark.sql.streaming.pollingDelay", "10ms")  # too late for running queries
        assert {n: running[n].pollingDelayMs() for n in ("aggregates", "foldin")} == {
            "aggregates": 250, "foldin": 250}  # fmt: skip
        assert {n: running[n].trigger().intervalMs() for n in ("aggregates", "foldin")} == {
            "aggregates": 0, "foldin": 0}  # fmt: skip
        # Their offset and commit logs are written through the FileSystem API: the FileContext
        # default forks `readlink`/`chmod` per file on a local path (streamrec.spark).
        managers = {log.fileManager().getClass().getName()
                    for q in running.values() for log in (q.offsetLog(), q.commitLog())}  # fmt: skip
        assert managers == {CHECKPOINT_FILE_MANAGER}
    finally:
        stop.set()
        thread.join(120)


def test_model_swap_mid_stream_tags_and_matches_the_new_factors(spark, kafka, topic, tmp_path, base_model,
                                                                history, ratings):  # fmt: skip
    _, model = base_model
    store = ModelStore(tmp_path / "models")
    store.root.mkdir()
    shutil.copytree(model.path, store.root / model.version)
    store.set_current(model.version)
    live = window(ratings, split_at=SPLIT, limit=1200)
    first, second = live.iloc[:600], live.iloc[600:]
    cfg = make_cfg(tmp_path, kafka, topic, store.root, available_now=False)
    ensure_topic(kafka, topic)
    stop = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            run_stream(spark, cfg, stop)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        replay(first, kafka, topic, progress=False)
        _wait_for(cfg.sink_url, "foldin", len(first))
        v2 = _publish_perturbed_copy(store, model)
        replay(second, kafka, topic, progress=False)
        _wait_for(cfg.sink_url, "foldin", len(live))
    finally:
        stop.set()
        thread.join(120)
    assert not errors, errors
    new_model = store.load(v2)
    all_events = pd.concat([history, live], ignore_index=True)
    assert_vectors_match_fold_in(cfg.sink_url, new_model, all_events, expect_users=set(second.user_id))
    old = table(cfg.sink_url, "SELECT user_id FROM user_vectors WHERE model_version = :v", ["u"],
                {"v": model.version})  # fmt: skip
    assert set(old["u"]) == set(first.user_id) - set(second.user_id)
    # Item fold-in (on by default): a movie streamed before the swap that v2 still does not serve
    # and nobody rated since was re-solved at the swap from its raters' v2 user factors.
    items = table(cfg.sink_url, "SELECT movie_id, model_version, source FROM item_vectors",
                  ["movie_id", "version", "source"])  # fmt: skip
    pos, known = new_model.items.rows(first["movie_id"].to_numpy())
    served = known.copy()
    served[known] = new_model.items.servable[pos[known]]
    trained_rater = np.isin(first["user_id"].to_numpy(), new_model.user_ids)
    expect = set(first["movie_id"][~served & trained_rater]) - set(second["movie_id"])
    resolved = set(items["movie_id"][(items["version"] == v2) & (items["source"] == "stream")])
    assert expect and expect <= resolved, sorted(expect - resolved)[:10]


@pytest.mark.faults
def test_sigkill_five_times_during_a_paced_replay_loses_nothing(spark, kafka, topic, tmp_path, base_model,
                                                                 history, ratings, movies):  # fmt: skip
    """The stream process is SIGKILLed 5 times at seeded random points (during start-up, right
    after a committed batch, or mid-batch) while a paced replay is producing; a final run then
    finds every aggregate, vector and event-log row exact."""
    _, model = base_model
    home = tmp_path / "home"
    (home / "models").mkdir(parents=True)
    shutil.copytree(model.path, home / "models" / model.version)
    ModelStore(home / "models").set_current(model.version)
    live = window(ratings, split_at=SPLIT, limit=4000)
    ensure_topic(kafka, topic)
    env = {**os.environ, "STREAMREC_HOME": str(home), "STREAMREC_KAFKA_BOOTSTRAP": kafka,
           "STREAMREC_STREAM_KEEP_TRENDING": "36500d",  # decades of history, trending checked exactly
           "STREAMREC_SPARK_DRIVER_MEMORY": "1g", "PYTHONPATH": str(PROJECT_ROOT)}  # fmt: skip
    log_path = tmp_path / "stream.log"
    sink_url = f"sqlite:///{home / 'streamrec.db'}"
    data_batches = "SELECT COUNT(*) FROM stream_batches WHERE query = 'aggregates' AND batch_id >= 0"

    def committed(sql: str) -> int:
        try:
            return int(table(sink_url, sql, ["n"])["n"].iloc[0])
        except Exception:  # the DB or its tables do not exist yet
            return 0

    rng = random.Random(2026)
    producer_thread = threading.Thread(
        target=replay, args=(live, kafka, topic), kwargs={"rate": 25, "progress": False}, daemon=True
    )
    kills = []
    for attempt in range(5):
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamrec.cli", "stream", "--topic", topic, "--trigger", "500ms",
             "--item-foldin"],
            env=env, stdout=open(log_path, "a"), stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            if attempt == 0:
                producer_thread.start()
            point = rng.choice(["start-up", "after a batch", "mid-batch"])
            if point == "start-up":
                time.sleep(rng.uniform(1.0, 6.0))
            else:
                seen = committed(data_batches)
                # Once the replay is over no batch may come: on a loaded machine a slow start can
                # outlast it, and that kill then lands on an idle stream.
                _until(lambda: committed(data_batches) > seen or not producer_thread.is_alive(),  # noqa: B023
                       log_path)  # fmt: skip
                if committed(data_batches) == seen:
                    point = "after the replay"
                time.sleep(0 if point == "after a batch" else rng.uniform(0.1, 0.6))
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
        kills.append((point, committed(data_batches)))
    producer_thread.join(120)
    assert not producer_thread.is_alive()
    assert sum(p in ("after a batch", "mid-batch") for p, _ in kills) >= 2, kills  # mid-stream kills too
    cfg = StreamConfig(bootstrap=kafka, sink_url=sink_url, state_dir=home, event_log_dir=home / "eventlog",
                       model_root=home / "models", data=BUNDLED_DATA, topic=topic, available_now=True,
                       quiet=True, item_foldin=True, retention=KEEP_ALL)  # fmt: skip
    run_stream(spark, cfg)
    all_events = pd.concat([history, live], ignore_index=True)
    assert_aggregates_exact(sink_url, all_events, movies, cfg.window)
    assert_vectors_match_fold_in(sink_url, model, all_events, expect_users=set(live.user_id))
    assert len(assert_item_vectors_counted(sink_url, model, history, live)) > 0
    files = committed_files(cfg.event_log_dir)
    log = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    assert len(log) == len(live)
    assert not log.duplicated(["partition", "offset"]).any()
    batches = table(sink_url, "SELECT query, batch_id FROM stream_batches", ["q", "b"])
    assert not batches.duplicated().any()


def test_postgres_sink_passes_the_same_aggregate_checks(spark, kafka, topic, tmp_path, base_model, history,
                                                        ratings, movies, postgres_url):  # fmt: skip
    _, model = base_model
    live = window(ratings, split_at=SPLIT, limit=800)
    replay(live, kafka, topic, progress=False)
    cfg = make_cfg(tmp_path, kafka, topic, model.path.parent, sink_url=postgres_url)
    run_stream(spark, cfg)
    all_events = pd.concat([history, live], ignore_index=True)
    assert_aggregates_exact(postgres_url, all_events, movies, cfg.window)
    assert_vectors_match_fold_in(postgres_url, model, all_events, expect_users=set(live.user_id))


# -- faults ------------------------------------------------------------------------------------


@pytest.mark.faults
@pytest.mark.parametrize("sink", ["sqlite", "postgresql"])
def test_fuzzed_records_never_stop_the_stream_and_each_gets_its_reason(spark, kafka, topic, tmp_path, sink,
                                                                       request):  # fmt: skip
    """10,000 records of every bad kind in the shared corpus, interleaved with 2,000 valid events:
    the stream stays up, every bad record is one dead letter with its reason and exact bytes,
    every valid record (the corpus's tricky valid kinds too) is counted exactly once."""
    ensure_topic(kafka, topic, partitions=3)
    fuzz = list(corpus(10_000, seed=3))
    good = [encode(u, 1 + u % 50, 0.5 * (1 + u % 10), 1_500_000_000 + u)[1] for u in range(1, 2001)]
    records = [raw for _, raw, _ in fuzz] + good
    expected = [reason for _, _, reason in fuzz] + [None] * len(good)
    order = list(range(len(records)))
    random.Random(1).shuffle(order)
    with producer(kafka) as p:  # one partition per record's position, so offsets identify records
        sent = {}
        for i in order:
            meta = p.send(topic, value=records[i], partition=i % 3)
            sent[i] = meta
        p.flush()
        where = {(m.get().partition, m.get().offset): i for i, m in sent.items()}
    url = fresh_postgres_db(request.getfixturevalue("postgres_url")) if sink == "postgresql" else None
    cfg = make_cfg(tmp_path, kafka, topic, tmp_path / "no-models", **({"sink_url": url} if url else {}))
    run_stream(spark, cfg)
    dead = table(cfg.sink_url, "SELECT kafka_partition, kafka_offset, reason, raw_base64 FROM dead_letters",
                 ["p", "o", "reason", "b64"])  # fmt: skip
    bad = [i for i, r in enumerate(expected) if r is not None]
    assert len(dead) == len(bad) and len({k.name for k in BAD_KINDS}) >= 25
    wrong = [(fuzz[i][0], r) for p, o, r in zip(dead["p"], dead["o"], dead["reason"], strict=True)
             if not reason_matches(expected[i := where[(int(p), int(o))]], r)]  # fmt: skip
    assert not wrong, wrong[:5]
    assert all(base64.b64decode(b) == records[where[(int(p), int(o))]]
               for p, o, b in zip(dead["p"], dead["o"], dead["b64"], strict=True))  # fmt: skip
    valid_events = [validate(records[i])[0] for i, r in enumerate(expected) if r is None]
    assert all(valid_events)
    hist = table(cfg.sink_url, "SELECT rating, n_ratings FROM rating_histogram", ["r", "n"])
    want = pd.Series([e["rating"] for e in valid_events]).value_counts()
    assert dict(zip(hist["r"].astype(float), hist["n"], strict=True)) == want.to_dict()
    users = table(cfg.sink_url, "SELECT SUM(n_ratings), COUNT(*) FROM user_activity", ["n", "users"])
    assert int(users["n"].iloc[0]) == len(valid_events)
    assert int(users["users"].iloc[0]) == len({e["user_id"] for e in valid_events})


@pytest.mark.faults
def test_a_full_sink_disk_is_retried_and_nothing_is_half_written(spark, kafka, topic, tmp_path, caplog):
    """The sink's SQLite file on a 4 MB tmpfs that is then filled up: batches fail with "database
    or disk is full", are rolled back and retried with one line each; once space is freed the
    same run goes on and every aggregate is exact."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], check=True)
    try:
        ensure_topic(kafka, topic, partitions=1)
        events = [(u, 1 + u % 40, 0.5 * (1 + u % 10), 1_500_000_000 + u) for u in range(1, 3001)]
        url = f"sqlite:///{disk / 'sink.db'}"
        cfg = make_cfg(tmp_path, kafka, topic, tmp_path / "no-models", sink_url=url, sink_retry_s=120)
        with producer(kafka) as p:
            for e in events[:500]:
                p.send(topic, key=encode(*e)[0], value=encode(*e)[1])
            p.flush()
        run_stream(spark, cfg)  # creates the DB and applies the first 500
        filler = disk / "filler"
        with open(filler, "wb") as f:  # take every free byte
            with contextlib.suppress(OSError):
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
        with producer(kafka) as p:
            for e in events[500:]:
                p.send(topic, key=encode(*e)[0], value=encode(*e)[1])
            p.flush()
        done = threading.Event()
        runner = threading.Thread(target=lambda: (run_stream(spark, cfg), done.set()), daemon=True)
        runner.start()
        deadline = time.monotonic() + 60
        while "sink unavailable" not in (seen := caplog.text) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert "database or disk is full" in seen and not done.is_set()
        filler.unlink()  # space again: the retry goes through
        runner.join(180)
        assert done.is_set(), "the stream did not finish after the disk was freed"
        hist = table(cfg.sink_url, "SELECT SUM(n_ratings) FROM rating_histogram", ["n"])
        assert int(hist["n"].iloc[0]) == len(events)  # each event once: no half batch, no double
        per_user = table(cfg.sink_url, "SELECT COUNT(*), SUM(n_ratings) FROM user_activity", ["u", "n"])
        assert (int(per_user["u"].iloc[0]), int(per_user["n"].iloc[0])) == (len(events), len(events))
        assert count_events(cfg.event_log_dir) == len(events)
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def send(kafka: str, topic: str, events: list[tuple[int, int, float, int]]) -> None:
    """Produce rating events (user, movie, rating, timestamp), creating the topic when missing."""
    ensure_topic(kafka, topic)
    with producer(kafka) as p:
        for event in events:
            key, value = encode(*event)
            p.send(topic, value=value, key=key)
        p.flush()


def test_a_new_movie_streams_in_reaches_a_list_and_has_similar_movies(
    spark, kafka, topic, tmp_path, base_model, history
):
    """Item fold-in end to end: a movie the model has never seen gets its vectors from its first
    raters (exactly the item solve against their vectors), then ranks in a later user's list
    (the stream's list equals the scorer's over the model plus the streamed movies), and
    `similar` works for it."""
    from serving.recommend import similar_exact
    from streamrec.item_foldin import fold_in_item
    from streamrec.item_overlay import ItemOverlay, item_side_of, with_overlay

    _, model = base_model
    ratings = latest_per_pair(history)
    new_movie = 2_100_000_000
    # The anchor: the trained user with the most ratings; the movie's raters: the 12 trained
    # users nearest to them in the ranking model's space, each a 5 (a strong "yes").
    anchor = int(ratings["user_id"].value_counts().index[0])
    x = model.rank_user_factors / np.maximum(
        np.linalg.norm(model.rank_user_factors, axis=1, keepdims=True), 1e-12
    )
    a = int(np.searchsorted(model.user_ids, anchor))
    raters = [int(model.user_ids[j]) for j in np.argsort(-(x @ x[a])) if j != a][:12]
    ts = int(history["timestamp"].max()) + 100
    events = [(u, new_movie, 5.0, ts + i) for i, u in enumerate(raters)]
    # A movie rated once by a user with nothing the model knows: no usable rater, no vector yet.
    events.append((2_000_000_001, new_movie + 1, 4.0, ts + 50))
    send(kafka, topic, events)
    cfg = make_cfg(tmp_path, kafka, topic, model.path.parent, item_foldin=True)
    run_stream(spark, cfg)
    columns = ["movie_id", "model_version", "n_ratings", "source", "vector", "bias"]
    select = f"SELECT {', '.join(columns)} FROM item_vectors"
    rows = table(cfg.sink_url, f"{select} WHERE source = 'stream'", columns)
    assert rows["movie_id"].tolist() == [new_movie]
    row = rows.iloc[0]
    assert row.model_version == model.version and row.n_ratings == 12
    pos = np.searchsorted(model.user_ids, raters)
    want = fold_in_item(item_side_of(model), np.full(12, 5.0), model.rank_user_factors[pos],
                        model.user_factors[pos], model.user_bias[pos])  # fmt: skip
    got = json.loads(row.vector)
    np.testing.assert_allclose(got["ranking"], want.rank_vector, atol=1e-4)
    np.testing.assert_allclose(got["explicit"], want.vector, atol=1e-4)
    assert row.bias == pytest.approx(want.bias)

    # A new user who rated what the anchor rated (so folds in to the anchor's vector).
    probe = 2_000_000_002
    mine = ratings[ratings["user_id"] == anchor]
    pairs = zip(mine["movie_id"], mine["rating"], strict=True)
    send(kafka, topic, [(probe, int(m), float(r), ts + 100 + i) for i, (m, r) in enumerate(pairs)])
    run_stream(spark, cfg)
    stored = table(cfg.sink_url, select, columns).to_dict("records")
    laid = with_overlay(
        model, ItemOverlay.of_rows(model.version, stored, model.ranking.rank, model.items.rank)
    )
    listed = table(cfg.sink_url, "SELECT movie_id FROM user_recommendations WHERE user_id = :u ORDER BY rank",
                   ["movie_id"], {"u": probe})["movie_id"].tolist()  # fmt: skip
    users = laid.scorer.fold_in_one(mine["movie_id"].to_numpy(), mine["rating"].to_numpy(), probe)
    expected = laid.scorer.top_k(users, len(listed), [mine["movie_id"].to_numpy()])[0][0].tolist()
    assert listed == expected
    assert new_movie in listed, f"the streamed movie is not in the probe's list {listed}"

    ids, score = similar_exact(laid, new_movie, 5, "cosine", None)
    assert len(ids) == 5 and new_movie not in ids.tolist() and np.all(np.diff(score) <= 1e-12)

    # The serving paths (API, `recommend`, `similar`) lay the same vectors over the model.
    from serving.service import ServeConfig, Service

    svc = Service(ServeConfig(model_root=model.path.parent, sink_url=cfg.sink_url,
                              event_log_dir=cfg.event_log_dir, checkpoint_dir=tmp_path / "checkpoints",
                              data=BUNDLED_DATA))  # fmt: skip
    assert [i["movie_id"] for i in svc.similar(new_movie, "cosine", 5, None)["items"]] == ids.tolist()
    served = svc.recommend_anonymous(
        list(zip(mine["movie_id"], mine["rating"], strict=True)), len(listed), None
    )
    assert [i["movie_id"] for i in served["items"]] == listed


def test_live_eval_counts_equal_a_pandas_replay_of_the_same_events_against_the_same_lists(
    spark, kafka, topic, tmp_path, base_model, history, ratings
):
    """Every live event is scored against the list its user was served before the batch: the
    model's stored vector for a user it trained on, popularity for a new user (one batch here);
    the running popularity baseline on the same events."""
    from streaming.live_eval import POPULAR_TOP, LiveCounts, score_events

    _, model = base_model
    live = window(ratings, split_at=SPLIT, limit=600)
    replay(live, kafka, topic, progress=False)
    cfg = make_cfg(tmp_path, kafka, topic, model.path.parent)
    run_stream(spark, cfg)
    sums = "SUM(events), SUM(hits), SUM(rank_sum), SUM(pop_hits)"
    sql = f"SELECT model_version, source, {sums} FROM live_eval GROUP BY model_version, source"
    got = table(cfg.sink_url, sql,
                ["version", "source", "events", "hits", "ranks", "pop"]).set_index("source")  # fmt: skip
    assert set(got["version"]) == {model.version}
    known = latest_per_pair(history)

    def chart(events: pd.DataFrame) -> np.ndarray:  # movie_stats order: count desc, then id
        n = events.groupby("movie_id").size().reset_index(name="n")
        return n.sort_values(["n", "movie_id"], ascending=[False, True])["movie_id"].to_numpy()[:POPULAR_TOP]

    # The top chart the batch saw: the history's (bootstrap) or, if the aggregates query's batch
    # committed first, the one with this batch's events too (two queries, no order between them).
    charts = [chart(history), chart(pd.concat([history, live]))]
    want: dict[str, list[LiveCounts]] = {}
    for user, mine in live.groupby("user_id"):
        rated = known[known["user_id"] == user]["movie_id"].to_numpy()
        stored = model.stored_users(int(user))
        users, source = (
            (stored, "model") if stored is not None else (model.scorer.fold_in_one([], []), "popularity")
        )
        served = model.scorer.top_k(users, 10, [rated])[0][0]
        movies, ts = mine["movie_id"].to_numpy(), mine["timestamp"].to_numpy()
        counts = [score_events(served, c, rated, movies, ts, 10) for c in charts]
        totals = want.setdefault(source, [LiveCounts(), LiveCounts()])
        want[source] = [totals[0] + counts[0], totals[1] + counts[1]]
    assert set(got.index) == set(want) and got["hits"].sum() > 0
    for source, (a, b) in want.items():
        row = got.loc[source]
        assert (row.events, row.hits, row.ranks) == (a.events, a.hits, a.rank_sum), source
        assert row["pop"] in {a.pop_hits, b.pop_hits}, source


def test_a_candidate_is_shadow_scored_on_the_same_live_events_then_promoted_or_rejected(
    spark, kafka, topic, tmp_path, base_model, history, ratings
):
    from streaming.live_eval import POPULAR_TOP, score_paired

    _, model = base_model
    root = tmp_path / "models"
    root.mkdir()
    shutil.copytree(model.path, root / model.version)
    store = ModelStore(root)
    store.set_current(model.version)
    staged = store.staging_dir()  # the candidate: the same model with noisy ranking item factors
    noisy = model.ranking.factors + np.random.default_rng(7).normal(0, 0.1, model.ranking.factors.shape)
    write_npz(staged / "factors.npz", model.items, model.user_ids, model.user_factors, model.user_bias,
              noisy.astype(np.float32), model.rank_user_factors, model.user_support)  # fmt: skip
    meta = {k: v for k, v in model.meta.to_dict().items() if k not in ("version", "files", "format")}
    candidate = store.publish(staged, meta, make_current=False)
    store.set_candidate(candidate)
    live = window(ratings, split_at=SPLIT, limit=600)
    replay(live, kafka, topic, progress=False)
    cfg = make_cfg(tmp_path, kafka, topic, root)
    run_stream(spark, cfg)
    sums = "SUM(events), SUM(hits), SUM(only_this), SUM(only_ref)"
    sql = f"SELECT model_version, source, {sums} FROM live_eval GROUP BY model_version, source"
    got = table(cfg.sink_url, sql, ["version", "source", "events", "hits", "b", "c"])
    served = got[got["version"] == model.version]
    shadow = got[(got["version"] == candidate) & (got["source"] == "shadow")].iloc[0]
    assert shadow.events == served["events"].sum() > 0  # exactly the same events
    assert shadow.hits - shadow.b + shadow.c == served["hits"].sum()  # the pair adds up to CURRENT's hits

    cand = store.load(candidate)
    known = latest_per_pair(history)
    want = np.zeros(3, int)
    popular = model.scorer.items.ids[np.argsort(-model.scorer.prior, kind="stable")[:POPULAR_TOP]]
    for user, mine in live.groupby("user_id"):
        rated = known[known["user_id"] == user]["movie_id"].to_numpy()
        lists = []
        for m in (model, cand):
            users = m.stored_users(int(user)) or m.scorer.fold_in_one([], [])
            lists.append(m.scorer.top_k(users, 10, [rated])[0][0])
        p = score_paired(
            *lists, popular, rated, mine["movie_id"].to_numpy(), mine["timestamp"].to_numpy(), 10
        )
        want += [p.candidate.hits, p.only_candidate, p.only_current]
    assert [shadow.hits, shadow.b, shadow.c] == want.tolist() and shadow.b + shadow.c > 0

    store.promote(candidate)
    assert store.current_version() == candidate and store.candidate_version() is None
    store.set_candidate(model.version)
    assert store.candidate_version() == model.version and store.clear_candidate() == model.version
    assert store.candidate_version() is None and store.current_version() == candidate

"""Replay against the real local broker: payloads, order, windows, pacing, failures, lifecycle."""

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

import pytest

from producer.replay import replay
from streamrec.history import window
from streamrec.kafka_admin import ensure_topic
from streamrec.kafka_local import LocalKafka, free_port_pair
from streamrec.movielens import load_ratings
from streamrec.settings import BUNDLED_DATA
from tests.kafka_support import consume_all
from tests.store_support import current_model

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ratings():
    return load_ratings(BUNDLED_DATA)[0]


# A state directory of this module's own: no CURRENT model, so replay's consistency check (which
# refuses events the suite's trained model has seen) does not apply unless a test sets one up.
HOME = tempfile.mkdtemp(prefix="streamrec-replay-home-")


def cli(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "STREAMREC_HOME": HOME, **(env or {})}
    return subprocess.run([sys.executable, "-m", "streamrec.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)  # fmt: skip


def test_replay_defaults_to_what_current_was_not_trained_on(kafka, topic, ratings, tmp_path):
    version = current_model(tmp_path, split_at=0.8)
    env = {"STREAMREC_HOME": str(tmp_path)}
    done = cli("replay", "--limit", "50", "--topic", topic, "--bootstrap-servers", kafka, env=env)
    assert done.returncode == 0, done.stderr
    assert f"replaying what {version} was not trained on (it saw split-at 0.8 of the data)" in done.stdout
    sent = [json.loads(r.value) for r in consume_all(kafka, topic, 50)]
    live = window(ratings, split_at=0.8, limit=50)
    assert sorted(e["timestamp"] for e in sent) == sorted(live["timestamp"].tolist())
    # ... and an explicit window that reaches into CURRENT's history is refused before sending
    done = cli("replay", "--split-at", "0.5", "--topic", topic, "--bootstrap-servers", kafka, env=env)
    assert done.returncode == 1 and "are in the history v0001 was trained on (split-at 0.8" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    done = cli("replay", "--split-at", "0.5", "--limit", "10", "--allow-overlap", "--topic", topic,
               "--bootstrap-servers", kafka, env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_replay_after_a_model_trained_on_everything_is_refused(tmp_path):
    current_model(tmp_path)  # no split: trained on all of the data
    done = cli("replay", "--bootstrap-servers", "localhost:1", env={"STREAMREC_HOME": str(tmp_path)})
    assert done.returncode == 1 and "nothing is left to replay that it has not seen" in done.stderr
    assert "Kafka" not in done.stderr  # refused before contacting a broker


def test_replay_slice_round_trips_in_per_key_event_time_order(kafka, topic, ratings):
    done = cli("replay", "--limit", "3000", "--topic", topic, "--bootstrap-servers", kafka)
    assert done.returncode == 0, done.stderr
    assert "replayed 3,000 of 3,000 events" in done.stdout
    records = consume_all(kafka, topic, 3000)
    assert len(records) == 3000
    expected = window(ratings, limit=3000)
    got = [json.loads(r.value) for r in records]
    want = expected.to_dict("records")
    key = lambda e: (e["timestamp"], e["user_id"], e["movie_id"])  # noqa: E731
    assert sorted(got, key=key) == sorted(
        [{k: (float(v) if k == "rating" else int(v)) for k, v in e.items()} for e in want], key=key
    )
    per_key = defaultdict(list)
    for r in records:
        event = json.loads(r.value)
        assert r.key == str(event["user_id"]).encode()
        per_key[(r.partition, r.key)].append((r.offset, event["timestamp"]))
    for seq in per_key.values():
        stamps = [ts for _, ts in sorted(seq)]
        assert stamps == sorted(stamps)


def test_split_at_replays_exactly_the_live_part(kafka, topic, ratings):
    done = cli("replay", "--split-at", "0.995", "--topic", topic, "--bootstrap-servers", kafka)
    assert done.returncode == 0, done.stderr
    live = window(ratings, split_at=0.995)
    history = window(ratings, split_at=0.995, part="before")
    records = consume_all(kafka, topic, len(live))
    stamps = sorted(json.loads(r.value)["timestamp"] for r in records)
    assert stamps == sorted(live["timestamp"].tolist())
    assert min(stamps) >= history["timestamp"].max()
    assert len(live) + len(history) == len(ratings)


def test_since_until_select_the_window(kafka, topic, ratings):
    since, until = "2018-01-01", "2018-03-01"
    done = cli("replay", "--since", since, "--until", until, "--topic", topic,
               "--bootstrap-servers", kafka)  # fmt: skip
    assert done.returncode == 0, done.stderr
    lo, hi = 1_514_764_800, 1_519_862_400
    expected = ratings[(ratings.timestamp >= lo) & (ratings.timestamp < hi)]
    records = consume_all(kafka, topic, len(expected))
    assert len(records) == len(expected) > 0
    assert all(lo <= json.loads(r.value)["timestamp"] < hi for r in records)


def test_rate_paces_the_replay(kafka, topic, ratings):
    events = window(ratings, limit=1000)
    res = replay(events, kafka, topic, rate=500, progress=False)
    assert res.confirmed == 1000 and res.failed == 0
    assert 1.6 < res.seconds < 6.0  # generous band (a loaded CI machine): pacing, not speed


def test_speedup_divides_event_time_gaps(kafka, topic, ratings):
    events = window(ratings, limit=200)
    span = int(events.timestamp.iloc[-1] - events.timestamp.iloc[0])
    res = replay(events, kafka, topic, speedup=span / 1.5, progress=False)
    assert res.confirmed == 200
    assert 1.2 < res.seconds < 6.0


def test_loop_sends_the_selection_again_with_new_users_and_the_send_time(kafka, topic, ratings):
    """--loop: pass after pass of the selection (here the 5 newest events), each pass's users
    shifted by the stride, every event stamped with the time it was sent; --limit counts all."""
    before = int(time.time())
    done = cli("replay", "--loop", "--limit", "15", "--split-at", "0.99995", "--topic", topic,
               "--bootstrap-servers", kafka)  # fmt: skip
    assert done.returncode == 0, done.stderr
    live = window(ratings, split_at=0.99995)
    assert len(live) == 6 and "replayed 15 of 2.5 passes of 6 events" in done.stdout
    got = [json.loads(r.value) for r in consume_all(kafka, topic, 15)]
    stride = 1000  # the bundled data's largest user id is 610
    want = [(u + p * stride, m, r) for p in range(3) for u, m, r in
            zip(live.user_id, live.movie_id, live.rating, strict=True)][:15]  # fmt: skip
    assert sorted((e["user_id"], e["movie_id"], e["rating"]) for e in got) == sorted(want)
    assert all(before <= e["timestamp"] <= time.time() + 1 for e in got)


def test_unreachable_broker_fails_fast_with_a_clear_message(topic):
    start = time.monotonic()
    done = cli("replay", "--limit", "10", "--topic", topic, "--bootstrap-servers", "localhost:1")
    assert done.returncode != 0
    assert time.monotonic() - start < 30
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: Kafka broker not reachable at localhost:1")


def test_bad_flags_are_one_line_errors(kafka, topic):
    done = cli("replay", "--split-at", "2", "--topic", topic, "--bootstrap-servers", kafka)
    assert done.returncode != 0
    assert done.stderr.strip() == "error: Invalid value for '--split-at': 2.0 is not in the range 0<x<1."
    done = cli("replay", "--data", "/nonexistent", "--bootstrap-servers", kafka)
    assert done.returncode != 0 and "not a directory" in done.stderr
    assert "Traceback" not in done.stderr


def test_kafka_start_twice_is_harmless_and_stop_leaves_no_process(tmp_path):
    port = free_port_pair()
    env = {"STREAMREC_HOME": str(tmp_path), "STREAMREC_KAFKA_PORT": str(port)}
    first = cli("kafka", "start", env=env)
    assert first.returncode == 0, first.stderr
    assert f"started at localhost:{port}" in first.stdout
    pid = LocalKafka(port, state_dir=tmp_path).pid()
    second = cli("kafka", "start", env=env)
    assert second.returncode == 0 and "already running" in second.stdout
    assert LocalKafka(port, state_dir=tmp_path).pid() == pid
    assert cli("kafka", "status", env=env).returncode == 0
    stop = cli("kafka", "stop", env=env)
    assert stop.returncode == 0 and "stopped" in stop.stdout
    assert not os.path.exists(f"/proc/{pid}") or "Z" in open(f"/proc/{pid}/stat").read().split()[2]
    status = cli("kafka", "status", env=env)
    assert status.returncode == 1 and "not running" in status.stdout


def test_kafka_start_on_a_busy_port_is_a_clear_error(tmp_path, kafka):
    port = int(kafka.rsplit(":", 1)[1])
    env = {"STREAMREC_HOME": str(tmp_path), "STREAMREC_KAFKA_PORT": str(port)}
    done = cli("kafka", "start", env=env, timeout=30)
    assert done.returncode != 0
    assert f"port {port} is already in use" in done.stderr


def test_confirmed_counts_acknowledgements_even_when_a_send_fails_at_once(kafka, topic, ratings):
    # Records over the producer's size limit fail inside send(), before any delivery: the count
    # of confirmed events was then one too low (sent minus failures counted the failure twice).
    events = window(ratings, limit=50)
    res = replay(events, kafka, topic, progress=False, client="kafka-python", max_request_size=16)
    assert res.confirmed == 0 and res.failed == res.sent == 1
    assert "MessageSizeTooLarge" in res.error
    ok = replay(events, kafka, topic, progress=False, client="kafka-python")
    assert ok.confirmed == ok.sent == 50 and ok.failed == 0 and ok.error is None
    assert len(consume_all(kafka, topic, 50)) == 50  # exactly what was confirmed


@pytest.mark.parametrize("client", ["confluent", "kafka-python"])
def test_an_interrupted_replay_confirms_exactly_what_the_topic_holds(kafka, topic, ratings, client):
    """A SIGTERM mid-loop (what the soak sends): the replay stops between sends, flushes, and its
    confirmed count is the topic's record count, neither more nor less."""
    ensure_topic(kafka, topic, partitions=3)
    early = []  # a signal before replay took over would otherwise end pytest itself
    previous = signal.signal(signal.SIGTERM, lambda *_: early.append(True))
    timer = threading.Timer(1.5, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    try:
        res = replay(window(ratings, limit=200), kafka, topic, progress=False, client=client, loop=True,
                     rate=2000, limit=2000 * 20)  # fmt: skip
    finally:
        timer.join()
        signal.signal(signal.SIGTERM, previous)
    assert not early and res.interrupted and res.error is None
    assert 0 < res.confirmed == res.sent < 2000 * 20
    assert _records(kafka, topic) == res.confirmed


def _records(bootstrap: str, topic: str) -> int:
    """Records in the topic, from its partitions' offsets (no transactions: one offset a record)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        ends, starts = consumer.end_offsets(parts), consumer.beginning_offsets(parts)
        return sum(ends[p] - starts[p] for p in parts)
    finally:
        consumer.close()

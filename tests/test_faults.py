"""Faults outside the stream: a broker away for longer than the producer's delivery timeout,
`train` SIGKILLed at random points, and a model store whose disk is full. (The stream's own
faults, fuzzed records, kills and a full sink disk, are in test_streaming.py.) All marked
`faults`; docs/reliability.md tabulates what each one showed."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid

import pandas as pd
import pytest

from producer.replay import replay
from streamrec.errors import ModelStoreError
from streamrec.kafka_local import LocalKafka, free_port_pair
from streamrec.model_store import ModelStore
from streamrec.settings import PROJECT_ROOT
from tests.kafka_support import consume_all

pytestmark = [pytest.mark.integration, pytest.mark.faults]


OUTAGE_CONFIG = {  # a 4 s delivery timeout, in each client's own names
    "kafka-python": {
        "delivery_timeout_ms": 4000,
        "request_timeout_ms": 2000,
        "linger_ms": 5,
        "max_block_ms": 4000,
    },
    "confluent": {"delivery.timeout.ms": 4000, "request.timeout.ms": 2000, "linger.ms": 5},
}


@pytest.mark.parametrize("client", ["confluent", "kafka-python"])
def test_a_broker_outage_past_the_delivery_timeout_loses_and_duplicates_nothing(tmp_path, client):
    """A private broker stopped mid-replay for 3x the producer's delivery timeout, then started
    again: replay ends with a one-line error and exact counts; the topic holds every event the
    producer confirmed, exactly once, and only a prefix of each partition's sends."""
    broker = LocalKafka(free_port_pair(), state_dir=tmp_path / "kafka")
    broker.start()
    try:
        topic = f"t-{uuid.uuid4().hex[:8]}"
        n = 6000
        events = pd.DataFrame({"user_id": range(1, n + 1), "movie_id": 7, "rating": 4.0,
                               "timestamp": range(1_500_000_000, 1_500_000_000 + n)})  # fmt: skip
        result = {}

        def run():
            result["r"] = replay(events, broker.address, topic, rate=600, progress=False, client=client,
                                 **OUTAGE_CONFIG[client])  # fmt: skip

        thread = threading.Thread(target=run)
        thread.start()
        time.sleep(3)  # ~1,800 events in
        broker.stop()
        time.sleep(12)  # 3x the delivery timeout
        broker.start()
        thread.join(120)
        r = result["r"]
        print(f"\nbroker outage ({client}): {r}")
        assert r.error and "\n" not in r.error
        assert r.failed > 0 and r.confirmed + r.failed == r.sent and r.confirmed >= 1000
        records = consume_all(broker.address, topic, expected=r.sent, timeout=20)
        users = [json.loads(rec.value)["user_id"] for rec in records]
        assert len(users) == len(set(users))  # nothing twice
        assert r.confirmed <= len(users) <= r.sent  # every confirmed one is there
        print(f"broker outage: {len(users)} in the topic")
        by_partition: dict[int, list[int]] = {}
        for rec in sorted(records, key=lambda x: (x.partition, x.offset)):
            by_partition.setdefault(rec.partition, []).append(json.loads(rec.value)["user_id"])
        for part in by_partition.values():  # sends to a partition arrive as a gap-free prefix, in order
            assert part == sorted(part)
        # The CLI prints the same counts on one line (exit 1) when the broker is gone for good.
        broker.stop()
        env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
        done = subprocess.run([sys.executable, "-m", "streamrec.cli", "replay", "--topic", topic,
                               "--bootstrap-servers", broker.address, "--split-at", "0.999"],
                              capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
        assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    finally:
        broker.stop()


@pytest.fixture(scope="module")
def train_env(tmp_path_factory):
    home = tmp_path_factory.mktemp("train-kills")
    env = {**os.environ, "STREAMREC_HOME": str(home), "PYTHONPATH": str(PROJECT_ROOT),
           "STREAMREC_SPARK_DRIVER_MEMORY": "1g"}  # fmt: skip
    return home, env


TRAIN = [sys.executable, "-m", "streamrec.cli", "train", "--split-at", "0.5", "--no-event-log", "--rank", "8",
         "--iters", "5", "--ranking-rank", "8", "--ranking-iters", "5", "--force", "--json"]  # fmt: skip


def test_sigkill_of_train_at_five_random_points_never_leaves_a_partial_current(train_env):
    home, env = train_env
    store = ModelStore(home / "models")
    t0 = time.monotonic()
    first = subprocess.run(TRAIN, env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    full = time.monotonic() - t0
    current = store.current_version()
    rng = random.Random(11)
    points = sorted(rng.uniform(1.0, full) for _ in range(5))
    for at in points:
        proc = subprocess.Popen(TRAIN, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)  # fmt: skip
        time.sleep(at)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
        now = store.current_version()
        assert now is not None and store.check(now) is None  # CURRENT is always a complete version
        model = store.load(now)  # and serves: a fold-in from it works
        assert len(model.items.ids) > 1000
        if now != current:  # a kill after the publish: a complete newer version is fine
            current = now
    # The next run cleans what the killed ones left staged, and publishes.
    last = subprocess.run(TRAIN, env=env, capture_output=True, text=True, timeout=600)
    assert last.returncode == 0, last.stderr[-2000:]
    assert not list((home / "models").glob(".tmp-*")) and not list((home / "models").glob(".CURRENT.*"))
    assert store.check(store.current_version()) is None
    (home / "kill-points.json").write_text(json.dumps({"full_run_s": full, "kills_at_s": points}))


def test_a_full_model_store_disk_publishes_nothing_and_keeps_current(spark, trained, tmp_path):
    """The model store on a tmpfs with room for CURRENT but not for another version."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    from batch.publish import TrainOptions, default_spec
    from batch.publish import run_training as train
    from batch.train import Params, RankingParams
    from streamrec.settings import BUNDLED_DATA

    res, model = trained
    disk = tmp_path / "models"
    disk.mkdir()
    size_kb = sum(p.stat().st_size for p in model.path.rglob("*") if p.is_file()) // 1024 + 600
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(disk)], check=True)
    try:
        import shutil

        shutil.copytree(model.path, disk / model.version)
        store = ModelStore(disk)
        store.set_current(model.version)
        opts = TrainOptions(default_spec(BUNDLED_DATA, split_at=0.5, with_event_log=False),
                            Params(rank=8, iters=3), RankingParams(rank=8, iters=3), force=True)  # fmt: skip
        with pytest.raises(ModelStoreError, match="no space left") as err:
            train(spark, opts, store)
        assert "\n" not in str(err.value) and model.version in str(err.value)
        assert store.current_version() == model.version and store.check(model.version) is None
        assert store.versions() == [model.version]
        assert not [p.name for p in disk.iterdir() if p.name.startswith(".")]  # staging removed
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)

"""The unchanged commands on a local cluster: a Spark standalone master with 2 workers that cannot
see the driver's $STREAMREC_HOME (private mount namespaces), and a 3-broker KRaft Kafka
(replication 3, min.insync 2). One stream runs through the module; each test adds a slice of
events (and a fault) and checks the sink is still exact.

Every step is the `streamrec` CLI in a subprocess, as a user would run it after
`eval "$(streamrec cluster up)"`: a Python process holds one SparkContext, and the suite's own
is local.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from streaming.aggregates import WindowSpec
from streamrec.history import load_history, window
from streamrec.kafka_local import LocalKafka
from streamrec.model_store import ModelStore
from streamrec.movielens import load_ratings
from streamrec.settings import BUNDLED_DATA, PROJECT_ROOT
from tests.kafka_support import consume_all
from tests.streamcheck import assert_aggregates_exact, assert_vectors_match_fold_in, fresh_postgres_db, table

pytestmark = [pytest.mark.integration, pytest.mark.cluster]
CLI = [sys.executable, "-m", "streamrec.cli"]
SMALL = ["--rank", "10", "--iters", "6", "--ranking-iters", "6"]
TOPIC = "ratings"


def run(env: dict, *args: str, timeout: float = 600) -> str:
    done = subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"streamrec {' '.join(args)} failed:\n{done.stdout}\n{done.stderr[-3000:]}"
    return done.stdout


class Scenario:
    """The running cluster, the stream on it, and every event replayed so far."""

    def __init__(self, home: Path, env: dict, sink_url: str):
        self.home, self.env, self.sink_url = home, env, sink_url
        self.live = window(load_ratings(BUNDLED_DATA)[0], split_at=0.8)
        self.replayed: list[pd.DataFrame] = []
        self.stream: subprocess.Popen | None = None
        self.stream_log = home / "stream.err"

    @property
    def cluster_state(self) -> dict:
        return json.loads((self.home / "cluster" / "cluster.json").read_text())

    def start_stream(self) -> None:
        """Through spark-submit, as a user would hand the job to a cluster."""
        import pyspark

        from streamrec.spark import connector_jars

        submit = [str(Path(pyspark.__file__).parent / "bin" / "spark-submit"), "--master",
                  self.env["STREAMREC_SPARK_MASTER"], "--jars", ",".join(connector_jars()),
                  str(PROJECT_ROOT / "scripts" / "submit.py")]  # fmt: skip
        self.stream = subprocess.Popen([*submit, "stream", "--trigger", "500ms", "--quiet"],
                                       env=self.env | {"PYSPARK_PYTHON": sys.executable},
                                       stdout=subprocess.DEVNULL, stderr=open(self.stream_log, "ab"),
                                       start_new_session=True)  # fmt: skip

    def stop_stream(self) -> None:
        if self.stream and self.stream.poll() is None:
            os.killpg(self.stream.pid, signal.SIGTERM)
            self.stream.wait(120)

    def slice(self, start: int, stop: int) -> tuple[pd.DataFrame, list[str]]:
        """Live events [start, stop) cut at distinct timestamps, and the replay flags for them."""
        ts = self.live["timestamp"]
        lo = int(ts.iloc[start]) if start else None
        hi = int(ts.iloc[stop])
        part = self.live[((ts >= lo) if lo else True) & (ts < hi)]
        flags = ["--split-at", "0.8", "--until", str(hi), "--allow-overlap"]
        flags += ["--since", str(lo)] if lo else []
        return part, flags

    def replay(self, start: int, stop: int, *extra: str) -> tuple[pd.DataFrame, str]:
        part, flags = self.slice(start, stop)
        out = run(self.env, "replay", *flags, *extra)
        self.replayed.append(part)
        return part, out

    def events(self) -> pd.DataFrame:
        model = ModelStore(self.home / "models").load("v0001")  # the stream seeded v0001's history
        return pd.concat([load_history(model.meta.history), *self.replayed], ignore_index=True)

    def wait_counted(self, timeout: float = 240) -> None:
        """Until the aggregates count every replayed event and the fold-in saw every user."""
        want = sum(map(len, self.replayed))
        users = set(pd.concat(self.replayed)["user_id"])
        deadline = time.monotonic() + timeout
        while True:
            assert self.stream.poll() is None, f"the stream died: {self.stream_log.read_text()[-2000:]}"
            try:
                rows = table(self.sink_url, "SELECT query, SUM(input_rows) FROM stream_metrics "
                             "WHERE batch_id >= 0 GROUP BY query", ["query", "rows"])  # fmt: skip
                vecs = table(self.sink_url, "SELECT user_id FROM user_vectors", ["user_id"])
            except sa.exc.DBAPIError:  # the stream is still starting: no tables yet
                rows, vecs = pd.DataFrame({"query": [], "rows": []}), pd.DataFrame({"user_id": []})
            counted = rows.set_index("query")["rows"]
            done = all((counted.get(q) or 0) >= want for q in ("aggregates", "foldin"))
            if done and users <= set(vecs["user_id"]):
                return
            assert time.monotonic() < deadline, f"{want} events not processed: {counted.to_dict()}"
            time.sleep(1)

    def assert_exact(self, movies) -> None:
        assert_aggregates_exact(self.sink_url, self.events(), movies, WindowSpec())


@pytest.fixture(scope="module")
def scenario(tmp_path_factory, postgres_url, movies):
    home = tmp_path_factory.mktemp("cluster-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMREC_SPARK")}
    env |= {"STREAMREC_HOME": str(home), "STREAMREC_SPARK_DRIVER_MEMORY": "2g",
            "STREAMREC_STREAM_KEEP_TRENDING": "36500d",  # decades of history, trending checked exactly
            # Replay flushes each partition on its own: a batch may see one partition a day ahead of
            # another and count the laggards as late. The checks here are about losing nothing.
            "STREAMREC_STREAM_WATERMARK_DELAY": "3650d",
            "STREAMREC_SINK": fresh_postgres_db(postgres_url)}  # fmt: skip
    try:
        exports = run(env, "cluster", "up", "--worker-memory", "2g", timeout=300)
        env |= dict(re.findall(r"^export (\w+)=(\S+)$", exports, re.M))
        s = Scenario(home, env, env["STREAMREC_SINK"])
        assert s.cluster_state["workers"] and all(w["isolated"] for w in s.cluster_state["workers"])
        run(env, "train", "--split-at", "0.8", *SMALL)
        s.start_stream()
        yield s
        s.stop_stream()
    finally:
        subprocess.run([*CLI, "cluster", "down", "--purge"], env=env, capture_output=True, timeout=300)


def test_cluster_up_prints_exports_and_hides_the_drivers_home_from_workers(scenario):
    env = scenario.env
    assert env["STREAMREC_SPARK_MASTER"].startswith("spark://")
    assert len(env["STREAMREC_KAFKA_BOOTSTRAP"].split(",")) == 3
    assert Path(env["STREAMREC_SPARK_STORAGE"]).is_dir()
    for w in scenario.cluster_state["workers"]:  # what each worker's mount namespace shows
        seen = sorted(p.name for p in Path(f"/proc/{w['pid']}/root{scenario.home}").iterdir())
        assert seen == ["cluster"], seen
        assert (scenario.home / "models").exists()  # ... while the driver has its models there
    status = json.loads(run(env, "cluster", "status"))
    assert status["workers_alive"] == 2 and len(status["brokers_running"]) == 3


def test_end_to_end_with_hot_swap_on_other_jvms(scenario, movies):
    scenario.replay(0, 1500)
    scenario.wait_counted()
    scenario.assert_exact(movies)
    run(scenario.env, "retrain", "--once", "--force", *SMALL)
    deadline = time.monotonic() + 60
    shipped = "SELECT value FROM stream_state WHERE key = 'model_shipped'"
    while table(scenario.sink_url, shipped, ["v"])["v"].tolist() != ["v0002"]:
        assert time.monotonic() < deadline, "the stream did not ship the new model"
        time.sleep(0.5)
    part, _ = scenario.replay(1500, 2000)
    scenario.wait_counted()
    scenario.assert_exact(movies)
    # Executors on the workers (other JVMs, without the driver's disk) scored with v0002.
    v2 = ModelStore(scenario.home / "models").load("v0002")
    vecs = assert_vectors_match_fold_in(scenario.sink_url, v2, scenario.events())
    assert set(part["user_id"]) <= set(vecs["user_id"])


def test_a_killed_worker_is_recovered_and_stays_exact(scenario, movies):
    victim = scenario.cluster_state["workers"][0]["pid"]
    os.killpg(victim, signal.SIGKILL)  # the worker JVM and, with it, its executor
    scenario.replay(2000, 3000)
    scenario.wait_counted()  # tasks rescheduled on the surviving worker
    scenario.assert_exact(movies)
    run(scenario.env, "cluster", "up", timeout=300)  # brings the worker back
    assert json.loads(run(scenario.env, "cluster", "status"))["workers_alive"] == 2


def test_a_killed_broker_loses_no_acknowledged_event(scenario, movies):
    brokers = scenario.cluster_state["brokers"]
    victim = LocalKafka(brokers[1]["port"], scenario.home / "cluster", name=f"kafka-{brokers[1]['node']}")
    pid = victim.pid()
    part, flags = scenario.slice(3000, 6000)
    replay = subprocess.Popen([*CLI, "replay", *flags, "--rate", "1500"], env=scenario.env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    time.sleep(1.0)
    os.kill(pid, signal.SIGKILL)
    out, err = replay.communicate(timeout=300)
    assert replay.returncode == 0, err[-2000:]
    assert f"replayed {len(part):,} of {len(part):,}" in out  # every event acknowledged (acks=all, 2 ISR)
    scenario.replayed.append(part)
    # The topic holds every event ever replayed exactly once: none lost, none written twice.
    replayed = pd.concat(scenario.replayed, ignore_index=True)
    records = consume_all(scenario.env["STREAMREC_KAFKA_BOOTSTRAP"], TOPIC, len(replayed) + 1, timeout=20)
    got = pd.DataFrame([json.loads(r.value) for r in records])[["user_id", "movie_id", "rating", "timestamp"]]
    key = ["user_id", "movie_id", "timestamp"]
    assert len(got) == len(replayed) and not got.duplicated(key).any()
    want = replayed[["user_id", "movie_id", "rating", "timestamp"]].astype(got.dtypes.to_dict())
    assert got.sort_values(key).reset_index(drop=True).equals(want.sort_values(key).reset_index(drop=True))
    scenario.wait_counted()  # the stream went on with two brokers
    scenario.assert_exact(movies)
    run(scenario.env, "cluster", "up", timeout=300)
    assert len(json.loads(run(scenario.env, "cluster", "status"))["brokers_running"]) == 3

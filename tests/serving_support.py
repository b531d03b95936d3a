"""Helpers for the API tests: a sink DB filled by the stream's own writers, without Spark."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from streaming.aggregates import WindowSpec, apply_deltas, compute_deltas
from streaming.job import apply_user_outputs
from streaming.metrics import upsert_metrics
from streamrec.model_store import Model
from streamrec.sink import Sink, dead_letters, stream_metrics


def fill_sink(url: str, events: pd.DataFrame, movies: pd.DataFrame) -> None:
    """Aggregates of `events`, three batches of metrics per query and two dead letters, written
    with the same functions the stream's batch writers call."""
    m = movies.set_index("movie_id")
    sink = Sink(url)
    try:
        sink.create_schema()
        with sink.transaction():
            d = compute_deltas(events, m["genres"], None, WindowSpec())
            apply_deltas(sink, d, m["title"])
            now = time.time()
            for q in ("aggregates", "foldin"):
                for b in range(3):
                    upsert_metrics(sink, q, b, input_rows=100 * (b + 1), rows_per_s=500.0, duration_ms=200,
                                   latency_p50_ms=300.0 + b, latency_p95_ms=900.0 + b)  # fmt: skip
                    m = stream_metrics.c
                    sink.execute(sa.update(stream_metrics).where(m.query == q, m.batch_id == b)
                                 .values(at=now - 10 + b))  # fmt: skip
            sink.upsert(dead_letters, [
                {"topic": "ratings", "kafka_partition": 0, "kafka_offset": 5, "raw_value": "not json",
                 "reason": "not JSON", "batch_id": 1},
                {"topic": "ratings", "kafka_partition": 1, "kafka_offset": 9, "raw_value": "[1]",
                 "reason": "not a JSON object", "batch_id": 2},
            ], None)  # fmt: skip
    finally:
        sink.close()


def store_stream_list(
    url: str, model: Model, user_id: int, movie_ids: list[int], version: str | None = None
) -> None:
    """A fold-in output row for one user, as the stream's fold-in query writes it."""
    n = len(movie_ids)
    row = {
        "user_id": user_id,
        "model_version": version or model.version,
        "n_ratings": 3,
        "n_used": 3,
        "vector": None,
        "bias": None,
        "rec_movie_ids": movie_ids,
        "rec_scores": [1.0 - i / 100 for i in range(n)],
        "rec_predicted": [4.0] * n,
        "source": "fold-in",
        "min_kafka_ts": time.time(),
        "max_kafka_ts": time.time(),
        "new_events": 1,
    }
    sink = Sink(url)
    try:
        with sink.transaction():
            apply_user_outputs(sink, pd.DataFrame([row]), 10_000 + user_id, time.time())
    finally:
        sink.close()


def model_store_copy(home: Path, model: Model) -> Path:
    """A model store under `home` holding a copy of `model` as CURRENT (a test's swaps stay its own)."""
    import shutil

    from streamrec.model_store import ModelStore

    root = home / "models"
    root.mkdir()
    shutil.copytree(model.path, root / model.version)
    ModelStore(root).set_current(model.version)
    return root


class ServerThread:
    """A real uvicorn server for an app, on a free loopback port, in a background thread."""

    def __init__(self, app):
        import threading

        import uvicorn

        from streamrec.kafka_local import free_port_pair

        self.port = free_port_pair()
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


def chromium_path() -> str:
    """Debian's Chromium, installed by the project's script when missing."""
    import subprocess

    from streamrec.settings import PROJECT_ROOT

    done = subprocess.run([str(PROJECT_ROOT / "scripts" / "chromium.sh")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


# Headless flags for a machine with no network but loopback (no background fetches, no sandbox as root).
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]  # fmt: skip

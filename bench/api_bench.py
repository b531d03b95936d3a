"""The HTTP API under load and end to end.

- Requests/s and latency p50/p99 at 16 concurrent connections (wrk, a C load generator, so the
  client does not compete with the server for the GIL; both share the machine's 2 cores) for a
  known user's list (the stream's, from the sink) and for an anonymous fold-in of 20 ratings,
  with the SQLite and the PostgreSQL sink. The server is `streamrec serve`, one process.
- A brand-new user's time from `POST /events` to a personal list from the stream on
  `GET /recommendations/{id}` (continuous stream, 1 s trigger; median of 5).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
import numpy as np

from batch.publish import TrainOptions, default_spec, run_training
from bench.common import median, private_broker
from producer.replay import replay
from streaming.job import StreamConfig, run_stream
from streamrec.history import window
from streamrec.kafka_admin import ensure_topic
from streamrec.kafka_local import free_port_pair
from streamrec.model_store import ModelStore
from streamrec.movielens import load_ratings
from streamrec.settings import BUNDLED_DATA, PROJECT_ROOT

FRESH_LIST = "SELECT COUNT(*) FROM user_recommendations WHERE user_id = :u AND model_version = :v"
CONNECTIONS = 16
SECONDS = 15
LIVE_EVENTS = 5_000


def _wrk() -> str:
    path = shutil.which("wrk")
    if path is None and os.geteuid() == 0 and shutil.which("apt-get"):
        print("installing wrk from Debian packages (once)...", file=sys.stderr)
        subprocess.run(
            "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk",
            shell=True,
            check=True,
            capture_output=True,
        )
        path = shutil.which("wrk")
    if path is None:
        raise SystemExit("the API benchmark needs wrk (Debian: apt-get install wrk)")
    return path


def _lua_get(user_ids: list[int]) -> str:
    ids = ",".join(str(u) for u in user_ids)
    return (
        f"local ids = {{{ids}}}\nlocal i = 0\nrequest = function()\n  i = i + 1\n"
        f"  return wrk.format('GET', '/recommendations/' .. ids[(i % #ids) + 1] .. '?k=10')\nend\n"
    )


def _lua_post(bodies: list[str]) -> str:
    quoted = ",".join("[[" + b + "]]" for b in bodies)
    return (
        "wrk.method = 'POST'\nwrk.headers['Content-Type'] = 'application/json'\n"
        f"local bodies = {{{quoted}}}\nlocal i = 0\nrequest = function()\n  i = i + 1\n"
        "  return wrk.format(nil, '/recommendations', nil, bodies[(i % #bodies) + 1])\nend\n"
    )


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def load(url: str, script: str, tmp: Path) -> dict:
    """wrk for SECONDS at CONNECTIONS connections; requests/s, p50/p99 ms, non-2xx count."""
    lua = tmp / f"{uuid.uuid4().hex[:6]}.lua"
    lua.write_text(script)
    out = subprocess.run(
        [_wrk(), "-t1", f"-c{CONNECTIONS}", f"-d{SECONDS}s", "--latency", "-s", str(lua), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    dist = dict(re.findall(r"^\s+(\d+)%\s+(\S+)$", out, re.M))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50_ms": _ms(dist["50"]),
        "p99_ms": _ms(dist["99"]),
        "non_2xx": int(bad.group(1)) if bad else 0,
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
    }


class Server:
    """`streamrec serve` in its own process (as a user runs it)."""

    def __init__(self, home: Path, sink_url: str, bootstrap: str, topic: str):
        self.port = free_port_pair()
        env = {**os.environ, "STREAMREC_HOME": str(home)}
        cmd = [
            sys.executable,
            "-m",
            "streamrec.cli",
            "serve",
            "--port",
            str(self.port),
            "--sink",
            sink_url,
            "--bootstrap-servers",
            bootstrap,
            "--topic",
            topic,
        ]
        self.proc = subprocess.Popen(
            cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(
                    f"server did not start: {self.proc.stderr.read() if self.proc.stderr else ''}"
                )
            time.sleep(0.2)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def _postgres() -> tuple[str, Path]:
    root = Path(tempfile.mkdtemp(prefix="streamrec-pg-"))
    root.chmod(0o755)  # the server runs as the postgres account: it must reach its data directory
    data = root / "data"
    script = PROJECT_ROOT / "scripts" / "postgres.sh"
    out = subprocess.run(
        [str(script), "start", str(data), str(free_port_pair())], capture_output=True, text=True, check=True
    ).stdout
    return out.strip().splitlines()[-1], data


def _stream_config(home: Path, bootstrap: str, topic: str, sink_url: str, **kw) -> StreamConfig:
    """The stream over a benchmark home (the same layout `streamrec stream` uses)."""
    return StreamConfig(
        bootstrap=bootstrap,
        sink_url=sink_url,
        state_dir=home,
        event_log_dir=home / "eventlog",
        model_root=home / "models",
        data=BUNDLED_DATA,
        topic=topic,
        quiet=True,
        **kw,
    )


def _home(tmp: Path, name: str, model_dir: Path) -> Path:
    home = tmp / name
    (home / "models").mkdir(parents=True)
    shutil.copytree(model_dir, home / "models" / model_dir.name)
    ModelStore(home / "models").set_current(model_dir.name)
    return home


def new_user_latency(spark, bootstrap: str, tmp: Path, model_dir: Path, trials: int = 5) -> dict:
    """A brand-new user's first list, two ways in the same run, alternating on one stream: over
    HTTP (POST /events, then GET /recommendations until `source` is `stream`) and, as the baseline
    without the API, produced straight to Kafka with the project's producer and read from the sink."""
    from streamrec.events import encode
    from streamrec.kafka_admin import producer
    from streamrec.sink import open_sink

    home = _home(tmp, "e2e", model_dir)
    topic = f"e2e-{uuid.uuid4().hex[:6]}"
    ensure_topic(bootstrap, topic)
    sink_url = f"sqlite:///{home / 'streamrec.db'}"
    cfg = _stream_config(home, bootstrap, topic, sink_url, trigger_s=1.0)
    stop = threading.Event()
    stream = threading.Thread(target=run_stream, args=(spark, cfg, stop), daemon=True)
    stream.start()
    server = Server(home, sink_url, bootstrap, topic)
    times: dict[str, list[float]] = {"http": [], "direct": []}
    try:
        client = httpx.Client(base_url=server.url, timeout=10)
        warm = client.post(
            "/events",
            json={"user_id": 1_900_000_000, "movie_id": 1, "rating": 4.0, "timestamp": 1_537_000_000},
        )
        assert warm.status_code == 202, warm.text
        _poll(lambda: _source(client, 1_900_000_000), 180)  # the first batch carries the initial state
        version = client.get("/models").json()[0]["version"]
        rng = np.random.default_rng(5)
        with producer(bootstrap) as kafka, open_sink(sink_url) as sink:
            for t in range(2 * trials):
                user = 1_900_000_001 + t
                movies = rng.choice(
                    [1, 50, 110, 260, 296, 318, 356, 480, 527, 589, 593, 1196, 2571, 2959], 5, replace=False
                )
                events = [
                    {"user_id": user, "movie_id": int(m), "rating": 4.5, "timestamp": 1_537_000_000 + i}
                    for i, m in enumerate(movies)
                ]
                t0 = time.monotonic()
                if t % 2 == 0:
                    assert client.post("/events", json=events).status_code == 202
                    _poll(lambda u=user: _source(client, u) == "stream", 60)
                    times["http"].append(time.monotonic() - t0)
                else:
                    for e in events:
                        key, value = encode(**e)
                        kafka.send(topic, key=key, value=value)
                    kafka.flush()
                    _poll(lambda u=user: sink.query(FRESH_LIST, {"u": u, "v": version})[0][0], 60)
                    times["direct"].append(time.monotonic() - t0)
                time.sleep(1.5)
        client.close()
    finally:
        server.stop()
        stop.set()
        stream.join(timeout=90)
    return {
        "trials": trials,
        "seconds": [round(x, 3) for x in times["http"]],
        "median_s": round(median(times["http"]), 3),
        "direct_seconds": [round(x, 3) for x in times["direct"]],
        "direct_median_s": round(median(times["direct"]), 3),
    }


def _source(client: httpx.Client, user: int) -> str | None:
    return client.get(f"/recommendations/{user}").json().get("source")


def _poll(done, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if done():
            return
        time.sleep(0.05)
    raise RuntimeError(f"not done within {timeout}s")


def run(spark) -> dict:
    ratings, _ = load_ratings(BUNDLED_DATA)
    live = window(ratings, split_at=0.8, limit=LIVE_EVENTS)
    with private_broker() as (bootstrap, tmp):
        store = ModelStore(tmp / "models")
        res = run_training(
            spark, TrainOptions(default_spec(BUNDLED_DATA, split_at=0.8, with_event_log=False)), store
        )
        model_dir = store.root / res["version"]
        topic = f"api-{uuid.uuid4().hex[:6]}"
        ensure_topic(bootstrap, topic)
        replay(live, bootstrap, topic, progress=False)
        users = sorted(set(live.user_id.tolist()))
        popular = live.movie_id.value_counts().index[:200].to_numpy()
        rng = np.random.default_rng(11)
        bodies = [
            json.dumps(
                {
                    "ratings": [
                        {"movie_id": int(m), "rating": float(r)}
                        for m, r in zip(
                            rng.choice(popular, 20, replace=False),
                            rng.choice(np.arange(1, 11) / 2, 20),
                            strict=True,
                        )
                    ],
                    "k": 10,
                }
            )
            for _ in range(50)
        ]
        pg_url, pg_data = _postgres()
        out: dict = {"connections": CONNECTIONS, "seconds": SECONDS, "live_events": LIVE_EVENTS, "sinks": {}}
        try:
            for kind, url in (("sqlite", None), ("postgresql", pg_url)):
                home = _home(tmp, kind, model_dir)
                sink_url = url or f"sqlite:///{home / 'streamrec.db'}"
                cfg = _stream_config(home, bootstrap, topic, sink_url, available_now=True)
                run_stream(spark, cfg)  # the live users' lists land in the sink
                server = Server(home, sink_url, bootstrap, topic)
                try:
                    probe = httpx.get(f"{server.url}/recommendations/{users[0]}").json()
                    assert probe["source"] == "stream", probe["source"]
                    httpx.post(
                        f"{server.url}/recommendations",
                        content=bodies[0],
                        headers={"Content-Type": "application/json"},
                    ).raise_for_status()
                    known = load(server.url, _lua_get(users), tmp)
                    fold = load(server.url, _lua_post(bodies), tmp)
                finally:
                    server.stop()
                out["sinks"][kind] = {"known_user": known, "fold_in_20": fold}
                print(
                    f"api {kind}: known user {known['requests_per_s']:,.0f} req/s "
                    f"p99 {known['p99_ms']:.1f} ms; "
                    f"fold-in {fold['requests_per_s']:,.0f} req/s p99 {fold['p99_ms']:.1f} ms",
                    file=sys.stderr,
                )
        finally:
            subprocess.run(
                [str(PROJECT_ROOT / "scripts" / "postgres.sh"), "stop", str(pg_data)], capture_output=True
            )
        out["new_user"] = new_user_latency(spark, bootstrap, tmp, model_dir)
        print(
            f"api: new user's stream list {out['new_user']['median_s']} s after POST /events (median)",
            file=sys.stderr,
        )
    return out

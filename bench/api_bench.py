"""The HTTP API under load and end to end.

- Requests/s and latency p50/p99 at 16 concurrent connections (wrk, a C load generator, so the
  client does not compete with the server for the GIL; both share the machine's 2 cores) for a
  known user's list (the stream's, from the sink) and for an anonymous fold-in of 20 ratings,
  with the SQLite and the PostgreSQL sink. The server is `streamrec serve`, one process.
- A brand-new user's time from `POST /events` to a personal list from the stream on
  `GET /recommendations/{id}` (continuous stream, 1 s trigger; median of 5).
- Read-your-writes (issue 21): the same load against three servers side by side, interleaved, on
  the same sink: `--no-tail` (before), the defaults (after) and `--tail-wait 0.5` (known users
  only: the wait is on that route). Against the continuous stream: how long an event produced
  straight to Kafka takes to show in the API, and stale answers over 50 trials each of POST then
  an immediate GET on the same server, on another server, and on another server that waits.
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
ROUNDS = 5  # read-your-writes before/after: SECONDS per server split into rounds, interleaved
LIVE_EVENTS = 5_000
TAIL_WAIT_S = 0.5
RYW_TRIALS = 50
PRODUCED_TRIALS = 20
DRAIN_S = 60  # the most the read-your-writes part waits for the stream to apply its events
# Movies most lists start with: a stale (popularity) list shows them, so a stale answer is visible.
POPULAR = [1, 50, 110, 260, 296, 318, 356, 480, 527, 589, 593, 1196, 2571, 2959]


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


def load(url: str, script: str, tmp: Path, seconds: float = SECONDS) -> dict:
    """wrk for `seconds` at CONNECTIONS connections; requests/s, p50/p99 ms, non-2xx count."""
    lua = tmp / f"{uuid.uuid4().hex[:6]}.lua"
    lua.write_text(script)
    out = subprocess.run(
        [_wrk(), "-t1", f"-c{CONNECTIONS}", f"-d{seconds:g}s", "--latency", "-s", str(lua), url],
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


def load_interleaved(urls: dict[str, str], script: str, tmp: Path, rounds: int = ROUNDS) -> dict[str, dict]:
    """The same load on several servers, SECONDS each in all, in `rounds` short runs whose order
    rotates (and reverses every other round), so a machine whose other load drifts during the
    measurement weighs on every server alike. Requests/s over all rounds; p50/p99: the median of
    the rounds' figures."""
    names = list(urls)
    runs: dict[str, list[dict]] = {n: [] for n in names}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order if r % 2 == 0 else order[::-1]:
            runs[name].append(load(urls[name], script, tmp, SECONDS / rounds))
    out = {}
    for name, xs in runs.items():
        requests = sum(x["requests"] for x in xs)
        seconds = sum(x["requests"] / x["requests_per_s"] for x in xs if x["requests_per_s"])
        out[name] = {
            "requests_per_s": round(requests / seconds, 2) if seconds else 0.0,
            "p50_ms": round(median([x["p50_ms"] for x in xs]), 2),
            "p99_ms": round(median([x["p99_ms"] for x in xs]), 2),
            "non_2xx": sum(x["non_2xx"] for x in xs),
            "requests": requests,
            "rounds": [round(x["requests_per_s"], 1) for x in xs],
        }
    return out


class Server:
    """`streamrec serve` in its own process (as a user runs it)."""

    def __init__(self, home: Path, sink_url: str, bootstrap: str, topic: str, *extra: str):
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
            *extra,
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


def live_stream(spark, bootstrap: str, tmp: Path, model_dir: Path, trials: int = 5) -> tuple[dict, dict]:
    """On one continuous stream (1 s trigger): a brand-new user's first list from the stream, and
    the read-your-writes trials (`read_your_writes`) against three servers."""
    home = _home(tmp, "e2e", model_dir)
    topic = f"e2e-{uuid.uuid4().hex[:6]}"
    ensure_topic(bootstrap, topic)
    sink_url = f"sqlite:///{home / 'streamrec.db'}"
    cfg = _stream_config(home, bootstrap, topic, sink_url, trigger_s=1.0)
    stop = threading.Event()
    stream = threading.Thread(target=run_stream, args=(spark, cfg, stop), daemon=True)
    stream.start()
    servers = [Server(home, sink_url, bootstrap, topic),
               Server(home, sink_url, bootstrap, topic),
               Server(home, sink_url, bootstrap, topic, "--tail-wait", str(TAIL_WAIT_S))]  # fmt: skip
    try:
        clients = [httpx.Client(base_url=s.url, timeout=10) for s in servers]
        warm = clients[0].post(
            "/events",
            json={"user_id": 1_900_000_000, "movie_id": 1, "rating": 4.0, "timestamp": 1_537_000_000},
        )
        assert warm.status_code == 202, warm.text
        # the first batch carries the initial state: measure once the stream has served a list
        _poll(lambda: _source(clients[0], 1_900_000_000) == "stream", 180)
        new_user = new_user_latency(clients[0], bootstrap, topic, sink_url, trials)
        ryw = read_your_writes(clients, bootstrap, topic)
        for c in clients:
            c.close()
    finally:
        for server in servers:
            server.stop()
        stop.set()
        stream.join(timeout=90)
    return new_user, ryw


def new_user_latency(client: httpx.Client, bootstrap: str, topic: str, sink_url: str, trials: int) -> dict:
    """A brand-new user's first list, two ways in the same run, alternating on one stream: over
    HTTP (POST /events, then GET /recommendations until `source` is `stream`) and, as the baseline
    without the API, produced straight to Kafka with the project's producer and read from the sink.
    Over HTTP the list is the stream's once the fold-in query committed the user's events (until
    then the user's pending events are folded in at request time: read-your-writes)."""
    from streamrec.events import encode
    from streamrec.kafka_admin import producer
    from streamrec.sink import open_sink

    times: dict[str, list[float]] = {"http": [], "direct": []}
    version = client.get("/models").json()[0]["version"]
    rng = np.random.default_rng(5)
    with producer(bootstrap) as kafka, open_sink(sink_url) as sink:
        for t in range(2 * trials):
            user = 1_900_000_001 + t
            movies = rng.choice(POPULAR, 5, replace=False)
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
    return {
        "trials": trials,
        "seconds": [round(x, 3) for x in times["http"]],
        "median_s": round(median(times["http"]), 3),
        "direct_seconds": [round(x, 3) for x in times["direct"]],
        "direct_median_s": round(median(times["direct"]), 3),
    }


def _stale(body: dict, movies: list[int]) -> bool:
    """An answer that does not reflect the user's new events: one of their movies is listed, or
    the list came from neither the stream's list (applied) nor a fold-in of all of them."""
    listed = {i["movie_id"] for i in body["items"]}
    reflected = body["source"] == "stream" or body.get("pending_events", 0) >= len(set(movies))
    return bool(listed & set(movies)) or not reflected


def _pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q)) if xs else float("nan")


def read_your_writes(clients: list[httpx.Client], bootstrap: str, topic: str) -> dict:
    """`clients`: server A and B (defaults) and C (--tail-wait), all on the running stream.

    - produced: an event produced straight to Kafka (the project's producer, as replay), time
      from the broker's acknowledgement until A's list reflects it (GET every 2 ms);
    - same / other / other_wait: RYW_TRIALS times POST /events (3 ratings of a new user) to A,
      then at once GET on A / on B / on C; stale answers counted, the GET's time kept."""
    from streamrec.events import encode
    from streamrec.kafka_admin import producer

    a, b, c = clients
    rng = np.random.default_rng(21)
    produced: list[float] = []
    misses = 0
    with producer(bootstrap, linger_ms=0) as kafka:
        for t in range(PRODUCED_TRIALS):
            user, movies = 1_910_000_000 + t, [int(m) for m in rng.choice(POPULAR, 3, replace=False)]
            for i, m in enumerate(movies):
                key, value = encode(user, m, 4.5, 1_537_000_000 + i)
                kafka.send(topic, key=key, value=value)
            kafka.flush()
            acked = time.monotonic()
            while _stale(a.get(f"/recommendations/{user}").json(), movies):
                if time.monotonic() - acked > 5:
                    misses += 1
                    break
                time.sleep(0.002)
            else:
                produced.append(time.monotonic() - acked)
            time.sleep(0.1)
    out: dict = {"produced": {"trials": PRODUCED_TRIALS, "ms": [round(1000 * x, 1) for x in produced],
                              "median_ms": round(1000 * median(produced), 1) if produced else None,
                              "misses_after_5s": misses}}  # fmt: skip
    for n, (name, reader) in enumerate((("same", a), ("other", b), ("other_wait", c))):
        stale, get_ms = 0, []
        for t in range(RYW_TRIALS):
            user = 1_920_000_000 + 1000 * n + t
            movies = [int(m) for m in rng.choice(POPULAR, 3, replace=False)]
            events = [{"user_id": user, "movie_id": m, "rating": 4.5, "timestamp": 1_537_000_000 + i}
                      for i, m in enumerate(movies)]  # fmt: skip
            assert a.post("/events", json=events).status_code == 202
            t0 = time.monotonic()
            body = reader.get(f"/recommendations/{user}").json()
            get_ms.append(1000 * (time.monotonic() - t0))
            stale += _stale(body, movies)
            time.sleep(0.02)
        out[name] = {"trials": RYW_TRIALS, "stale": stale, "get_p50_ms": round(_pct(get_ms, 50), 1),
                     "get_p95_ms": round(_pct(get_ms, 95), 1)}  # fmt: skip
    out["tail_wait_s"] = TAIL_WAIT_S
    # The stream applies them: A's buffer drains (the sink's lists and the event log take over).
    t0 = time.monotonic()
    while (pending := _metric(a, "streamrec_pending_events")) and time.monotonic() - t0 < DRAIN_S:
        time.sleep(0.25)
    out["drained_s"] = round(time.monotonic() - t0, 2) if not pending else None
    out["tail_lag_records"] = _metric(a, "streamrec_tail_lag_records")
    return out


def _metric(client: httpx.Client, name: str) -> float | None:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


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
        out: dict = {"connections": CONNECTIONS, "seconds": SECONDS, "live_events": LIVE_EVENTS, "sinks": {},
                     "load_average_at_start": [round(x, 2) for x in os.getloadavg()]}  # fmt: skip
        try:
            for kind, url in (("sqlite", None), ("postgresql", pg_url)):
                home = _home(tmp, kind, model_dir)
                sink_url = url or f"sqlite:///{home / 'streamrec.db'}"
                cfg = _stream_config(home, bootstrap, topic, sink_url, available_now=True)
                run_stream(spark, cfg)  # the live users' lists land in the sink
                # Three servers side by side, measured interleaved: before read-your-writes
                # (--no-tail), after (the defaults) and with the cross-replica wait.
                servers = {
                    "no_tail": Server(home, sink_url, bootstrap, topic, "--no-tail"),
                    "tail": Server(home, sink_url, bootstrap, topic),
                    "tail_wait": Server(home, sink_url, bootstrap, topic, "--tail-wait", str(TAIL_WAIT_S)),
                }
                got: dict[str, dict] = {name: {} for name in servers}
                try:
                    for server in servers.values():
                        probe = httpx.get(f"{server.url}/recommendations/{users[0]}").json()
                        assert probe["source"] == "stream", probe["source"]
                        httpx.post(
                            f"{server.url}/recommendations",
                            content=bodies[0],
                            headers={"Content-Type": "application/json"},
                        ).raise_for_status()
                    urls = {n: x.url for n, x in servers.items()}
                    known_rows = load_interleaved(urls, _lua_get(users), tmp)
                    # the wait is on GET /recommendations/{id} only
                    fold_rows = load_interleaved(
                        {n: servers[n].url for n in ("no_tail", "tail")}, _lua_post(bodies), tmp
                    )
                    for name in servers:
                        got[name]["known_user"] = known_rows[name]
                        if name in fold_rows:
                            got[name]["fold_in_20"] = fold_rows[name]
                finally:
                    for server in servers.values():
                        server.stop()
                known, fold = got["tail"]["known_user"], got["tail"]["fold_in_20"]
                out["sinks"][kind] = {"known_user": known, "fold_in_20": fold,
                                      "no_tail": got["no_tail"], "tail_wait": got["tail_wait"]}  # fmt: skip
                before = got["no_tail"]
                print(
                    f"api {kind}: known user {known['requests_per_s']:,.0f} req/s "
                    f"(--no-tail {before['known_user']['requests_per_s']:,.0f}, --tail-wait "
                    f"{got['tail_wait']['known_user']['requests_per_s']:,.0f}) p99 {known['p99_ms']:.1f} ms; "
                    f"fold-in {fold['requests_per_s']:,.0f} req/s (--no-tail "
                    f"{before['fold_in_20']['requests_per_s']:,.0f}) p99 {fold['p99_ms']:.1f} ms",
                    file=sys.stderr,
                )
        finally:
            subprocess.run(
                [str(PROJECT_ROOT / "scripts" / "postgres.sh"), "stop", str(pg_data)], capture_output=True
            )
        out["new_user"], out["read_your_writes"] = live_stream(spark, bootstrap, tmp, model_dir)
        out["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
        ryw = out["read_your_writes"]
        print(
            f"api: new user's stream list {out['new_user']['median_s']} s after POST /events (median); "
            f"read-your-writes: produced to Kafka -> API {ryw['produced']['median_ms']} ms (median), stale "
            f"answers of {RYW_TRIALS}: same server {ryw['same']['stale']}, other {ryw['other']['stale']}, "
            f"other with --tail-wait {ryw['other_wait']['stale']}",
            file=sys.stderr,
        )
    return out

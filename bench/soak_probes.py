"""The soak's instruments (bench/soak_bench.py runs them): its long-running commands, what it
measures of them (resident memory by role, disk per store, the stream's batch latency), and the
API's light load with each request's latency."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import sqlalchemy as sa

from bench.scale_bench import _descendants, _processes
from streamrec.event_log import event_log_dir
from streamrec.kafka_local import LocalKafka
from streamrec.sink import default_url, stream_metrics

API_USER_BASE = 2_000_000_000  # POST /events users: far above every looped user id
GET_EVERY_S, POST_EVERY_S = 1 / 3, 5.0


# -- processes ------------------------------------------------------------------------------------


class Proc:
    """One long-running CLI command in its own process group, its output in a log file."""

    def __init__(self, name: str, env: dict, logs: Path, *args: str, nice: int = 0, idle: bool = False):
        self.name, self.env, self.logs, self.args = name, env, logs, args
        self.nice = nice  # > 0: a lower CPU priority (`nice -n`), inherited by its JVM and workers
        # Linux's SCHED_IDLE (`chrt --idle 0`, no privilege needed): CPU time only when no other
        # process wants it, inherited likewise; nice then no longer applies.
        self.idle = idle
        self.starts = 0
        self.p: subprocess.Popen | None = None
        self.expected_exit = False

    def start(self) -> None:
        self.starts += 1
        self.log = self.logs / f"{self.name}-{self.starts}.log"
        self.expected_exit = False
        with open(self.log, "wb") as out:
            self.p = subprocess.Popen(
                [*self._niced(), sys.executable, "-m", "streamrec.cli", *self.args],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def _niced(self) -> list[str]:
        if self.idle:
            return ["chrt", "--idle", "0"]
        return ["nice", "-n", str(self.nice)] if self.nice else []

    @property
    def pid(self) -> int | None:
        return self.p.pid if self.p is not None and self.p.poll() is None else None

    def exited(self) -> int | None:
        return None if self.p is None else self.p.poll()

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.p is not None else ""

    def tail(self, n: int = 3) -> str:
        return " | ".join(self.text().strip().splitlines()[-n:])

    def kill(self) -> None:
        """SIGKILL the whole process group (driver, JVM, Python workers), as a crash would."""
        if self.p is None:
            return
        self.expected_exit = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.p.pid, signal.SIGKILL)
        self.p.wait()

    def stop(self, timeout: float = 120.0) -> int | None:
        """SIGTERM to the command (it stops cleanly), SIGKILL to the group past the timeout."""
        if self.p is None or self.p.poll() is not None:
            return None if self.p is None else self.p.returncode
        self.expected_exit = True
        with contextlib.suppress(ProcessLookupError):
            self.p.send_signal(signal.SIGTERM)
        try:
            return self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return self.p.returncode


def cli(env: dict, *args: str, timeout: float = 900) -> str:
    res = subprocess.run(
        [sys.executable, "-m", "streamrec.cli", *args],
        env=env,
        text=True,
        capture_output=True,
        timeout=timeout,
    )
    if res.returncode != 0:
        raise RuntimeError(f"streamrec {' '.join(args)} failed: {res.stderr.strip()[-1500:]}")
    return res.stdout


def rss_by_role(procs: dict[str, int | None]) -> dict[str, float]:
    """MB resident per process and role: each command's Python process, its Spark JVM and its
    Python workers; the broker. Sums over the process tree below each command. A JVM's child with
    the JVM's own command line is a fork not yet exec'd (the JVM starting a Python worker): it is
    left out, or one sample would count the JVM's memory once per such child (seen: 6.6 GB for a
    1.7 GB JVM)."""
    table = _processes()
    out: dict[str, float] = {}
    for name, root in procs.items():
        if root is None or root not in table:
            continue
        for pid in _descendants(table, {root}):
            parent, cmd, kb = table[pid]
            java = b"java" in cmd.split(b"\0", 1)[0]
            if java and pid != root and parent in table and table[parent][1] == cmd:
                continue
            role = name if pid == root else f"{name} JVM" if java else f"{name} workers"
            out[role] = out.get(role, 0.0) + kb / 1024
    return {k: round(v) for k, v in out.items()}


# -- stores ---------------------------------------------------------------------------------------


def _du(path: Path, skip: set[str] = frozenset()) -> int:
    """Bytes allocated on disk under `path` (as du counts them); files may vanish meanwhile."""
    total = 0
    if path.is_file():
        with contextlib.suppress(OSError):
            return path.stat().st_blocks * 512
    for root, dirs, files in os.walk(path):
        dirs[:] = [d for d in dirs if d not in skip]
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, f)).st_blocks * 512
    return total


def stores(home: Path, broker: LocalKafka) -> dict[str, list[tuple[Path, set[str]]]]:
    """Each store's paths (and directory names left out), as the project lays them out."""
    sink_db = Path(default_url(home).removeprefix("sqlite:///"))
    checkpoints = home / "checkpoints"
    data = broker.data_dir
    return {
        "topic": [(p, set()) for p in sorted(data.glob("ratings-*"))],
        "broker other": [(p, set()) for p in sorted(broker.root.iterdir()) if p != data]
        + [(p, set()) for p in sorted(data.iterdir()) if not p.name.startswith("ratings-")],
        "event log": [(event_log_dir(home), set())],
        "checkpoints": [(checkpoints, {"state"})],
        "state store": [(p, set()) for p in sorted(checkpoints.glob("*/state"))],
        "sink DB": [(p, set()) for p in sorted(sink_db.parent.glob(sink_db.name + "*"))],
        "models": [(home / "models", set())],
        "streamed items": [(home / "items", set())],
        "Spark checkpoints": [(home / "spark", set())],
        "Spark scratch": [(home / "spark-local", set())],
    }


def disk_mb(home: Path, broker: LocalKafka) -> dict[str, float]:
    out = {}
    for name, paths in stores(home, broker).items():
        with contextlib.suppress(OSError):  # a directory that appeared or went meanwhile
            out[name] = round(sum(_du(p, skip) for p, skip in paths if p.exists()) / 2**20, 2)
    return out


# -- the API load ---------------------------------------------------------------------------------


class ApiLoad(threading.Thread):
    """A few GETs per second of known users' lists, a rating POSTed every few seconds."""

    def __init__(
        self, base: str, key: str, known: list[int], live_users: list[int], stride: int, passes: callable
    ):
        super().__init__(daemon=True)
        self.base, self.known, self.live_users, self.stride, self.passes = (
            base,
            known,
            live_users,
            stride,
            passes,
        )
        self.headers = {"Authorization": f"Bearer {key}"}
        self.stop_event = threading.Event()
        self.requests: list[tuple[float, str, float, int]] = []  # (monotonic, route, ms, status; 0 = error)
        self.accepted = 0  # events POST /events answered 202 for
        self.posted = Counter()  # (user_id, movie_id, rating) of those
        self.rng = random.Random(22)

    def _user(self) -> int:
        if self.rng.random() < 0.5:
            return self.rng.choice(self.known)  # in v1's training data
        p = self.rng.randrange(max(1, self.passes()))  # a looped user already replayed
        return self.rng.choice(self.live_users) + p * self.stride

    def run(self) -> None:
        n_post, next_post = 0, time.monotonic()
        with httpx.Client(base_url=self.base, headers=self.headers, timeout=30.0) as client:
            while not self.stop_event.is_set():
                t = time.monotonic()
                if t >= next_post:
                    n_post += 1
                    event = {
                        "user_id": API_USER_BASE + n_post,
                        "movie_id": self.rng.choice(POPULAR),
                        "rating": self.rng.choice([3.0, 4.0, 4.5, 5.0]),
                    }
                    status = self._call(client, "POST /events", "post", "/events", json=event)
                    if status == 202:
                        self.accepted += 1
                        self.posted[(event["user_id"], event["movie_id"], event["rating"])] += 1
                    next_post = t + POST_EVERY_S
                else:
                    self._call(client, "GET /recommendations", "get", f"/recommendations/{self._user()}")
                self.stop_event.wait(max(0.0, GET_EVERY_S - (time.monotonic() - t)))

    def _call(self, client: httpx.Client, route: str, method: str, url: str, **kw) -> int:
        t0 = time.monotonic()
        try:
            status = getattr(client, method)(url, **kw).status_code
        except httpx.HTTPError:
            status = 0
        self.requests.append((t0, route, (time.monotonic() - t0) * 1000, status))
        return status


POPULAR = [1, 50, 110, 260, 296, 318, 356, 480, 527, 589, 593, 1196, 2571, 2959]


# -- the stream and the API ---------------------------------------------------------------------


def batches_since(engine: sa.Engine, since: float) -> list[tuple[float, str, float]]:
    """(wall time, query, per-batch p95 ms) of the stream's batches recorded after `since`."""
    m = stream_metrics.c
    try:
        with engine.connect() as c:
            rows = c.execute(
                sa.select(m.at, m.query, m.latency_p95_ms).where(
                    m.at > since, m.batch_id >= 0, m.latency_p95_ms.is_not(None)
                )
            ).all()
    except sa.exc.SQLAlchemyError:  # the table is not there yet, or the DB is busy: next time
        return []
    return [(float(a), q, float(p)) for a, q, p in rows]


def wait_for(what: str, check, timeout: float, proc: Proc | None = None) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if check():
            return time.monotonic() - t0
        if proc is not None and proc.exited() is not None:
            raise RuntimeError(f"{proc.name} exited ({proc.exited()}) before {what}: {proc.tail(5)}")
        time.sleep(1)
    raise RuntimeError(f"no {what} after {timeout:.0f} s")


def healthy(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False

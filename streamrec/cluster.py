"""A cluster on this machine: a Spark standalone master with workers, and a 3-node KRaft Kafka.

`up` starts what is not running and prints the `export` lines that point every command at it
(STREAMREC_SPARK_MASTER, STREAMREC_KAFKA_BOOTSTRAP, STREAMREC_SPARK_STORAGE); `down` stops it
(state kept unless purged); `status` says what runs. State lives in $STREAMREC_HOME/cluster.

Isolation: each worker runs in its own mount namespace where a tmpfs hides $STREAMREC_HOME,
except the cluster's own directory (its `shared` storage and the workers' dirs). Anything that
silently read the driver's disk (a model, a checkpoint) fails there, as it would on a real
cluster. That needs root and `unshare` (util-linux); elsewhere workers run unisolated, said so.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from . import logs
from .errors import StreamrecError
from .kafka_local import LocalKafka, _alive, _port_open, free_port_pair, new_cluster_id
from .settings import home

LOG = logs.get("cluster")
MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"

# Inside the worker's new mount namespace: keep the cluster directory reachable, hide the rest
# of $STREAMREC_HOME under an empty tmpfs, then become the worker.
_HIDE = """set -e
home="$1"; keep="$2"; shift 2
aside=$(mktemp -d)
mount --bind "$keep" "$aside"
mount -t tmpfs -o size=16m,mode=755 streamrec-hidden "$home"
mkdir -p "$keep"
mount --bind "$aside" "$keep"
exec "$@"
"""


@dataclass(frozen=True)
class ClusterSpec:
    workers: int = 2
    worker_cores: int = 2  # two applications (the stream and a retrain) can hold executors at once
    worker_memory: str = "3g"
    brokers: int = 3
    isolate: bool | None = None  # None: when possible (root and unshare)


class LocalCluster:
    def __init__(self, root: Path | None = None):
        self.root = root or home() / "cluster"

    @property
    def state_file(self) -> Path:
        return self.root / "cluster.json"

    @property
    def shared(self) -> Path:
        """STREAMREC_SPARK_STORAGE: what executors write, visible to every worker and the driver."""
        return self.root / "shared"

    def state(self) -> dict:
        try:
            return json.loads(self.state_file.read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def _save(self, state: dict) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.state_file.write_text(json.dumps(state, indent=2))

    # -- Kafka -----------------------------------------------------------------------------

    def brokers(self, state: dict | None = None) -> list[LocalKafka]:
        state = state if state is not None else self.state()
        nodes = state.get("brokers", [])
        voters = tuple((n["node"], n["port"] + 1) for n in nodes)
        cid = state["kafka_cluster_id"]
        return [LocalKafka(n["port"], self.root, n["node"], voters, cid, f"kafka-{n['node']}") for n in nodes]

    def bootstrap(self, state: dict | None = None) -> str:
        return ",".join(b.address for b in self.brokers(state))

    # -- lifecycle -------------------------------------------------------------------------

    def up(self, spec: ClusterSpec = ClusterSpec()) -> dict:
        state = self.state()
        isolate = _can_isolate() if spec.isolate is None else spec.isolate
        if isolate and not _can_isolate():
            raise StreamrecError("isolated workers need root and `unshare` (util-linux): use --no-isolate")
        self.shared.mkdir(parents=True, exist_ok=True)
        state = self._kafka_up(state, spec)
        state = self._spark_up(state, spec, isolate)
        return state

    def _kafka_up(self, state: dict, spec: ClusterSpec) -> dict:
        state.setdefault("kafka_cluster_id", new_cluster_id())
        running = [b for b in self.brokers(state) if b.pid()]
        if len(state.get("brokers", [])) != spec.brokers or not running:
            for b in running:  # another size asked for: a new quorum (the topics stay on disk)
                b.stop()
            state["brokers"] = [{"node": i + 1} for i in range(spec.brokers)]
            taken: set[int] = set()
            for node in state["brokers"]:
                node["port"] = _fresh_pair(taken)
            self._save(state)
        down = [b for b in self.brokers(state) if not b.pid()]
        if down:  # the whole quorum, or the nodes that died, on their own ports (the voters' list)
            LOG.info(f"starting {len(down)} of {spec.brokers} Kafka brokers (a KRaft quorum)...")
            for b in down:
                b.start(wait=False)
        # The restarted nodes first: a client of a healthy node is handed the others' addresses.
        for b in sorted(self.brokers(state), key=lambda b: b not in down):
            b.wait_ready(120)
        LOG.info(f"Kafka ready at {self.bootstrap(state)}")
        return state

    def _spark_up(self, state: dict, spec: ClusterSpec, isolate: bool) -> dict:
        master = state.get("master", {})
        if not _alive_pid(master.get("pid"), MASTER_CLASS):
            port, ui = free_port_pair(), free_port_pair()
            log = self.root / "master.log"
            proc = _spawn([_spark_class(), MASTER_CLASS, "--host", "127.0.0.1", "--port", str(port),
                           "--webui-port", str(ui)], log)  # fmt: skip
            master = {"pid": proc.pid, "port": port, "ui": ui, "url": f"spark://127.0.0.1:{port}"}
            state["master"], state["workers"] = master, []
            self._save(state)
            _wait(lambda: _port_open(port), 60, f"the Spark master did not open port {port}; see {log}")
        workers = [w for w in state.get("workers", []) if _alive_pid(w.get("pid"), WORKER_CLASS)]
        free = (self.root / f"worker-{i}" for i in range(1, 100) if str(self.root / f"worker-{i}")
                not in {w["dir"] for w in workers})  # fmt: skip
        for _ in range(len(workers), spec.workers):
            work = next(free)
            work.mkdir(parents=True, exist_ok=True)
            cmd = [_spark_class(), WORKER_CLASS, "--host", "127.0.0.1", "--cores", str(spec.worker_cores),
                   "--memory", spec.worker_memory, "--work-dir", str(work / "work"),
                   master["url"]]  # fmt: skip
            if isolate:
                cmd = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", _HIDE, "hide",
                       str(home()), str(self.root), *cmd]  # fmt: skip
            proc = _spawn(cmd, work / "worker.log")
            workers.append({"pid": proc.pid, "dir": str(work), "isolated": isolate})
        state["workers"] = workers
        self._save(state)
        logs_at = f"{self.root}/worker-*/worker.log"
        _wait(lambda: len(self.alive_workers(state)) >= spec.workers, 90,
              f"{spec.workers} workers did not register with the master; see {logs_at}")  # fmt: skip
        hidden = f" (each in a private mount namespace without {home()})" if isolate else ""
        LOG.info(f"Spark master {master['url']} with {spec.workers} workers{hidden}")
        return state

    def alive_workers(self, state: dict | None = None) -> list[dict]:
        """The workers the master reports ALIVE (its JSON status page)."""
        state = state if state is not None else self.state()
        ui = state.get("master", {}).get("ui")
        if not ui:
            return []
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{ui}/json/", timeout=2) as r:
                info = json.load(r)
        except (OSError, ValueError):  # not up yet: refused, or an empty page while it starts
            return []
        return [w for w in info.get("workers", []) if w.get("state") == "ALIVE"]

    def down(self, purge: bool = False) -> list[str]:
        state = self.state()
        stopped = []
        for w in state.get("workers", []):
            if _stop_group(w.get("pid")):
                stopped.append(f"worker {w['dir']}")
        if _stop_group(state.get("master", {}).get("pid")):
            stopped.append("Spark master")
        for b in self.brokers(state) if state.get("brokers") and "port" in state["brokers"][0] else []:
            if b.stop():
                stopped.append(f"Kafka broker {b.address}")
        if purge:
            shutil.rmtree(self.root, ignore_errors=True)
        return stopped

    def status(self) -> dict:
        state = self.state()
        brokers = self.brokers(state) if state.get("brokers") and "port" in state["brokers"][0] else []
        master = state.get("master", {})
        return {
            "master": master.get("url") if _alive_pid(master.get("pid"), MASTER_CLASS) else None,
            "workers_alive": len(self.alive_workers(state)),
            "workers_isolated": all(w.get("isolated") for w in state.get("workers", [])) or None,
            "brokers_running": [b.address for b in brokers if b.is_running()],
            "brokers_down": [b.address for b in brokers if not b.is_running()],
        }

    def exports(self, state: dict | None = None) -> dict[str, str]:
        state = state if state is not None else self.state()
        return {
            "STREAMREC_SPARK_MASTER": state["master"]["url"],
            "STREAMREC_KAFKA_BOOTSTRAP": self.bootstrap(state),
            "STREAMREC_SPARK_STORAGE": str(self.shared),
        }


def _can_isolate() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("unshare") is not None


def _spark_class() -> str:
    import pyspark

    return str(Path(pyspark.__file__).parent / "bin" / "spark-class")


def _spawn(cmd: list[str], log: Path) -> subprocess.Popen:
    import pyspark

    env = dict(os.environ)
    env.setdefault("SPARK_HOME", str(Path(pyspark.__file__).parent))
    env["SPARK_CONF_DIR"] = str(Path(__file__).with_name("spark_conf"))  # errors-only logging
    env.setdefault("SPARK_DAEMON_MEMORY", "512m")
    env.setdefault("PYSPARK_PYTHON", sys.executable)
    out = open(log, "ab")
    return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env=env, start_new_session=True)  # fmt: skip


def _alive_pid(pid: int | None, marker: str) -> bool:
    if not pid or not _alive(pid):
        return False
    try:
        return marker.encode() in Path(f"/proc/{pid}/cmdline").read_bytes() or _child_has(pid, marker)
    except OSError:
        return True


def _child_has(pid: int, marker: str) -> bool:
    """unshare/sh exec into the JVM, so the pid is the JVM's; spark-class may fork it as a child."""
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                stat = (p / "stat").read_text().split(")")[-1].split()
                if int(stat[1]) == pid and marker.encode() in (p / "cmdline").read_bytes():
                    return True
            except (OSError, IndexError, ValueError):
                continue
    return False


def _stop_group(pid: int | None, timeout: float = 30.0) -> bool:
    """SIGTERM the process group a component was started in (spark-class and its JVM)."""
    if not pid or not _alive(pid):
        return False
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _alive(pid):
        os.killpg(pid, signal.SIGKILL)
    return True


def _fresh_pair(taken: set[int]) -> int:
    while True:
        port = free_port_pair()
        if not {port, port + 1} & taken:
            taken.update({port, port + 1})
            return port


def _wait(ready, timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise StreamrecError(message)
        time.sleep(0.5)

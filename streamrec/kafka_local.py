"""A single-node KRaft Apache Kafka broker run from the Maven jars, state under STREAMREC_HOME.

`start` formats storage on first use, launches `kafka.Kafka` in its own process group and
returns once a produce request is acknowledged; `stop` sends SIGTERM and waits for a clean
shutdown. Nothing here runs when the user names an existing cluster with --bootstrap-servers.
"""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from . import logs
from .errors import KafkaUnavailable
from .jars import jars
from .settings import home, topic_retention_s

HEALTH_TOPIC = "__streamrec_health"


@dataclass(frozen=True)
class LocalKafka:
    """Paths and ports of a local broker; its controller listens on port + 1.

    Alone (no `voters`) it is its own single-node KRaft quorum. As one node of a local cluster
    (streamrec.cluster) it names the quorum's voters (node id, controller port), the shared
    cluster id, and takes replication 3 / min.insync 2 defaults when there are three nodes.
    """

    port: int = 9092
    state_dir: Path | None = None
    node_id: int = 1
    voters: tuple[tuple[int, int], ...] = ()
    cluster_id: str | None = None
    name: str = "kafka"

    @property
    def root(self) -> Path:
        return (self.state_dir or home()) / self.name

    @property
    def address(self) -> str:
        return f"localhost:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.root / "broker.pid"

    @property
    def log_file(self) -> Path:
        return self.root / "broker.log"

    @property
    def config_file(self) -> Path:
        return self.root / "server.properties"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def pid(self) -> int | None:
        """The broker's pid when its process is alive, else None (a stale pid file is ignored)."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        # A recycled pid belonging to something else is not our broker.
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return pid
        return pid if b"kafka.Kafka" in cmdline else None

    def is_running(self) -> bool:
        return self.pid() is not None and _port_open(self.port)

    # -- lifecycle -----------------------------------------------------------------------

    def start(self, timeout: float = 90.0, wait: bool = True) -> bool:
        """Start the broker unless it already runs. Returns False when it was already running.
        `wait=False` returns once the process runs (a quorum's nodes start together, then
        `wait_ready` each)."""
        if self.pid() is not None:
            if wait:
                self._wait_ready(timeout)
            return False
        for port in (self.port, self.port + 1):
            if _port_open(port):
                raise KafkaUnavailable(
                    f"port {port} is already in use by another process: choose another with "
                    "--kafka-port (STREAMREC_KAFKA_PORT) or stop that process"
                )
        self.root.mkdir(parents=True, exist_ok=True)
        self._write_config()
        if not (self.data_dir / "meta.properties").exists():
            self._format()
        log = open(self.log_file, "ab")
        proc = subprocess.Popen(
            self._java("kafka.Kafka", str(self.config_file)),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C in the terminal must not kill the broker
        )
        self.pid_file.write_text(str(proc.pid))
        if wait:
            try:
                self._wait_ready(timeout, proc)
            except KafkaUnavailable:
                self.stop()
                raise
        return True

    def wait_ready(self, timeout: float = 90.0) -> None:
        self._wait_ready(timeout)

    def stop(self, timeout: float = 60.0) -> bool:
        """SIGTERM the broker and wait for it to exit. Returns False when it was not running."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _alive(pid):
                break
            time.sleep(0.2)
        else:
            os.kill(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.1)
        self.pid_file.unlink(missing_ok=True)
        return True

    # -- internals -----------------------------------------------------------------------

    def _java(self, main: str, *args: str) -> list[str]:
        classpath = ":".join(str(j) for j in jars("kafka"))
        log4j = self.root / "log4j2.properties"
        log4j.write_text(_LOG4J)
        return [
            "java", "-Xms256m", "-Xmx768m", "-XX:+UseG1GC",
            f"-Dlog4j2.configurationFile={log4j}",
            f"-Dkafka.logs.dir={self.root / 'logs'}",
            "-cp", classpath, main, *args,
        ]  # fmt: skip

    def _write_config(self) -> None:
        ctl = self.port + 1
        if self.voters:
            quorum = "controller.quorum.voters=" + ",".join(f"{n}@localhost:{p}" for n, p in self.voters)
        else:
            quorum = f"controller.quorum.bootstrap.servers=localhost:{ctl}"
        rf = min(3, max(1, len(self.voters)))
        isr = 2 if rf >= 3 else 1
        self.config_file.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    f"node.id={self.node_id}",
                    quorum,
                    f"listeners=PLAINTEXT://localhost:{self.port},CONTROLLER://localhost:{ctl}",
                    f"advertised.listeners=PLAINTEXT://localhost:{self.port}",
                    "controller.listener.names=CONTROLLER",
                    "inter.broker.listener.name=PLAINTEXT",
                    "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                    f"log.dirs={self.data_dir}",
                    "num.partitions=3",
                    f"default.replication.factor={rf}",
                    f"min.insync.replicas={isr}",
                    f"offsets.topic.replication.factor={rf}",
                    f"transaction.state.log.replication.factor={rf}",
                    f"transaction.state.log.min.isr={isr}",
                    f"share.coordinator.state.topic.replication.factor={rf}",
                    f"share.coordinator.state.topic.min.isr={isr}",
                    "group.initial.rebalance.delay.ms=0",
                    "auto.create.topics.enable=false",
                    f"log.retention.ms={int(topic_retention_s() * 1000)}",  # topics made by others too
                    "",
                ]
            )
        )

    def _format(self) -> None:
        cluster_id = self.cluster_id or new_cluster_id()
        alone = [] if self.voters else ["--standalone"]  # a static quorum names its voters itself
        cmd = self._java(
            "kafka.tools.StorageTool", "format", *alone,
            "-t", cluster_id, "-c", str(self.config_file),
        )  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise KafkaUnavailable(
                f"formatting Kafka storage failed: {(done.stdout + done.stderr).strip()[-300:]}"
            )

    def _wait_ready(self, timeout: float, proc: subprocess.Popen | None = None) -> None:
        """Block until the broker acknowledges a produce request (acks=all)."""
        deadline = time.monotonic() + timeout
        while not _port_open(self.port):
            if proc is not None and proc.poll() is not None:
                raise KafkaUnavailable(
                    f"the Kafka broker exited with code {proc.returncode} during start-up; "
                    f"see {self.log_file}: {_tail(self.log_file)}"
                )
            if time.monotonic() > deadline:
                raise KafkaUnavailable(f"the Kafka broker did not open port {self.port} in time")
            time.sleep(0.25)
        from .kafka_admin import ensure_topic, producer  # kafka-python import is slowish

        while True:  # a quorum's node is up before it has joined: retry until the deadline
            remaining = max(5.0, deadline - time.monotonic())
            try:
                ensure_topic(self.address, HEALTH_TOPIC, partitions=1, timeout=remaining)
                with producer(self.address, timeout=remaining) as p:
                    p.send(HEALTH_TOPIC, b"ping").get(timeout=remaining)
                return
            except Exception as exc:  # noqa: BLE001 - kafka-python raises many kinds here
                if time.monotonic() > deadline:
                    raise KafkaUnavailable(f"the Kafka broker at {self.address} is not ready: {exc}") from exc
                time.sleep(1)


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie child of ours counts as gone.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        if state == "Z":
            os.waitpid(pid, os.WNOHANG)
            return False
    except (OSError, ChildProcessError):
        pass
    return True


def _tail(path: Path, n: int = 400) -> str:
    try:
        return path.read_text(errors="replace")[-n:].replace("\n", " | ")
    except OSError:
        return "(no log)"


_LOG4J = """\
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = ${sys:kafka.logs.dir}/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.apache.name = org.apache.kafka
logger.apache.level = WARN
"""


def free_port_pair() -> int:
    """A port p such that p and p+1 (the controller) are both free: for private brokers."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port < 65000:
            with socket.socket() as s2:
                try:
                    s2.bind(("127.0.0.1", port + 1))
                    return port
                except OSError:
                    continue
    raise RuntimeError("no free port pair")


def new_cluster_id() -> str:
    """A random KRaft cluster id (base64url of 16 bytes) that never starts with "-": the storage
    tool's parser reads such an id as an option and formatting fails (1 run in 64). Kafka's own
    Uuid.randomUuid() redraws for the same reason."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def ensure_broker(args) -> str:
    """The bootstrap address a command should use (its parsed `--bootstrap-servers` and
    `--kafka-port`); starts the local broker when no cluster is configured."""
    if args.bootstrap_servers:
        return args.bootstrap_servers
    broker = LocalKafka(args.kafka_port)
    if broker.start():
        logs.get("kafka").info(f"started local Kafka broker at {broker.address}")
    return broker.address

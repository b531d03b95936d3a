"""Each server process tails the ratings topic for read-your-writes.

A consumer of its own (no group, nothing committed, every partition assigned) starts where the
stream's applied state ends (serving.applied: the event log as the ratings index read it and the
fold-in query's committed offsets; a partition neither names: its beginning) and puts every
valid event (the stream's own rules, `streamrec.events.validate`) into the pending buffer
(serving.pending). So events from anywhere (this server's `POST /events`, another replica,
`replay`) reach this server's lists within the tail's lag. Every `MAINTAIN_S` it drops what the
stream has applied since.

Kafka not configured: no tail. Unreachable, or the topic missing, or no model yet: the tail
retries in the background (one log line per outage), and lists are served as without it.

`caught_up()` is the optional cross-replica wait (`--tail-wait`): one ListOffsets request, shared
by every request that arrived while the previous one was out, samples the topic's end offsets;
the request then waits (bounded) until the tail has buffered everything before them.

`read()` is the cheap one (serving.read_token): a GET that carries the offsets `POST /events`
acknowledged waits, at most `--read-token-wait`, until the tail has buffered past them; no Kafka
request, and GETs without a token do not wait at all.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass

from streamrec import logs
from streamrec.events import validate

from .applied import Applied
from .pending import Event, PendingBuffer
from .readiness import broker_reachable

MAINTAIN_S = 0.2  # how often applied events are dropped (and the poll's longest wait)
IDLE_POLL_S = 1.0  # the poll's longest wait while nothing is pending
PARTITIONS_CHECK_S = 10.0  # how often the topic's partition count is compared
RETRY_S = (1.0, 10.0)  # back-off between attempts while Kafka (or the topic, or a model) is missing
MAX_POLL_RECORDS = 5_000


def new_consumer(bootstrap: str, client_id: str, **config):
    """A plain kafka-python consumer for this process alone: no group, no commits, no topic
    auto-creation (only `stream`, `replay` and `POST /events` create the ratings topic)."""
    from kafka import KafkaConsumer

    settings = dict(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        group_id=None,
        enable_auto_commit=False,
        allow_auto_create_topics=False,
        auto_offset_reset="earliest",  # a start below the retained log: its first offset
        metrics_enabled=False,
        bootstrap_timeout_ms=3_000,
        request_timeout_ms=5_000,
    )
    settings.update(config)
    return KafkaConsumer(**settings)


@dataclass
class TailStatus:
    connected: bool
    lag: int | None  # records in the topic the tail has not read (from the last fetch's high watermark)
    records: int  # records read since start
    waits: int  # GETs that waited for the tail (--tail-wait, or a read token not yet read)
    wait_timeouts: int  # of those, how many gave up (at --tail-wait or --read-token-wait)


class TopicTail:
    def __init__(
        self, bootstrap: str, topic: str, buffer: PendingBuffer, applied: Applied, wait_s: float = 0.0
    ):
        self.bootstrap = bootstrap
        self.topic = topic
        self.buffer = buffer
        self.applied = applied
        self.wait_s = wait_s
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._connected = False
        self._lag: int | None = None
        self._records = 0
        self._waits = 0
        self._timeouts = 0
        self._partitions: list[int] = []
        self._positions: dict[int, int] = {}  # partition -> next offset buffered (published after add)
        self._lock = threading.Lock()  # positions, targets and waiters
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future]] = []
        self._targets: list[tuple[float, dict[int, int], list]] = []  # (deadline, end offsets, waiters)
        self._wake = threading.Event()
        self._log = logs.get("serving")

    # -- life cycle -------------------------------------------------------------------------------

    def start(self) -> None:
        names = [("topic-tail", self._run)] + ([("topic-tail-ends", self._sample)] if self.wait_s > 0 else [])
        for name, target in names:
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))  # daemon threads: a stuck client cannot hold exit

    def status(self) -> TailStatus:
        return TailStatus(self._connected, self._lag, self._records, self._waits, self._timeouts)

    # -- the cross-replica wait -------------------------------------------------------------------

    async def caught_up(self) -> bool | None:
        """Wait until the tail has buffered every record the topic held when this was called,
        at most `wait_s`. True: caught up; False: gave up; None: no wait (off, or not tailing)."""
        if self.wait_s <= 0 or not self._connected:
            return None
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        with self._lock:
            self._waiters.append((loop, fut))
        self._wake.set()
        self._waits += 1
        try:
            return await asyncio.wait_for(fut, self.wait_s)
        except TimeoutError:
            self._timeouts += 1
            return False

    async def read(self, offsets: dict[int, int], timeout: float) -> bool:
        """Wait until the tail has buffered every record up to and including `offsets` (partition
        -> offset, a read token), at most `timeout` s. True: read; False: not read in time, or not
        tailing (answered at once: a tail that is down or still connecting is not waited for)."""
        target = {p: o + 1 for p, o in offsets.items()}  # positions are the next offset to read
        with self._lock:
            if self._reached(target):
                return True
        if not self._connected or timeout <= 0:
            return False
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        with self._lock:
            if self._reached(target):  # read between the two looks
                return True
            self._targets.append((time.monotonic() + timeout, target, [(loop, fut)]))
        self._waits += 1
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            self._timeouts += 1
            return False

    def _sample(self) -> None:
        """One ListOffsets for every waiter that arrived while the previous one was out."""
        from kafka import TopicPartition

        consumer = None
        while not self._stop.is_set():
            self._wake.wait(1.0)
            self._wake.clear()
            with self._lock:
                batch, self._waiters = self._waiters, []
                now = time.monotonic()
                self._targets = [t for t in self._targets if t[0] > now]  # their requests gave up
            if not batch:
                continue
            try:
                if consumer is None:
                    consumer = new_consumer(self.bootstrap, "streamrec-serve-tail-ends")
                tps = [TopicPartition(self.topic, p) for p in self._partitions]
                ends = consumer.end_offsets(tps, timeout_ms=int(self.wait_s * 1000)) if tps else {}
            except Exception:  # noqa: BLE001 - unreachable: these requests are served without waiting
                _settle(batch, False)
                consumer = _close(consumer)
                continue
            target = {tp.partition: int(o) for tp, o in ends.items()}
            with self._lock:
                if self._reached(target):
                    _settle(batch, True)
                else:
                    self._targets.append((time.monotonic() + self.wait_s, target, batch))
        _close(consumer)

    def _reached(self, target: dict[int, int]) -> bool:
        return all(self._positions.get(p, 0) >= o for p, o in target.items())

    # -- the tail ---------------------------------------------------------------------------------

    def _run(self) -> None:
        backoff = RETRY_S[0]
        down = False
        while not self._stop.is_set():
            try:
                self._session()
                backoff = RETRY_S[0]
            except Exception as exc:  # noqa: BLE001 - whatever failed, retry; one line per outage
                if not down:
                    self._log.warning(
                        f"read-your-writes: not tailing topic {self.topic!r} on {self.bootstrap} "
                        f"({_why(exc)}); lists are served without events the stream has not applied, "
                        "retrying in the background"
                    )
                down = True
                self._connected = False
                self._lag = None
                self._stop.wait(backoff)
                backoff = min(backoff * 2, RETRY_S[1])
                continue
            down = False

    def _session(self) -> None:
        from kafka import TopicPartition

        if not broker_reachable(self.bootstrap):
            raise ConnectionError(f"no broker answers at {self.bootstrap}")
        consumer = new_consumer(self.bootstrap, "streamrec-serve-tail", max_poll_records=MAX_POLL_RECORDS)
        try:
            parts = sorted(consumer.partitions_for_topic(self.topic) or ())
            if not parts:
                raise LookupError(f"topic {self.topic!r} does not exist yet")
            start = self.applied.start_offsets()  # loads CURRENT's ratings index
            tps = [TopicPartition(self.topic, p) for p in parts]
            consumer.assign(tps)
            for tp in tps:
                if tp.partition in start:
                    consumer.seek(tp, start[tp.partition])
                else:
                    consumer.seek_to_beginning(tp)
            with self._lock:
                self._partitions = parts
                self._positions = {}
            self._connected = True
            self._log.info(
                f"read-your-writes: tailing topic {self.topic!r} ({len(parts)} partitions) from "
                f"{ {p: start.get(p, 'beginning') for p in parts} }"
            )
            maintained = checked = time.monotonic()
            while not self._stop.is_set():
                # Idle with nothing pending: a long poll (records still wake it at once).
                idle = self.buffer.empty()
                polled = consumer.poll(timeout_ms=int((IDLE_POLL_S if idle else MAINTAIN_S) * 1000))
                events: list[Event] = []
                for tp, records in polled.items():
                    for rec in records:
                        event, _ = validate(rec.value)
                        if event is not None:  # bad records: the stream's dead letters, not a list
                            events.append((event["user_id"], event["movie_id"], event["rating"],
                                           event["timestamp"], tp.partition, rec.offset))  # fmt: skip
                        self._records += 1
                if events:
                    self.buffer.add(events)
                positions = {tp.partition: consumer.position(tp, timeout_ms=1000) for tp in tps}
                now = time.monotonic()
                self._lag = sum(
                    max(0, (consumer.highwater(tp) or 0) - (positions[tp.partition] or 0)) for tp in tps
                )
                with self._lock:  # after the add: a position reached is a position buffered
                    self._positions = {p: o for p, o in positions.items() if o is not None}
                    if self._targets:
                        keep = []
                        for deadline, target, batch in self._targets:
                            if self._reached(target):
                                _settle(batch, True)
                            elif deadline > now:  # else its request gave up
                                keep.append((deadline, target, batch))
                        self._targets = keep
                if now - maintained >= MAINTAIN_S and not self.buffer.empty():
                    maintained = now
                    covered = self.applied.covered()
                    if covered is not None:
                        self.buffer.prune(*covered)
                if now - checked >= PARTITIONS_CHECK_S:
                    checked = now
                    if sorted(consumer.partitions_for_topic(self.topic) or ()) != parts:
                        self._log.info(
                            f"read-your-writes: topic {self.topic!r} changed partitions; re-assigning"
                        )
                        return
        finally:
            self._connected = False
            _close(consumer)


def _settle(batch: list, value: bool) -> None:
    for loop, fut in batch:
        try:
            loop.call_soon_threadsafe(_set_result, fut, value)
        except RuntimeError:
            pass  # that request's event loop is closed


def _set_result(fut: asyncio.Future, value: bool) -> None:
    if not fut.done():  # it may have timed out
        fut.set_result(value)


def _close(consumer) -> None:
    if consumer is not None:
        try:
            consumer.close()
        except Exception:  # noqa: BLE001 - closing a broken client: nothing to do about it
            pass
    return None


def _why(exc: Exception) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__

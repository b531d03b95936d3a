"""Paced replay of MovieLens ratings into Kafka, in event-time order.

Pacing: as fast as possible (default), a fixed --rate in events/s, or --speedup X which divides
event-time gaps by X. Delivery: acks=all, idempotent producer, retries; the count of confirmed
events is the count of the broker's acknowledgements, taken after a final flush. A looped replay
(--loop, the soak benchmark's load) sends the selection again and again, new users every pass.
"""

from __future__ import annotations

import itertools
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
from kafka.errors import KafkaError
from tqdm import tqdm

from streamrec.errors import InvalidRequest
from streamrec.events import MAX_ID, encode
from streamrec.kafka_admin import ensure_topic, producer
from streamrec.stop_signals import stop_requested

# Throughput settings (see docs/benchmarks.md): big batches and a short linger amortise
# kafka-python's per-request cost; gzip cuts the bytes its GIL-bound sender thread moves
# (15k -> 20k events/s here). acks=all + idempotence keep delivery honest.
PRODUCER_TUNING = dict(
    linger_ms=20, batch_size=512 * 1024, max_in_flight_requests_per_connection=5, compression_type="gzip"
)


@dataclass
class ReplayResult:
    sent: int
    confirmed: int
    failed: int
    seconds: float
    interrupted: bool = False
    error: str | None = None

    @property
    def rate(self) -> float:
        return self.confirmed / self.seconds if self.seconds > 0 else 0.0


def check_pacing(rate: float | None, speedup: float | None) -> None:
    """InvalidRequest when the pacing options are impossible."""
    if rate is not None and speedup is not None:
        raise InvalidRequest("rate and speedup are exclusive: choose one")
    if rate is not None and not rate > 0:
        raise InvalidRequest(f"rate must be positive, got {rate}")
    if speedup is not None and not speedup > 0:
        raise InvalidRequest(f"speedup must be positive, got {speedup}")


class _Pacer:
    """When each event is due, relative to the start of the replay (None: no pacing)."""

    def __init__(self, timestamps: np.ndarray, rate: float | None, speedup: float | None):
        check_pacing(rate, speedup)
        self.rate, self.speedup = rate, speedup
        self.t0_event = int(timestamps[0]) if len(timestamps) else 0
        self.timestamps = timestamps
        # A looped replay's pass p starts p event-time spans (+1 s) after the first (--speedup).
        self.span = int(timestamps[-1]) - self.t0_event + 1 if len(timestamps) else 0

    def due(self, i: int) -> float | None:
        if self.rate is not None:
            return i / self.rate
        if self.speedup is not None:
            n = len(self.timestamps)
            return ((i // n) * self.span + int(self.timestamps[i % n]) - self.t0_event) / self.speedup
        return None


def loop_stride(max_user_id: int) -> int:
    """How far apart a looped replay's passes put user ids: the power of ten above the largest
    (610 -> 1000, so pass 3's user 42 is user 3042): every pass's users are new."""
    return 10 ** len(str(max(int(max_user_id), 1)))


def looped(events: pd.DataFrame) -> Iterator[tuple[int, int, float, int]]:
    """(user_id, movie_id, rating, timestamp) of `events`, pass after pass: pass p adds
    p x loop_stride to every user id; it ends before a user id would pass the contract's MAX_ID.
    Timestamps are the selection's own (a looped replay stamps each event when it sends it)."""
    cols = [events[c].to_numpy().tolist() for c in ("user_id", "movie_id", "rating", "timestamp")]
    if not cols[0]:
        return
    stride, top = loop_stride(max(cols[0])), max(cols[0])
    for p in itertools.count():
        if top + p * stride > MAX_ID:
            return
        for u, m, r, t in zip(*cols, strict=True):
            yield u + p * stride, m, r, t


def _paced(
    events: pd.DataFrame,
    pacer: _Pacer,
    wait: Callable[[float], object],
    loop: bool = False,
    limit: int | None = None,
) -> Iterator[tuple[bytes, bytes]]:
    """Each event's (key, value) when it is due; `wait(seconds)` idles until then (both clients).
    `loop`: pass after pass (`looped`), each event stamped with the time it is sent, at most
    `limit` events in all."""
    if loop:
        rows: Iterator = itertools.islice(looped(events), limit)
    else:
        cols = [events[c].to_numpy().tolist() for c in ("user_id", "movie_id", "rating", "timestamp")]
        rows = zip(*cols, strict=True)
    start = time.monotonic()
    for i, (u, m, r, t) in enumerate(rows):
        due = pacer.due(i)
        if due is not None and (left := start + due - time.monotonic()) > 0:
            wait(left)
        yield encode(u, m, r, int(time.time()) if loop else t)


def _polling(poll: Callable[[float], object], stop: threading.Event, slice_s: float = 0.2):
    """A wait that calls `poll` in slices until the time is up or a stop is requested."""

    def wait(seconds: float) -> None:
        end = time.monotonic() + seconds
        while not stop.is_set() and (left := end - time.monotonic()) > 0:
            poll(min(left, slice_s))

    return wait


CLIENTS = ("auto", "confluent", "kafka-python")


def default_client() -> str:
    """confluent-kafka (librdkafka, C) when installed, else kafka-python (pure Python)."""
    try:
        import confluent_kafka  # noqa: F401
    except ImportError:
        return "kafka-python"
    return "confluent"


def replay(
    events: pd.DataFrame,
    bootstrap: str,
    topic: str,
    *,
    partitions: int = 3,
    rate: float | None = None,
    speedup: float | None = None,
    progress: bool | None = None,
    client: str = "auto",
    loop: bool = False,
    limit: int | None = None,
    **producer_config,
) -> ReplayResult:
    """Publish events (already in event-time order) and wait until every send is confirmed.

    `confirmed` counts the broker's acknowledgements themselves (not sends minus failures), so it
    is exact however a send fails: at once (a full buffer, an oversized record), later (delivery
    timeout), or never acknowledged before the final flush gave up (a long broker outage).
    `client`: "confluent" (librdkafka), "kafka-python", or "auto" (the first when installed).
    `loop`: send `events` pass after pass (new user ids each pass, event time = send time; see
    `looped`) until interrupted or `limit` events in all.
    Both: acks=all, idempotence, key = user id, the same murmur2 partitioner (a user's events
    land on one partition whichever client sent them, so per-user order holds).
    `producer_config` overrides the client's settings (its own names)."""
    if client not in CLIENTS:
        raise InvalidRequest(f"client must be one of {', '.join(CLIENTS)}, got {client!r}")
    pacer = _Pacer(events["timestamp"].to_numpy(), rate, speedup)
    ensure_topic(bootstrap, topic, partitions=partitions)
    if loop and len(events) == 0:
        raise InvalidRequest("nothing to loop: the selection is empty")
    if (default_client() if client == "auto" else client) == "confluent":
        return _replay_confluent(events, bootstrap, topic, pacer, progress, producer_config, loop, limit)
    n = limit if loop else len(events)
    show = sys.stderr.isatty() if progress is None else progress
    failures: list[BaseException] = []
    acked = [0]  # incremented on the producer's I/O thread, read after the flush
    sent = 0
    interrupted = False

    def on_error(exc: BaseException) -> None:
        failures.append(exc)

    def on_ack(_metadata) -> None:
        acked[0] += 1

    start = time.monotonic()
    bar = tqdm(total=n, unit="ev", unit_scale=True, disable=not show, smoothing=0.1)
    config = {"delivery_timeout_ms": 30_000, **PRODUCER_TUNING, **producer_config}
    # Every batch is acknowledged or expired within the delivery timeout: waiting longer than
    # that (plus a margin) for the final flush only delays the report.
    flush_s = config["delivery_timeout_ms"] / 1000 + 5
    try:
        with producer(bootstrap, timeout=min(10.0, flush_s), **config) as p:
            with stop_requested() as stop:
                for key, value in _paced(events, pacer, stop.wait, loop, limit):  # a stop ends a wait
                    if stop.is_set():
                        break
                    sent += 1  # attempted
                    try:
                        p.send(topic, key=key, value=value).add_callback(on_ack).add_errback(on_error)
                    except KafkaError as exc:  # buffer full / metadata timeout / too large: not sent
                        failures.append(exc)
                        break
                    if failures:
                        break
                    if sent % 2000 == 0:
                        bar.update(2000)
                interrupted = stop.is_set()
            try:
                p.flush(timeout=flush_s)
            except KafkaError as exc:  # the broker stayed away past the flush: report, don't crash
                failures.append(exc)
    finally:
        bar.update(sent - bar.n)
        bar.close()
    seconds = time.monotonic() - start
    confirmed = acked[0]
    error = f"{type(failures[0]).__name__}: {failures[0]}" if failures else None
    # Attempted but not acknowledged counts as failed (not known to be stored).
    return ReplayResult(sent, confirmed, sent - confirmed, seconds, interrupted, error)


# librdkafka: big batches and a short linger; idempotence implies acks=all and at most 5
# requests in flight, which keeps each partition's order across retries. No compression: into
# a local broker it only costs CPU (the full bundled replay, same run: none 280-373k events/s,
# lz4 153-179k, gzip 81k), and every consumer can read it (kafka-python needs extra packages
# for lz4/snappy/zstd).
CONFLUENT_TUNING = {
    "linger.ms": 20,
    "batch.size": 1_000_000,
    "compression.type": "none",
    "queue.buffering.max.messages": 500_000,
}


def _replay_confluent(events: pd.DataFrame, bootstrap: str, topic: str, pacer: _Pacer,
                      progress: bool | None, overrides: dict, loop: bool = False,
                      limit: int | None = None) -> ReplayResult:  # fmt: skip
    from confluent_kafka import KafkaException, Producer

    conf = {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "partitioner": "murmur2_random",  # Java's and kafka-python's partitioner for keyed records
        "delivery.timeout.ms": 30_000,
        # librdkafka's own log lines (reconnect errors during an outage) through Python logging:
        # quiet by default, shown with --verbose; replay's report says what failed, once.
        "logger": logging.getLogger("librdkafka"),
        **CONFLUENT_TUNING,
        **overrides,
    }
    flush_s = conf["delivery.timeout.ms"] / 1000 + 5
    p = Producer(conf)
    n = limit if loop else len(events)
    show = sys.stderr.isatty() if progress is None else progress
    failures: list[str] = []
    acked = [0]
    sent, interrupted = 0, False

    def delivered(err, _msg) -> None:  # called from poll()/flush() on this thread
        if err is None:
            acked[0] += 1
        else:
            failures.append(str(err))

    start = time.monotonic()
    bar = tqdm(total=n, unit="ev", unit_scale=True, disable=not show, smoothing=0.1)
    try:
        with stop_requested() as stop:
            # poll: serve reports while waiting, in slices so that a stop ends the wait
            for key, value in _paced(events, pacer, _polling(p.poll, stop), loop, limit):
                if stop.is_set():
                    break
                sent += 1  # attempted
                while True:
                    try:
                        p.produce(topic, value=value, key=key, on_delivery=delivered)
                        break
                    except BufferError:  # the local queue is full: let deliveries drain it
                        p.poll(0.05)
                if sent % 5000 == 0:
                    p.poll(0)
                    bar.update(5000)
                    if failures:
                        break
            interrupted = stop.is_set()
    except KafkaException as exc:
        failures.append(str(exc))
    finally:
        remaining = p.flush(flush_s)
        if remaining and not failures:
            failures.append(f"{remaining} events still unacknowledged after {flush_s:g} s")
        bar.update(sent - bar.n)
        bar.close()
    seconds = time.monotonic() - start
    error = f"KafkaError: {failures[0]}" if failures else None
    return ReplayResult(sent, acked[0], sent - acked[0], seconds, interrupted, error)

"""Rating ingestion (`POST /events`): the event contract's rules, then the ratings topic."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from streamrec import logs
from streamrec.errors import InvalidRequest, KafkaUnavailable
from streamrec.events import check, encode

DEFAULT_TIMEOUT_S = 5.0
RETRY_AFTER_S = 5.0  # after a failed connection, answer 503 at once for this long
LINGER_MS = 2


def _left(deadline: float) -> float:
    return max(0.05, deadline - time.monotonic())


Acked = Callable[[list[tuple[int, int, float, int, int, int]]], None]


class Ingest:
    def __init__(
        self,
        bootstrap: str | None,
        topic: str,
        timeout: float = DEFAULT_TIMEOUT_S,
        acked: Acked | None = None,
    ):
        self.bootstrap = bootstrap  # None: every publish answers 503
        self.topic = topic
        self.timeout = timeout  # the most a publish waits on Kafka, topic creation included
        # Read-your-writes on this replica: every acknowledged event, with the partition and offset
        # the broker gave it, goes to the pending buffer before the 202 (serving.pending).
        self.acked = acked
        self._topic_ready = False
        self._producer = None
        self._producer_lock = threading.Lock()
        self._producer_failed_at = -1e9

    def validate_events(self, body: Any, now: int | None = None) -> list[dict]:
        """The event contract's rules (streamrec.events.check) on each event; a missing timestamp
        is the time of the request. Raises InvalidRequest naming the first broken rule."""
        events = body if isinstance(body, list) else [body]
        if not events:
            raise InvalidRequest("no events: send one rating object or a non-empty list")
        now = int(time.time()) if now is None else now
        out = []
        for i, e in enumerate(events):
            if isinstance(e, dict) and "timestamp" not in e:
                e = {**e, "timestamp": now}
            event, reason = check(e)
            if reason:
                where = f"event {i}: " if isinstance(body, list) else ""
                raise InvalidRequest(f"{where}{reason}")
            out.append(event)
        return out

    def publish(self, events: list[dict]) -> list[tuple[int, int]]:
        """Send the events to the ratings topic (key = user id, acks=all, idempotent); returns the
        (partition, offset) the broker acknowledged each at (a read token: serving.read_token).
        Bounded by `timeout` whatever the broker does: a missing topic is created first (as
        `stream` and `replay` create it), an unreachable or silent broker is KafkaUnavailable (503)
        once the time is up."""
        deadline = time.monotonic() + self.timeout
        producer = self._kafka_producer(deadline)
        self._ensure_topic(deadline)
        try:
            futures = [
                producer.send(self.topic, key=k, value=v)
                for k, v in (encode(e["user_id"], e["movie_id"], e["rating"], e["timestamp"]) for e in events)
            ]
            producer.flush(timeout=_left(deadline))
            done = [f.get(timeout=_left(deadline)) for f in futures]
        except Exception as exc:  # noqa: BLE001 - any client failure is "broker unavailable" to a caller
            self._topic_ready = False  # deleted since? look again next time
            raise KafkaUnavailable(
                f"Kafka at {self.bootstrap} did not acknowledge within {self.timeout:g} s "
                f"({type(exc).__name__})"
            ) from None
        if self.acked is not None:
            self.acked([(e["user_id"], e["movie_id"], e["rating"], e["timestamp"], md.partition, md.offset)
                        for e, md in zip(events, done, strict=True)])  # fmt: skip
        return [(md.partition, md.offset) for md in done]

    def _ensure_topic(self, deadline: float) -> None:
        """Create the topic when missing, once per process: the local broker does not auto-create
        topics, and a producer would wait for its metadata until `max_block_ms`."""
        if self._topic_ready:
            return
        from streamrec.kafka_admin import ensure_topic

        try:
            created = ensure_topic(self.bootstrap, self.topic, timeout=_left(deadline))
        except Exception as exc:  # noqa: BLE001 - unreachable, or refused (ACLs, no auto-create rights)
            raise KafkaUnavailable(
                f"topic {self.topic!r} could not be checked or created on Kafka at {self.bootstrap} "
                f"within {self.timeout:g} s: {type(exc).__name__}"
            ) from None
        if created:
            logs.get("serving").info(f"created topic {self.topic!r} on {self.bootstrap} (POST /events)")
        self._topic_ready = True

    def _kafka_producer(self, deadline: float):
        if self.bootstrap is None:
            raise KafkaUnavailable("no Kafka configured: start the server with --bootstrap-servers")
        with self._producer_lock:
            if self._producer is None:
                if time.monotonic() - self._producer_failed_at < RETRY_AFTER_S:  # fail fast while down
                    raise KafkaUnavailable(f"Kafka not reachable at {self.bootstrap} (retrying in a few s)")
                from streamrec.kafka_admin import new_producer  # kafka-python: only when ingesting

                ms = int(self.timeout * 1000)
                try:
                    self._producer = new_producer(
                        self.bootstrap,
                        timeout=_left(deadline),
                        linger_ms=LINGER_MS,
                        max_block_ms=ms,  # metadata waits (default 60 s: the hang of issue 21)
                        request_timeout_ms=ms,
                        delivery_timeout_ms=ms + LINGER_MS,  # no retry outlives the 503
                    )
                except KafkaUnavailable:
                    self._producer_failed_at = time.monotonic()
                    raise
            return self._producer

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=5)

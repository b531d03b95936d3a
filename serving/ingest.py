"""Rating ingestion (`POST /events`): the event contract's rules, then the ratings topic."""

from __future__ import annotations

import threading
import time
from typing import Any

from streamrec.errors import InvalidRequest, KafkaUnavailable
from streamrec.events import check, encode


class Ingest:
    def __init__(self, bootstrap: str | None, topic: str):
        self.bootstrap = bootstrap  # None: every publish answers 503
        self.topic = topic
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

    def publish(self, events: list[dict], timeout: float = 10.0) -> int:
        """Send the events to the ratings topic (key = user id, acks=all, idempotent); returns how
        many the broker acknowledged."""
        producer = self._kafka_producer()
        try:
            futures = [
                producer.send(self.topic, key=k, value=v)
                for k, v in (encode(e["user_id"], e["movie_id"], e["rating"], e["timestamp"]) for e in events)
            ]
            producer.flush(timeout=timeout)
            for f in futures:
                f.get(timeout=timeout)
        except Exception as exc:  # noqa: BLE001 - any client failure is "broker unavailable" to a caller
            raise KafkaUnavailable(
                f"Kafka at {self.bootstrap} did not acknowledge: {type(exc).__name__}"
            ) from None
        return len(futures)

    def _kafka_producer(self):
        if self.bootstrap is None:
            raise KafkaUnavailable("no Kafka configured: start the server with --bootstrap-servers")
        with self._producer_lock:
            if self._producer is None:
                if time.monotonic() - self._producer_failed_at < 5.0:  # fail fast while it is down
                    raise KafkaUnavailable(f"Kafka not reachable at {self.bootstrap} (retrying in a few s)")
                from streamrec.kafka_admin import new_producer  # kafka-python: only when ingesting

                try:
                    self._producer = new_producer(self.bootstrap, timeout=5.0, linger_ms=2)
                except KafkaUnavailable:
                    self._producer_failed_at = time.monotonic()
                    raise
            return self._producer

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=5)

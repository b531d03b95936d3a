"""Thin kafka-python helpers: clients created lazily, failures turned into one clear sentence."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from .errors import KafkaUnavailable
from .settings import topic_retention_s


def _unreachable(bootstrap: str, exc: Exception) -> KafkaUnavailable:
    return KafkaUnavailable(
        f"Kafka broker not reachable at {bootstrap} ({type(exc).__name__}): start one with "
        "`streamrec kafka start` or point --bootstrap-servers at a running cluster"
    )


def admin(bootstrap: str, timeout: float = 10.0) -> KafkaAdminClient:
    try:
        return KafkaAdminClient(
            bootstrap_servers=bootstrap,
            client_id="streamrec-admin",
            request_timeout_ms=int(timeout * 1000),
            bootstrap_timeout_ms=int(timeout * 1000),
        )
    except (KafkaError, OSError) as exc:
        raise _unreachable(bootstrap, exc) from exc


def ensure_topic(bootstrap: str, topic: str, partitions: int = 3, timeout: float = 10.0) -> bool:
    """Create the topic when missing, replicated on up to 3 brokers. Returns True when created."""
    client = admin(bootstrap, timeout)
    try:
        if topic in client.list_topics():
            return False
        replicas = min(3, max(1, len(client.describe_cluster().get("brokers", []))))
        retention = {"retention.ms": str(int(topic_retention_s() * 1000))}  # bounded, never forever
        client.create_topics(
            [
                NewTopic(
                    topic, num_partitions=partitions, replication_factor=replicas, topic_configs=retention
                )
            ],
            timeout_ms=int(timeout * 1000),
        )
        return True
    except TopicAlreadyExistsError:
        return False
    finally:
        client.close()


def new_producer(bootstrap: str, timeout: float = 10.0, **config) -> KafkaProducer:
    """An idempotent, acks=all producer that the caller closes (`producer()` for a `with` block)."""
    settings = dict(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        retries=5,
        bootstrap_timeout_ms=int(timeout * 1000),
        request_timeout_ms=int(max(timeout, 5) * 1000),
    )
    settings.update(config)
    try:
        return KafkaProducer(**settings)
    except (KafkaError, OSError) as exc:
        raise _unreachable(bootstrap, exc) from exc


@contextlib.contextmanager
def producer(bootstrap: str, timeout: float = 10.0, **config) -> Iterator[KafkaProducer]:
    """An idempotent, acks=all producer; closed (and flushed) on exit.

    Closing never raises: a flush that times out there (the broker is away) would hide the
    caller's own report of what was confirmed; unconfirmed sends are the caller's to count."""
    p = new_producer(bootstrap, timeout, **config)
    try:
        yield p
    finally:
        try:
            p.close(timeout=timeout)
        except KafkaError:
            # kafka-python's close() raises when its flush times out, before stopping its I/O
            # thread; stop that thread ourselves (no public API does), or it would outlive us.
            sender = getattr(p, "_sender", None)
            if sender is not None:
                sender.force_close()
                sender.join(timeout)

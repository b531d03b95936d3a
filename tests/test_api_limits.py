"""Bounded requests (issue 21, section 3): a body over the limit is refused before it is read,
POST /events answers in bounded time whatever the broker does (a missing topic is created, an
unreachable broker is a 503), and per-key token buckets answer 429 with Retry-After."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from serving.api import create_app
from serving.limits import DEFAULT_MAX_BODY, TokenBucket, parse_rate
from serving.service import ServeConfig
from streamrec.kafka_local import free_port_pair
from tests.serving_support import ServerThread

MB = 1024 * 1024


def _config(tmp_path: Path, **kw) -> ServeConfig:
    """A server with no model and no sink: enough for the body limit, the rate limit and ingestion
    (validation and Kafka), which need neither."""
    return ServeConfig.at_home(tmp_path, f"sqlite:///{tmp_path / 'sink.db'}", **kw)


def _events(n: int, user: int = 2_100_000_777) -> list[dict]:
    return [
        {"user_id": user, "movie_id": 1 + i, "rating": 4.5, "timestamp": 1_537_000_000 + i} for i in range(n)
    ]


# -- the token bucket, with explicit times --------------------------------------------------------


def test_token_bucket_allows_a_burst_then_refills_at_the_rate():
    b = TokenBucket(rate=2.0, burst=3)
    assert [b.take("k", 100.0) for _ in range(3)] == [0.0, 0.0, 0.0]  # the burst
    assert b.take("k", 100.0) == pytest.approx(0.5)  # empty: one token in 1/rate s
    assert b.take("k", 100.25) == pytest.approx(0.25)  # half a token accrued, none taken
    assert b.take("k", 100.5) == 0.0  # one token now
    assert b.take("other", 100.5) == 0.0  # keys are independent
    assert [b.take("k", 200.0) for _ in range(4)] == [0.0, 0.0, 0.0, pytest.approx(0.5)]  # never > burst
    assert b.take("k", 199.0) == pytest.approx(0.5)  # a clock going back adds no token


def test_token_bucket_default_burst_is_one_second_and_keys_stay_bounded():
    b = TokenBucket(rate=0.5)
    assert b.burst == 1.0 and b.take("a", 0.0) == 0.0 and b.take("a", 0.0) == pytest.approx(2.0)
    small = TokenBucket(rate=10, burst=10, max_keys=100)
    for i in range(1000):
        small.take(f"addr:{i}", i * 0.001)
    assert len(small._buckets) <= 101


@pytest.mark.parametrize(
    ("text", "per_s"), [("10/s", 10.0), ("600/min", 10.0), ("0.5/s", 0.5), ("3 / m", 0.05)]
)
def test_rate_option_parses(text, per_s):
    assert parse_rate(text) == pytest.approx(per_s)


@pytest.mark.parametrize("text", ["fast", "10", "0/s", "-1/s", "5/h"])
def test_rate_option_refuses_what_it_cannot_read(text):
    with pytest.raises(ValueError):
        parse_rate(text)


def test_rate_limited_requests_get_429_with_retry_after_and_probes_are_never_limited(tmp_path):
    with TestClient(create_app(_config(tmp_path, rate_limit=2.0))) as client:
        codes = [client.get("/stats/histogram").status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        r = client.get("/stats/genres")
        assert r.status_code == 429 and r.headers["retry-after"] == "1" and "rate limit" in r.json()["detail"]
        assert all(client.get("/healthz").status_code == 200 for _ in range(10))
        text = client.get("/metrics").text
        assert 'status="429"' in text
    with TestClient(create_app(_config(tmp_path))) as client:  # off by default
        assert all(client.get("/stats/histogram").status_code == 200 for _ in range(20))


# -- the body limit -------------------------------------------------------------------------------


def test_the_default_body_limit_fits_the_largest_batch_post_events_accepts(tmp_path):
    body = json.dumps(_events(10_000), indent=2).encode()  # indented: larger than any client sends
    assert len(body) < DEFAULT_MAX_BODY
    with TestClient(create_app(_config(tmp_path, bootstrap=None))) as client:
        r = client.post("/events", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 503 and "no Kafka configured" in r.json()["detail"]  # read, checked, to Kafka
        too_many = json.dumps(_events(10_001), separators=(",", ":")).encode()
        r = client.post("/events", content=too_many, headers={"Content-Type": "application/json"})
        assert r.status_code == 422 and "at most 10,000" in r.json()["detail"]


def _raw_request(port: int, head: bytes, body_chunks=(), timeout: float = 10.0) -> tuple[bytes, float]:
    """Send a request's head (and optionally body chunks) on a plain socket; the response's
    first bytes and the seconds until they came."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        t0 = time.monotonic()
        s.sendall(head)
        for chunk in body_chunks:
            try:
                s.sendall(chunk)
            except OSError:  # the server answered and closed: it stopped reading
                break
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
            more = s.recv(65536)
            if not more:
                break
            data += more
        return data, time.monotonic() - t0


def _length(response: bytes) -> int:
    for line in response.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":", 1)[1])
    return 0


def test_a_20_mb_body_is_refused_before_it_is_read(tmp_path):
    with ServerThread(create_app(_config(tmp_path, bootstrap=None))) as server:
        # Content-Length over the limit: 413 without sending one byte of the body
        head = (f"POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Content-Length: {20 * MB}\r\n\r\n").encode()  # fmt: skip
        data, took = _raw_request(server.port, head)
        assert data.startswith(b"HTTP/1.1 413"), data[:200]
        assert b'{"detail": "request body larger than 4,194,304 bytes' in data
        print(f"20 MB Content-Length refused in {took * 1000:.1f} ms")
        assert took < 1.0
        # chunked, no length: read only until past the limit, then 413
        head = (b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n")  # fmt: skip
        mb = b"100000\r\n" + b" " * MB + b"\r\n"  # one chunk of 1 MiB (hex length)
        data, took = _raw_request(server.port, head, [mb] * 20)
        assert data.startswith(b"HTTP/1.1 413"), data[:200]
        print(f"20 MB chunked body refused in {took * 1000:.1f} ms")
        # the whole 20 MB sent by a real client: refused, quickly
        import httpx

        t0 = time.monotonic()
        try:
            r = httpx.post(server.url + "/events", content=b"[" + b" " * (20 * MB) + b"]", timeout=10)
            assert r.status_code == 413 and r.json()["detail"].startswith("request body larger")
        except httpx.TransportError:
            pass  # the server answered 413 and closed while the client was still writing
        took = time.monotonic() - t0
        print(f"20 MB body posted with httpx answered in {took * 1000:.1f} ms")
        assert took < 1.0
        # a small chunked body still reaches the endpoint whole
        body = json.dumps(_events(3)).encode()
        chunks = [f"{len(body):x}\r\n".encode() + body + b"\r\n", b"0\r\n\r\n"]
        data, _ = _raw_request(server.port, head, chunks)
        assert data.startswith(b"HTTP/1.1 503") and b"no Kafka configured" in data


# -- POST /events in bounded time -----------------------------------------------------------------


def test_an_unreachable_broker_is_a_503_within_the_timeout(tmp_path):
    closed = f"127.0.0.1:{free_port_pair()}"  # nothing listens there
    for timeout in (1.0, 5.0):  # 5.0: the default
        with TestClient(create_app(_config(tmp_path, bootstrap=closed, kafka_timeout=timeout))) as client:
            t0 = time.monotonic()
            r = client.post("/events", json=_events(1)[0])
            took = time.monotonic() - t0
            assert r.status_code == 503 and "Kafka" in r.json()["detail"], r.text
            print(f"unreachable broker, --kafka-timeout {timeout:g}: 503 in {took:.2f} s")
            assert took <= timeout + 1.0
            t0 = time.monotonic()  # while it is down, later requests fail fast
            assert client.post("/events", json=_events(1)[0]).status_code == 503
            assert time.monotonic() - t0 < 0.5


@pytest.mark.integration
def test_a_missing_topic_hung_the_producer_and_is_now_created(kafka, topic, tmp_path):
    """The issue: the local broker does not auto-create topics, and a producer waits for the
    missing topic's metadata until max_block_ms (kafka-python's default: 60 s). Reproduced here
    with a 2 s max_block_ms, then POST /events against the same broker and a missing topic."""
    from kafka.admin import KafkaAdminClient
    from kafka.errors import KafkaTimeoutError

    from streamrec.kafka_admin import new_producer

    p = new_producer(kafka, timeout=5.0, max_block_ms=2000)
    try:
        t0 = time.monotonic()
        with pytest.raises(KafkaTimeoutError):
            p.send(topic, key=b"1", value=b"{}").get(timeout=10)
        assert time.monotonic() - t0 >= 1.9  # it waited for metadata until max_block_ms
    finally:
        p.close(timeout=2)
    admin = KafkaAdminClient(bootstrap_servers=kafka)
    try:
        assert topic not in admin.list_topics()
        with TestClient(create_app(_config(tmp_path, bootstrap=kafka, topic=topic))) as client:
            t0 = time.monotonic()
            r = client.post("/events", json=_events(3))
            took = time.monotonic() - t0
            body = r.json()
            assert r.status_code == 202 and (body["accepted"], body["topic"]) == (3, topic), r.text
            assert body["read_token"] == r.headers["X-Streamrec-Read-Token"]  # 3 events, one partition
            print(f"POST /events with the topic missing: created and 202 in {took:.2f} s")
            assert took < 5.0
            t0 = time.monotonic()
            assert client.post("/events", json=_events(1)[0]).status_code == 202
            print(f"next POST /events: {1000 * (time.monotonic() - t0):.1f} ms")
        (described,) = admin.describe_topics([topic])
        assert len(described["partitions"]) == 3  # as `stream` and `replay` create it
    finally:
        admin.close()

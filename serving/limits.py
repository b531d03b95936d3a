"""Bounded requests: a body-size limit applied before the body is read, and per-client rate limits.

Both are pure ASGI middleware (no BaseHTTPMiddleware: its cost is paid by every request), and
both answer with the API's error shape, a JSON `{"detail": ...}`.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections.abc import Callable

DEFAULT_MAX_BODY = 4 * 1024 * 1024  # 4 MiB: a 10,000-event batch is ~1 MB compact, ~2.5 MB indented
# Requests never rate-limited: probes, scrapes and the dashboard's own files.
UNLIMITED_PATHS = ("/healthz", "/readyz", "/metrics", "/static/", "/favicon.ico")


async def _send_json(send, status: int, detail: str, headers: list[tuple[bytes, bytes]] = ()) -> None:
    """A JSON error; the API's exception handlers answer the same shape."""
    body = json.dumps({"detail": detail}).encode()
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                    *headers],
    })  # fmt: skip
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """413 for a body over `max_bytes`, before reading it: a Content-Length over the limit is
    refused at once; a body without one (chunked) is read until it passes the limit, then
    refused, so no request makes the server hold more than `max_bytes` of it."""

    def __init__(self, app, max_bytes: int = DEFAULT_MAX_BODY):
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> str:
        return f"request body larger than {self.max_bytes:,} bytes (the server's --max-body-bytes)"

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = chunked = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = value
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
        if length is not None:
            try:
                n = int(length)
            except ValueError:
                return await _send_json(send, 400, "Content-Length is not a number")
            if n > self.max_bytes:
                return await _send_json(send, 413, self._too_large(), [(b"connection", b"close")])
            return await self.app(scope, receive, send)  # the server stops at Content-Length
        if not chunked:
            return await self.app(scope, receive, send)  # no body
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                return await _send_json(send, 413, self._too_large(), [(b"connection", b"close")])
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class TokenBucket:
    """Token buckets per key: `rate` tokens a second, at most `burst` held; a request takes one.

    `take` is given the time, so the arithmetic is tested with explicit times. A bucket that has
    refilled is the same as none, so idle keys are dropped when there are more than `max_keys`."""

    def __init__(self, rate: float, burst: float | None = None, max_keys: int = 100_000):
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else max(1.0, rate))
        self.max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)
        self._lock = threading.Lock()

    def take(self, key: str, now: float) -> float:
        """0 when a token was taken, else the seconds until one is available (take nothing)."""
        with self._lock:
            tokens, at = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + max(0.0, now - at) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                if len(self._buckets) > self.max_keys:
                    self._prune(now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / self.rate

    def _prune(self, now: float) -> None:
        for k in [k for k, (t, at) in self._buckets.items() if t + (now - at) * self.rate >= self.burst]:
            del self._buckets[k]
        if len(self._buckets) > self.max_keys:  # all busy: forget the oldest (they may burst once more)
            for k, _ in sorted(self._buckets.items(), key=lambda kv: kv[1][1])[: len(self._buckets) // 10]:
                del self._buckets[k]


RATE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*/\s*(s|sec|second|m|min|minute)\s*$")


def parse_rate(text: str) -> float:
    """`10/s` or `600/min` as requests per second."""
    m = RATE.match(text)
    if not m or float(m.group(1)) <= 0:
        raise ValueError(f"expected a rate like 10/s or 600/min, got {text!r}")
    return float(m.group(1)) / (60.0 if m.group(2).startswith("m") else 1.0)


def client_address(scope) -> str:
    client = scope.get("client")
    return f"addr:{client[0]}" if client else "addr:unknown"


class RateLimit:
    """429 with `Retry-After` (whole seconds, at least 1) once a key's bucket is empty. The key is
    `key_of(scope)`: the API key's name when auth is on and the key is valid, else the client
    address. Probes, metrics and static files are never limited."""

    def __init__(self, app, bucket: TokenBucket, key_of: Callable[[dict], str] = client_address):
        self.app = app
        self.bucket = bucket
        self.key_of = key_of

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"].startswith(UNLIMITED_PATHS):
            return await self.app(scope, receive, send)
        wait = self.bucket.take(self.key_of(scope), time.monotonic())
        if wait > 0:
            retry = max(1, math.ceil(wait))
            detail = f"rate limit of {self.bucket.rate:g} requests/s exceeded; retry in {retry} s"
            return await _send_json(send, 429, detail, [(b"retry-after", str(retry).encode())])
        return await self.app(scope, receive, send)

"""The `ratings` topic contract, shared by the producer (encode) and the stream (validate).

key   = user id as a decimal string
value = {"user_id": int, "movie_id": int, "rating": float, "timestamp": int}   (UTF-8 JSON)
timestamp is the MovieLens event time in epoch seconds; Kafka's record timestamp is the
produce time, from which end-to-end latency is measured.
"""

from __future__ import annotations

import json
from typing import Any

TOPIC = "ratings"
FIELDS = ("user_id", "movie_id", "rating", "timestamp")
MIN_RATING, MAX_RATING = 0.5, 5.0
MAX_ID = 2**31 - 1
# MovieLens starts in 1995; anything before 1990 or after 2100 is an absurd event time.
MIN_TS, MAX_TS = 631_152_000, 4_102_444_800


def valid_rating(r: float) -> bool:
    """The rating domain: 0.5 to 5.0 in steps of 0.5 (NaN and infinities are outside)."""
    return MIN_RATING <= r <= MAX_RATING and r * 2 == int(r * 2)


def encode(user_id: int, movie_id: int, rating: float, timestamp: int) -> tuple[bytes, bytes]:
    """(key, value) bytes for one rating event. Formatted by hand: 3x faster than json.dumps."""
    value = (
        f'{{"user_id": {user_id}, "movie_id": {movie_id}, '
        f'"rating": {float(rating)!r}, "timestamp": {timestamp}}}'
    )
    return str(user_id).encode(), value.encode()


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _DuplicateKey
    return obj


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")  # Python's json accepts NaN/Infinity; RFC 8259 does not


def validate(raw: bytes | str | None) -> tuple[dict[str, Any] | None, str | None]:
    """The validator: (event, None) for a good record, (None, reason) for a bad one.

    Strict RFC 8259: one JSON value and nothing after it, double-quoted strings, no NaN or
    Infinity, no raw control characters, no duplicate keys (a reader that keeps the first or
    the last of two values is guessing). The stream runs this same function on every record
    its fast path does not prove valid (streaming/parse.py), so both give the same reasons.
    """
    if raw is None or len(raw) == 0:  # a Kafka tombstone or a zero-length value
        return None, "empty value"
    if isinstance(raw, bytes | bytearray):
        try:
            raw = raw.decode("utf-8")  # strictly: json.loads(bytes) would also guess UTF-16/32
        except UnicodeDecodeError:
            return None, "not UTF-8"
    obj, reason = loads_strict(raw)
    return (None, reason) if reason else check(obj)


def loads_strict(text: str) -> tuple[Any, str | None]:
    """(value, None) for RFC 8259 JSON text, else (None, "not JSON" or "duplicate key")."""
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant), None
    except _DuplicateKey:
        return None, "duplicate key"
    except (ValueError, RecursionError):  # RecursionError: nested deeper than Python's stack
        return None, "not JSON"


def check(obj: Any) -> tuple[dict[str, Any] | None, str | None]:
    """The contract's rules on an already parsed JSON value (what `validate` applies after parsing;
    the HTTP API's `POST /events` calls this, so both give the same reason for the same event)."""
    if not isinstance(obj, dict):
        return None, "not a JSON object"
    for f in FIELDS:
        if f not in obj or obj[f] is None:
            return None, f"missing field {f}"
    for f in ("user_id", "movie_id", "timestamp"):
        v = obj[f]
        if isinstance(v, bool) or not isinstance(v, int):
            return None, f"{f} is not an integer"
    r = obj["rating"]
    if isinstance(r, bool) or not isinstance(r, int | float):
        return None, "rating is not a number"
    if not valid_rating(r):
        return None, "rating outside 0.5..5.0 in steps of 0.5"
    if not (0 < obj["user_id"] <= MAX_ID) or not (0 < obj["movie_id"] <= MAX_ID):
        return None, "id out of range"
    if not (MIN_TS <= obj["timestamp"] <= MAX_TS):
        return None, "timestamp out of range"
    return {f: obj[f] for f in FIELDS}, None

# ruff: noqa: E501  (a table: one kind per line reads better than wrapped lambdas)
"""A seeded corpus of bad (and tricky good) `ratings` records, each kind with the reason the
contract gives it. Shared by the validator agreement test (Spark vs Python), the stream fuzz
test and the fault benchmark, so all of them speak about the same inputs."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from streamrec.events import encode

TS = 1_500_000_000


@dataclass(frozen=True)
class Kind:
    name: str
    make: Callable[[random.Random], bytes]
    reason: str | None  # None: a valid record (a tricky one the fast path may not take)


def _event(rng: random.Random) -> dict:
    return {"user_id": rng.randint(1, 10_000), "movie_id": rng.randint(1, 200_000),
            "rating": rng.randint(1, 10) / 2, "timestamp": TS + rng.randint(0, 10**8)}  # fmt: skip


def _obj(rng: random.Random, **override) -> bytes:
    e = _event(rng)
    e.update(override)
    for k in [k for k, v in override.items() if v is _DROP]:
        del e[k]
    return json.dumps(e, allow_nan=True).encode()


_DROP = object()


def _canonical(rng: random.Random) -> bytes:
    return encode(*_event(rng).values())[1]


def _replace(rng: random.Random, old: str, new: str) -> bytes:
    return _canonical(rng).replace(old.encode(), new.encode(), 1)


KINDS: list[Kind] = [
    # -- bytes that are not UTF-8 text
    Kind(
        "random bytes", lambda r: bytes(r.randrange(128, 256) for _ in range(r.randint(1, 40))), "not UTF-8"
    ),
    Kind("UTF-16 with BOM", lambda r: _canonical(r).decode().encode("utf-16"), "not UTF-8"),
    Kind("latin-1 byte in a string", lambda r: _canonical(r)[:-1] + b', "note": "caf\xe9"}', "not UTF-8"),
    Kind("truncated multi-byte char", lambda r: _canonical(r)[:-1] + b', "n": "\xe2\x82"}', "not UTF-8"),
    # -- text that is not RFC 8259 JSON (Spark's reader accepts several of these)
    Kind("truncated JSON", lambda r: _canonical(r)[: r.randint(1, 30)], "not JSON"),
    Kind("single quotes", lambda r: _canonical(r).replace(b'"', b"'"), "not JSON"),
    Kind("unquoted keys", lambda r: _canonical(r).replace(b'"', b""), "not JSON"),
    Kind("trailing garbage", lambda r: _canonical(r) + b" trailing", "not JSON"),
    Kind("two objects back to back", lambda r: _canonical(r) + _canonical(r), "not JSON"),
    Kind("NaN rating", lambda r: _obj(r, rating=float("nan")), "not JSON"),
    Kind(
        "Infinity timestamp",
        lambda r: _replace(r, f'"timestamp": {TS}'[:14], '"timestamp": Infinity, "x": '),
        "not JSON",
    ),
    Kind("raw control character in a string", lambda r: _canonical(r)[:-1] + b', "n": "a\x01b"}', "not JSON"),
    Kind("raw NUL in a number", lambda r: _replace(r, '"timestamp": 1', '"timestamp": 1\x00'), "not JSON"),
    Kind("leading zero", lambda r: _replace(r, '"user_id": ', '"user_id": 0'), "not JSON"),
    Kind("trailing comma", lambda r: _canonical(r)[:-1] + b",}", "not JSON"),
    Kind("UTF-8 BOM", lambda r: b"\xef\xbb\xbf" + _canonical(r), "not JSON"),
    Kind("deeply nested", lambda r: b"[" * r.randint(2000, 5000), "not JSON"),
    Kind("whitespace only", lambda r: b" \n\t" * r.randint(1, 5), "not JSON"),
    Kind("plain text", lambda r: r.choice([b"hello", b"user 1 rated 5", b"<xml/>", b"--"]), "not JSON"),
    # -- JSON, but not the contract
    Kind("array", lambda r: json.dumps(list(_event(r).values())).encode(), "not a JSON object"),
    Kind("string", lambda r: json.dumps(_canonical(r).decode()).encode(), "not a JSON object"),
    Kind("null", lambda r: b"null", "not a JSON object"),
    Kind("empty value", lambda r: b"", "empty value"),
    Kind(
        "duplicate key, wrong type last", lambda r: _canonical(r)[:-1] + b', "user_id": "x"}', "duplicate key"
    ),
    Kind(
        "duplicate key, same value",
        lambda r: (lambda c: c[:-1] + b", " + c[1:])(_canonical(r)),
        "duplicate key",
    ),
    Kind(
        "missing field",
        lambda r: _obj(r, **{r.choice(["user_id", "movie_id", "rating", "timestamp"]): _DROP}),
        "missing field",
    ),
    Kind("null field", lambda r: _obj(r, movie_id=None), "missing field movie_id"),
    Kind("id as a string", lambda r: _obj(r, user_id=str(r.randint(1, 99))), "user_id is not an integer"),
    Kind("id as a float", lambda r: _obj(r, movie_id=r.randint(1, 99) + 0.5), "movie_id is not an integer"),
    Kind(
        "id as an integral float",
        lambda r: _obj(r, user_id=float(r.randint(1, 99))),
        "user_id is not an integer",
    ),
    Kind("id as a boolean", lambda r: _obj(r, user_id=True), "user_id is not an integer"),
    Kind("timestamp as a float", lambda r: _obj(r, timestamp=TS + 0.5), "timestamp is not an integer"),
    Kind("rating as a string", lambda r: _obj(r, rating="4"), "rating is not a number"),
    Kind(
        "rating off the half steps",
        lambda r: _obj(r, rating=r.choice([4.2, 3.3, 0.1])),
        "rating outside 0.5..5.0 in steps of 0.5",
    ),
    Kind(
        "rating out of range",
        lambda r: _obj(r, rating=r.choice([0, -1, 5.5, 10])),
        "rating outside 0.5..5.0 in steps of 0.5",
    ),
    Kind(
        "rating overflowing a double",
        lambda r: _replace(r, '"rating": ', '"rating": 1e400, "r": '),
        "rating outside 0.5..5.0 in steps of 0.5",
    ),
    Kind("id zero or negative", lambda r: _obj(r, user_id=r.choice([0, -1, -(2**31)])), "id out of range"),
    Kind("id above 2^31-1", lambda r: _obj(r, movie_id=r.choice([2**31, 2**40])), "id out of range"),
    Kind(
        "id above 2^63", lambda r: _obj(r, movie_id=r.choice([2**63, 2**64 + 1, 10**30])), "id out of range"
    ),
    Kind(
        "timestamp out of range",
        lambda r: _obj(r, timestamp=r.choice([0, 12, 10**12])),
        "timestamp out of range",
    ),
    # -- valid, but not in the producer's shape (the slow path must accept them)
    Kind("valid, keys reordered", lambda r: json.dumps(dict(reversed(_event(r).items()))).encode(), None),
    Kind("valid, extra field", lambda r: _obj(r, source="app"), None),
    Kind("valid, escaped key", lambda r: _replace(r, '"user_id"', '"user\\u005fid"'), None),
    Kind("valid, integer rating", lambda r: _obj(r, rating=r.randint(1, 5)), None),
    Kind("valid, exponent rating", lambda r: _replace(r, '"rating": ', '"rating": 0.45e1, "x": '), None),
    Kind("valid, no whitespace", lambda r: json.dumps(_event(r), separators=(",", ":")).encode(), None),
]
BAD_KINDS = [k for k in KINDS if k.reason is not None]


def corpus(n: int, seed: int = 7) -> Iterator[tuple[str, bytes, str | None]]:
    """`n` records cycling through every kind: (kind name, bytes, expected reason or None).
    For "missing field" the expected reason is only a prefix (the field is drawn at random)."""
    rng = random.Random(seed)
    for i in range(n):
        kind = KINDS[i % len(KINDS)]
        yield kind.name, kind.make(rng), kind.reason


def reason_matches(expected: str | None, got: str | None) -> bool:
    return got == expected or (expected == "missing field" and bool(got) and got.startswith("missing field "))

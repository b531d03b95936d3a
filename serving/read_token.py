"""Read tokens: cross-replica read-your-writes without asking Kafka on every GET.

`POST /events` answers with the acknowledged events' largest offset per partition of the ratings
topic, as `read_token` in its body and the `X-Streamrec-Read-Token` header. The format is
`PARTITION:OFFSET` pairs joined by commas, partitions ascending, e.g. `0:123,2:456` (the events
went to partitions 0 and 2; offset 123 is the last of them in partition 0). A client passes it to
`GET /recommendations/{id}` as `?after=` (or the `X-Streamrec-After` header); the server waits,
at most `--read-token-wait` seconds, until its own tail of the topic has read past those offsets
(serving.topic_tail), so the list reflects those events on any replica. Tokens of several POSTs
may be joined with a comma: a partition named twice takes its largest offset; so are the
parameter and the header when a request gives both.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from streamrec.errors import StreamrecError

MAX_LENGTH = 16_384  # characters in a token; the ratings topic has a handful of partitions
DEFAULT_WAIT_S = 1.0  # the most a GET with a token waits for this server's tail
_PAIR_TEXT = r"(0|[1-9][0-9]{0,4}):(0|[1-9][0-9]{0,17})"
_PAIR = re.compile(_PAIR_TEXT)
PATTERN = f"^{_PAIR_TEXT}(,{_PAIR_TEXT})*$"  # the OpenAPI document's pattern; parse() is the check


class BadToken(StreamrecError):
    """A read token that does not parse: 400."""


def encode(acked: Iterable[tuple[int, int]]) -> str:
    """`(partition, offset)` of each acknowledged event -> the token (largest offset per partition)."""
    last: dict[int, int] = {}
    for partition, offset in acked:
        last[partition] = max(offset, last.get(partition, -1))
    return ",".join(f"{p}:{o}" for p, o in sorted(last.items()))


def parse(token: str) -> dict[int, int]:
    """The token -> {partition: the last offset to be read}. Raises BadToken saying why."""
    if len(token) > MAX_LENGTH:
        raise BadToken(f"read token longer than {MAX_LENGTH} characters")
    out: dict[int, int] = {}
    for pair in token.split(","):
        m = _PAIR.fullmatch(pair)
        if m is None:
            raise BadToken(
                f"read token {_shown(token)} is not PARTITION:OFFSET pairs joined by commas "
                f"(as POST /events returns it, e.g. 0:123,1:456): bad pair {_shown(pair)}"
            )
        partition, offset = int(m[1]), int(m[2])
        out[partition] = max(offset, out.get(partition, -1))
    return out


def joined(tokens: Iterable[str | None]) -> dict[int, int] | None:
    """Several tokens (the `after` parameter and the header) as one: each parsed, a partition
    named twice takes its largest offset, as in a comma-joined token; None when none is given."""
    out: dict[int, int] | None = None
    for token in tokens:
        if token is None:
            continue
        out = out or {}
        for partition, offset in parse(token).items():
            out[partition] = max(offset, out.get(partition, -1))
    return out


def _shown(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:40] + "...")

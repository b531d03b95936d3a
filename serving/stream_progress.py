"""How far the stream has read the topic, from its Spark checkpoints (read-only).

A query's checkpoint has `offsets/<batch>` (written when a batch is planned: its end offsets per
partition) and `commits/<batch>` (written after the batch's sink transaction committed). So the
offsets of the newest committed batch are offsets whose effects are in the sink for certain.
"""

from __future__ import annotations

import json
from pathlib import Path


def _batch_offsets(log: Path, batch: int, topic: str | None) -> dict[int, int] | None:
    lines = (log / str(batch)).read_text().splitlines()
    sources = json.loads(lines[-1])  # one Kafka source per query: {"topic": {"0": next, ...}}
    if not isinstance(sources, dict):
        return None
    for name, offsets in sources.items():
        if topic is None or name == topic:
            return {int(p): int(o) for p, o in offsets.items()}
    return None


def _batches(folder: Path) -> list[int]:
    try:
        return sorted((int(p.name) for p in folder.iterdir() if p.name.isdigit()), reverse=True)
    except OSError:
        return []


def planned_offsets(checkpoint: Path, topic: str | None = None) -> dict[int, int] | None:
    """Partition -> next offset to read, from a query's newest offsets log entry (planned, maybe
    not committed yet: what the query has started on)."""
    for b in _batches(checkpoint / "offsets"):
        try:
            return _batch_offsets(checkpoint / "offsets", b, topic)
        except (OSError, ValueError, IndexError):
            continue  # being written: take the one before
    return None


def committed_offsets(checkpoint: Path, topic: str | None = None) -> dict[int, int] | None:
    """Partition -> next offset after the newest *committed* batch (its outputs are in the sink);
    None when the query has committed nothing (or the checkpoint is not on this machine)."""
    for b in _batches(checkpoint / "commits"):
        try:
            return _batch_offsets(checkpoint / "offsets", b, topic)
        except (OSError, ValueError, IndexError):
            continue  # pruned already, or unreadable: an older commit is still a lower bound
    return None


class CommittedOffsets:
    """`committed_offsets` of one query, re-read only when a newer commit appears."""

    def __init__(self, checkpoint: Path, topic: str):
        self.checkpoint = checkpoint
        self.topic = topic
        self._batch = -1
        self._offsets: dict[int, int] | None = None

    def read(self) -> dict[int, int] | None:
        batches = _batches(self.checkpoint / "commits")
        if not batches:
            return None
        if batches[0] != self._batch:
            offsets = committed_offsets(self.checkpoint, self.topic)
            if offsets is not None:
                self._batch, self._offsets = batches[0], offsets
        return self._offsets

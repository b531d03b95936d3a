"""What the stream has applied, as this server has read it: the offsets a pending event may be
dropped at (serving.pending) and the tail starts from (serving.topic_tail).

Two views of the topic, per partition (next offset):

- `logged`: what the ratings index's current snapshot holds of the event log (the aggregates
  query writes a batch's events there before its sink commit);
- `listed`: the fold-in query's newest committed batch (its users' lists and vectors are in the
  sink, from its checkpoint under the stream's storage).

An event may leave the buffer once both cover it: the fold-in at request time then finds it in
the index, and the sink's list includes it. Without the fold-in checkpoint on this machine only
`logged` counts (the sink's list may then trail the event log by a batch).
"""

from __future__ import annotations

from pathlib import Path

from .lists import Lists
from .stream_progress import CommittedOffsets


class Applied:
    def __init__(self, lists: Lists, checkpoint_dir: Path, topic: str):
        self.lists = lists
        self._foldin = CommittedOffsets(checkpoint_dir / "foldin", topic)

    def covered(self) -> tuple[dict[int, int], dict[int, int] | None] | None:
        """(applied, listed) now, and a look at the event log is started when one is due; None
        while no model (hence no ratings index) is loaded."""
        index = self.lists.ratings_index()
        if index is None:
            return None
        index.refresh_soon()  # without requests nobody else would: the buffer would only grow
        logged = index.next_offsets
        listed = self._foldin.read()
        if listed is None:
            return logged, None
        return {p: min(o, listed.get(p, 0)) for p, o in logged.items()}, listed

    def start_offsets(self) -> dict[int, int]:
        """Where a tail starts: partition -> the next offset both views cover (a partition not
        named: its beginning). Loads CURRENT first (ModelStoreError before a publish)."""
        self.lists.current()
        covered = self.covered()
        return {} if covered is None else covered[0]

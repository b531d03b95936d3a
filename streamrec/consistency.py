"""What the stream's model was trained on, so replay and retrain agree with it by default.

The stream seeds its aggregates (and the fold-in state) from the history CURRENT was trained
on. Replaying any of those events would count them twice, and retraining on a different cut of
the data folder would mix two histories. These helpers make the consistent choice the default
and name the unsafe one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .errors import StreamrecError
from .history import HistorySpec, window
from .model_store import ModelStore


@dataclass(frozen=True)
class TrainedOn:
    version: str
    spec: HistorySpec

    @property
    def cut(self) -> str:
        s = self.spec
        parts = [f"split-at {s.split_at:g}" if s.split_at is not None else "",
                 f"until {s.until}" if s.until is not None else ""]  # fmt: skip
        return ", ".join(p for p in parts if p) or "all of it"


def trained_on(data: Path, store: ModelStore | None = None) -> TrainedOn | None:
    """CURRENT's data-folder history when CURRENT was trained on `data`, else None."""
    store = store or ModelStore()
    version = store.current_version()
    if version is None or store.check(version):
        return None
    spec = store.metadata(version).history
    if spec is None or Path(spec.data).resolve() != Path(data).resolve():
        return None
    return TrainedOn(version, spec)


def refuse_overlap(events: pd.DataFrame, ratings: pd.DataFrame, current: TrainedOn) -> None:
    """Raise when `events` (about to be replayed) include events CURRENT was trained on."""
    history = window(ratings, until=current.spec.until, split_at=current.spec.split_at, part="before")
    key = ["user_id", "movie_id", "timestamp"]
    overlap = len(events[key].merge(history[key].drop_duplicates(), on=key))
    if overlap and current.spec.split_at is None and current.spec.until is None:
        raise StreamrecError(
            f"{current.version} was trained on all of {current.spec.data}, and the stream's aggregates "
            "are seeded from it: nothing is left to replay that it has not seen (replayed events would "
            "count twice). Train a base model with --split-at F (e.g. 0.8) first, or pass --allow-overlap"
        )
    if overlap:
        raise StreamrecError(
            f"{overlap:,} of the {len(events):,} events to replay are in the history "
            f"{current.version} was trained on ({current.cut} of {current.spec.data}), which the "
            "stream's aggregates are seeded from: they would count twice. Replay without "
            "--split-at/--since/--until to send what it was not trained on, or pass --allow-overlap"
        )

"""Ids to row indices: every table of factors keeps its ids sorted, and looks them up here."""

from __future__ import annotations

import numpy as np


def rows(sorted_ids: np.ndarray, ids) -> tuple[np.ndarray, np.ndarray]:
    """(row index, known mask) of `ids` in `sorted_ids`; an unknown id gets a valid row and False."""
    ids = np.asarray(ids, dtype=np.int64)
    if len(sorted_ids) == 0:
        return np.zeros(len(ids), np.int64), np.zeros(len(ids), bool)
    pos = np.clip(np.searchsorted(sorted_ids, ids), 0, len(sorted_ids) - 1)
    return pos, sorted_ids[pos] == ids


def rows_of_known(sorted_ids: np.ndarray, ids) -> np.ndarray:
    """Row indices of ids that must all be present (a missing one is a bug, not bad input)."""
    pos, known = rows(sorted_ids, ids)
    if not known.all():
        missing = np.asarray(ids)[~known][:5].tolist()
        raise LookupError(f"ids {missing} are not in the table (expected every id to be there)")
    return pos

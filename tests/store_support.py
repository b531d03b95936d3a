"""Model-store helpers for tests that need a CURRENT without training one."""

from __future__ import annotations

from pathlib import Path

from streamrec.settings import BUNDLED_DATA


def current_model(home: Path, **history) -> str:
    """A minimal CURRENT whose metadata says it was trained on the bundled data with `history`."""
    import numpy as np

    from streamrec.model_store import ModelStore

    store = ModelStore(home / "models")
    staged = store.staging_dir()
    np.savez(staged / "factors.npz", item_ids=np.arange(3))
    spec = {
        "data": str(BUNDLED_DATA.resolve()),
        "until": None,
        "split_at": None,
        "event_log": None,
        **history,
    }
    return store.publish(staged, {"params": {"reg": 0.1}, "history": spec})

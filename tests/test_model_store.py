"""The model store without Spark: tiny versions in a temporary directory."""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest

from streamrec.errors import ModelStoreError
from streamrec.model_store import ModelStore


def _publish(store: ModelStore) -> str:
    staged = store.staging_dir()
    np.savez(staged / "factors.npz", item_ids=np.arange(3))
    return store.publish(staged, {"params": {}})


def _numbered(store: ModelStore, number: int) -> str:
    """A complete version named v<number> (as if that many had been published before)."""
    version = _publish(store)
    name = f"v{number:04d}"
    os.rename(store.root / version, store.root / name)
    return name


def test_versions_sort_by_number_so_prune_never_deletes_the_newest(tmp_path):
    store = ModelStore(tmp_path)
    for number in (9998, 9999, 10000):
        _numbered(store, number)
    assert store.versions() == ["v9998", "v9999", "v10000"]  # as text, v10000 sorted first
    assert _publish(store) == "v10001"
    store.set_current("v9998")
    assert store.prune(keep=2) == ["v9999"]  # the oldest, except CURRENT
    assert store.versions() == ["v9998", "v10000", "v10001"]


def test_publish_fails_clearly_on_an_error_that_a_retry_cannot_fix(tmp_path, monkeypatch):
    store = ModelStore(tmp_path)
    calls = []

    def full_disk(src, dst):
        calls.append(dst)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "rename", full_disk)
    with pytest.raises(ModelStoreError, match="No space left on device"):
        _publish(store)
    assert len(calls) == 1  # before: retried forever
    monkeypatch.undo()
    assert store.current_version() is None and store.versions() == []


def test_publish_retries_a_lost_race_for_the_version_name(tmp_path, monkeypatch):
    store = ModelStore(tmp_path)
    real = os.rename
    lost = []

    def race_once(src, dst):
        if not lost:
            lost.append(dst)
            raise OSError(errno.ENOTEMPTY, "Directory not empty")
        return real(src, dst)

    monkeypatch.setattr(os, "rename", race_once)
    assert _publish(store) == "v0001" and lost
    assert store.check("v0001") is None


def test_staging_left_by_a_dead_publisher_is_removed_and_a_live_ones_kept(tmp_path):
    import subprocess
    import sys

    store = ModelStore(tmp_path)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()  # fmt: skip
    (tmp_path / f".tmp-{dead}-1").mkdir()
    (tmp_path / f".tmp-{dead}-1" / "factors.npz").write_bytes(b"half written")
    (tmp_path / f".CURRENT.{dead}.2").write_text("v0001\n")
    mine = store.staging_dir()  # this process is alive: a publish in progress
    assert sorted(store.clean_staging()) == sorted([f".tmp-{dead}-1", f".CURRENT.{dead}.2"])
    assert mine.is_dir() and not (tmp_path / f".tmp-{dead}-1").exists()


def test_metadata_is_typed_and_knows_its_format():
    from streamrec.errors import ModelStoreError
    from streamrec.model_meta import FORMAT, ModelMetadata

    d = {"version": "v0003", "format": FORMAT, "created_at": "2026-11-30T10:00:00+00:00",
         "params": {"reg": 0.15, "min_support": 10, "baseline": {"mean": 3.5, "user_reg": 5.0},
                    "ranking": {"rank": 32, "reg": 0.1, "alpha": 1.0, "threshold": 2.5}},
         "history": {"data": "/d", "until": None, "split_at": 0.8, "event_log": None},
         "metrics": {"rmse": 0.86}, "counts": {"users": 610}, "newest_event_ts": 1_500_000_000}  # fmt: skip
    m = ModelMetadata.from_dict(d)
    assert (m.reg, m.min_support, m.baseline.mean, m.ranking.alpha, m.history.split_at) == (
        0.15,
        10,
        3.5,
        1.0,
        0.8,
    )
    assert m.metric("rmse") == 0.86 and m.metric("ndcg_at_10") is None and m.serving_problem() is None
    assert m.to_dict() == d  # stored JSON round-trips unchanged
    old = ModelMetadata.from_dict({**d, "format": 1, "params": {"reg": 0.1}})
    assert old.format == 1 and "predates the ranking model" in old.serving_problem()
    with pytest.raises(ModelStoreError, match="malformed metadata"):
        ModelMetadata.from_dict({**d, "params": {"reg": "much"}})


def test_one_id_to_row_helper_for_every_table():
    import numpy as np

    from streamrec.ids import rows, rows_of_known

    table = np.array([3, 7, 10, 42], np.int64)
    pos, known = rows(table, [7, 5, 42, 99])
    assert known.tolist() == [True, False, True, False] and pos[known].tolist() == [1, 3]
    assert rows(np.array([], np.int64), [1])[1].tolist() == [False]
    assert rows_of_known(table, [42, 3]).tolist() == [3, 0]
    with pytest.raises(LookupError, match=r"\[5\]"):
        rows_of_known(table, [3, 5])


def _loadable(store: ModelStore, content=None) -> str:
    """A tiny version `load` accepts (3 movies, 2 users, rank 2), with a content map or without."""
    from streamrec.foldin import ItemFactors
    from streamrec.model_store import CONTENT_NPZ, write_npz

    staged = store.staging_dir()
    f = np.arange(6, dtype=np.float32).reshape(3, 2)
    items = ItemFactors(np.array([1, 2, 3]), f, None, 0.0, None, np.array([5, 1, 0]), 1)
    write_npz(
        staged / "factors.npz", items, np.array([10, 11]), f[:2], np.zeros(2), f, f[:2], np.array([2, 1])
    )
    if content is not None:
        content.save(staged / CONTENT_NPZ)
    meta = {"params": {"reg": 0.1, "ranking": {"rank": 2, "reg": 0.1, "alpha": 1.0, "threshold": 2.5}},
            "history": {"data": "/d", "until": None, "split_at": None, "event_log": None}}  # fmt: skip
    return store.publish(staged, meta)


def _content_map():
    import pandas as pd

    from streamrec.content import fit_content_map

    movies = pd.DataFrame({"movie_id": [1, 2, 3], "title": ["A (1990)", "B (2000)", "C"],
                           "genres": [["Drama"], ["Comedy"], ["Drama", "Comedy"]]})  # fmt: skip
    f = np.arange(6, dtype=np.float32).reshape(3, 2)
    return fit_content_map(movies, None, np.array([1, 2, 3]), f, np.array([5, 1, 1]))


def test_a_version_without_a_content_map_loads_with_none(tmp_path):
    store = ModelStore(tmp_path)
    assert store.load(_loadable(store)).content is None


def test_the_content_map_is_listed_checked_and_loaded(tmp_path):
    import pandas as pd

    from streamrec.model_store import CONTENT_NPZ

    store = ModelStore(tmp_path)
    cm = _content_map()
    version = _loadable(store, cm)
    assert CONTENT_NPZ in store.metadata(version).files
    model = store.load(version)
    assert model.content is not None and model.content.spec == cm.spec and model.content.rank == 2
    new = pd.DataFrame({"movie_id": [9, 7], "title": ["New (2024)", "Old (1950)"], "genres": [["Drama"], []]})
    ids, vectors = model.content.vectors(new, None)
    assert ids.tolist() == [7, 9] and vectors.dtype == np.float32 and vectors.shape == (2, 2)
    path = tmp_path / version / CONTENT_NPZ
    path.write_bytes(b"x" * path.stat().st_size)  # same size, garbage: check passes, load refuses
    with pytest.raises(ModelStoreError, match="content.npz is unreadable"):
        store.load(version)
    path.write_bytes(b"short")
    assert "content.npz" in store.check(version)

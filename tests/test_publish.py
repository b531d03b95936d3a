"""The quality gate's decision, without Spark: both models measured on one holdout."""

import json

from batch.publish import GATE_TOLERANCE, RANKING_GATE_TOLERANCE, _gate, _recorded_holdout
from streamrec.model_store import ModelStore


def same(rmse=0.85, current_rmse=0.85, ndcg=0.30, current_ndcg=0.30) -> dict:
    return {"basis": "test rows", "rmse": rmse, "current_rmse": current_rmse, "ndcg_at_10": ndcg,
            "current_ndcg_at_10": current_ndcg}  # fmt: skip


def recorded_store(tmp_path, metrics: dict, sample: dict | None = None) -> ModelStore:
    """A store whose CURRENT v0001 recorded `metrics` on its own holdout (of a user `sample`)."""
    import numpy as np

    store = ModelStore(tmp_path)
    staged = store.staging_dir()
    np.savez(staged / "factors.npz", item_ids=np.arange(3))
    store.publish(staged, {"metrics": metrics, "evaluation": {"sample": sample}})
    assert json.loads((tmp_path / "v0001" / "metadata.json").read_text())["metrics"] == metrics
    return store


def test_no_current_model_always_passes(tmp_path):
    assert _gate(None, None)["passed"] is True
    assert _recorded_holdout(ModelStore(tmp_path), None, {"rmse": 0.8}) is None


def test_refuses_a_worse_rmse_or_worse_lists_on_the_same_holdout():
    g = _gate("v0001", same(rmse=0.85 * (1 + GATE_TOLERANCE) + 0.001))
    assert g["passed"] is False and "RMSE" in g["reason"] and "v0001" in g["reason"]
    g = _gate("v0001", same(ndcg=0.30 * (1 - RANKING_GATE_TOLERANCE) - 0.001))
    assert g["passed"] is False and "NDCG@10" in g["reason"] and "test rows" in g["reason"]


def test_a_harder_holdout_is_not_a_worse_model(tmp_path):
    # The bug: CURRENT's figures were read from its own metadata (another holdout). A retrain that
    # adds new users with few ratings scores lower on its holdout than CURRENT did on its own,
    # though on the same new ratings it is as good; make demo's retrain was refused that way.
    store = recorded_store(tmp_path, {"rmse": 0.8484, "ndcg_at_10": 0.2987, "explicit_lists": {}})
    candidate = {"rmse": 0.8453, "ndcg_at_10": 0.2512}
    assert _gate("v0001", _recorded_holdout(store, "v0001", candidate))["passed"] is False
    g = _gate("v0001", same(ndcg=0.2512, current_ndcg=0.2490, rmse=0.8453, current_rmse=0.8600))
    assert g["passed"] is True and g["comparison"]["current_ndcg_at_10"] == 0.2490


def test_without_new_ratings_the_recorded_holdout_is_the_same_holdout(tmp_path):
    store = recorded_store(tmp_path, {"rmse": 0.85, "ndcg_at_10": 0.30, "explicit_lists": {}})
    g = _gate("v0001", _recorded_holdout(store, "v0001", {"rmse": 0.85, "ndcg_at_10": 0.20}))
    assert g["passed"] is False and "recorded holdout" in g["reason"]
    assert _gate("v0001", _recorded_holdout(store, "v0001", {"rmse": 0.85, "ndcg_at_10": 0.29}))["passed"]


def test_a_current_model_from_before_the_ranking_model_is_compared_on_rmse_only(tmp_path):
    store = recorded_store(tmp_path, {"rmse": 0.8, "ndcg_at_10": 0.9})  # its NDCG: an older model's lists
    assert _gate("v0001", _recorded_holdout(store, "v0001", {"rmse": 0.8, "ndcg_at_10": 0.1}))["passed"]
    assert not _gate("v0001", _recorded_holdout(store, "v0001", {"rmse": 2.0, "ndcg_at_10": 0.1}))["passed"]


def test_implausible_counts_are_refused_even_with_equal_scores():
    ok = {"users": 610, "movies": 9_724, "ratings": 100_836}
    assert _gate("v0001", same(), {"users": 640, "movies": 9_900, "ratings": 120_000}, ok)["passed"]
    transposed = {"users": 9_724, "movies": 610, "ratings": 100_836}  # movieId and userId swapped
    g = _gate("v0001", same(), transposed, ok)
    assert g["passed"] is False and "implausible data" in g["reason"] and "users" in g["reason"]
    g = _gate("v0001", same(), {"users": 610, "movies": 9_724, "ratings": 40_000}, ok)
    assert g["passed"] is False and "ratings" in g["reason"] and "fewer than half" in g["reason"]
    assert _gate("v0001", None, transposed, None)["passed"]  # CURRENT without counts: nothing to compare


def test_a_sampled_evaluation_is_compared_with_one_of_the_same_size_only(tmp_path):
    """Figures from a fit on a user sample and from a fit on all users are not comparable (the
    smaller training set loses by construction): no comparison then, not a false refusal."""
    metrics = {"rmse": 0.85, "ndcg_at_10": 0.30, "explicit_lists": {}}
    worse = {"rmse": 0.85, "ndcg_at_10": 0.20}
    five = {"limit": 5_000_000, "user_fraction": 0.2, "of_ratings": 25_000_000}
    sampled = recorded_store(tmp_path / "sampled", metrics, five)
    g = _gate("v0001", _recorded_holdout(sampled, "v0001", worse, {**five, "user_fraction": 0.19}))
    assert g["passed"] is False and "user sample of about 5,000,000" in g["reason"]
    assert _recorded_holdout(sampled, "v0001", worse, {**five, "limit": 1_000_000}) is None
    assert _recorded_holdout(sampled, "v0001", worse) is None  # the candidate on all, CURRENT not
    full = recorded_store(tmp_path / "full", metrics)
    assert _recorded_holdout(full, "v0001", worse, five) is None
    assert _gate("v0001", _recorded_holdout(full, "v0001", worse))["passed"] is False

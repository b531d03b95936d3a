"""List quality and its costs: the four evaluation protocols on the bundled data (served lists vs
popularity and EASE), the ranking model's confidence mapping sweep, LSH recall on its factors, and
the training time of both models against the explicit model alone (today's pipeline before the
ranking model)."""

from __future__ import annotations

import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from batch.evaluate import EvalOptions, run_evaluation
from batch.publish import TrainOptions, default_spec, run_training
from batch.train import (
    Params,
    RankingParams,
    evaluate,
    fit,
    fit_ranking,
    ranking_model_metrics,
    scorer_of,
    split,
    stored_users,
)
from bench.common import median
from serving.recommend import recall, similar_exact, similar_lsh
from streamrec.history import latest_per_pair, load_history
from streamrec.model_store import ModelStore
from streamrec.movielens import load_ratings
from streamrec.settings import BUNDLED_DATA

SWEEP = [(t, a) for t in (0.0, 2.5, 3.5) for a in (0.5, 1.0, 2.0)]  # (threshold, alpha)


def todays_pipeline(spark, tmp: Path) -> None:
    """`train` as it was before the ranking model: load, split, fit the explicit model (Spark's
    default 10 ALS blocks), evaluate, refit on everything, write its Parquet and NumPy copies."""
    spec = default_spec(BUNDLED_DATA, with_event_log=False)
    ratings = latest_per_pair(load_history(spec))
    train, test = split(ratings, "random", 0.2, 42)
    p = Params(blocks=10)
    m = fit(spark, train, p)
    evaluate(m, train, test)
    m = fit(spark, ratings, p)
    np.savez(tmp / "factors.npz", item_ids=m.items.ids, item_factors=m.items.factors,
             user_ids=m.user_ids, user_factors=m.user_factors, user_bias=m.user_bias)  # fmt: skip
    m.als_model.itemFactors.write.parquet(str(tmp / "item_factors"))
    m.als_model.userFactors.write.parquet(str(tmp / "user_factors"))


def training_time(spark, runs: int = 3) -> dict:
    """Median seconds of `train` now (both models, published) and of the pipeline it replaced,
    alternating runs on the same data and machine."""
    both, explicit = [], []
    for i in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.monotonic()
            todays_pipeline(spark, Path(tmp))
            explicit.append(time.monotonic() - t0)
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.monotonic()
            run_training(spark, TrainOptions(default_spec(BUNDLED_DATA, with_event_log=False)),
                         ModelStore(Path(tmp)))  # fmt: skip
            both.append(time.monotonic() - t0)
        print(f"training time run {i + 1}: before {explicit[-1]:.1f}s, now (both models) {both[-1]:.1f}s",
              flush=True)  # fmt: skip
    return {"explicit_only_s": [round(x, 1) for x in explicit], "both_s": [round(x, 1) for x in both],
            "ratio": median(both) / median(explicit)}  # fmt: skip


def confidence_sweep(spark) -> list[dict]:
    """Warm NDCG@10 of the plain ranking model (no blend) by preference threshold and alpha."""
    ratings = latest_per_pair(load_ratings(BUNDLED_DATA)[0])
    train, test = split(ratings, "random", 0.2, 42)
    m = fit(spark, train, Params())
    rows = []
    for threshold, alpha in SWEEP:
        rp = replace(RankingParams(), threshold=threshold, alpha=alpha)
        r = fit_ranking(spark, train, rp, m.items.ids)
        users = np.intersect1d(m.user_ids, test["user_id"].unique())
        res = ranking_model_metrics(scorer_of(m, r), stored_users(m, r, train, users), train, test)
        rows.append({"threshold": threshold, "alpha": alpha, "ndcg_at_10": res["ndcg_at_10"],
                     "precision_at_10": res["precision_at_10"]})  # fmt: skip
        print(f"sweep threshold {threshold} alpha {alpha}: NDCG@10 {res['ndcg_at_10']:.4f}", flush=True)
    return rows


def lsh_recall(spark, queries: int = 25) -> dict:
    """LSH (Spark BucketedRandomProjectionLSH) recall@10 against exact Euclidean on the ranking
    model's item factors, over random servable movies."""
    with tempfile.TemporaryDirectory() as tmp:
        store = ModelStore(Path(tmp))
        opts = TrainOptions(default_spec(BUNDLED_DATA, with_event_log=False), refit_full=True)
        run_training(spark, opts, store)
        model = store.load()
        servable = model.items.ids[model.items.servable]
        picks = np.random.default_rng(7).choice(servable, queries, replace=False)
        recalls = []
        for movie in picks:
            approx, _ = similar_lsh(spark, model, int(movie), 10, candidates=model.items.servable)
            exact, _ = similar_exact(model, int(movie), 10, "euclidean", model.items.servable)
            recalls.append(recall(approx, exact))
    return {"queries": queries, "mean_recall_at_10": float(np.mean(recalls)),
            "min_recall_at_10": float(np.min(recalls))}  # fmt: skip


def run(spark) -> dict:
    ratings, _ = load_ratings(BUNDLED_DATA)
    t0 = time.monotonic()
    evaluation = run_evaluation(spark, ratings, EvalOptions())
    print(f"evaluation in {time.monotonic() - t0:.0f}s", flush=True)
    return {
        "evaluation": evaluation,
        "training_time": training_time(spark),
        "sweep": confidence_sweep(spark),
        "lsh": lsh_recall(spark),
    }

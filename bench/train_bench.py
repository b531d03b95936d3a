"""Training: time and RMSE on the bundled data (ours vs the notebook's settings), on synthetic
data of 1M and 10M ratings, and the cost of one fold-in against a full retrain."""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from batch.train import Fitted, Params, evaluate, fit, ranking_metrics, split
from bench.common import median
from bench.synthetic import generate
from streamrec.foldin import fold_in, fold_in_many
from streamrec.history import latest_per_pair
from streamrec.movielens import load_ratings
from streamrec.settings import BUNDLED_DATA

CONFIGS = {
    "notebook (rank 10, reg 0.01, 5 iters, plain ALS)": Params(rank=10, reg=0.01, iters=5, bias=False),
    "rank 10, reg 0.1, 10 iters, plain ALS": Params(rank=10, reg=0.1, iters=10, bias=False),
    "best plain ALS found (rank 20, reg 0.15, 15 iters)": Params(rank=20, reg=0.15, iters=15, bias=False),
    "streamrec default (rank 20, reg 0.15, 15 iters, baseline + ALS)": Params(),
}


def _rmse_on(m: Fitted, df) -> float:
    return evaluate(m, df, df, ranking=False)["rmse"]


def bundled(spark) -> tuple[list[dict], list[dict]]:
    """One row per configuration, and the default model's ranking metrics by --min-support."""
    ratings = latest_per_pair(load_ratings(BUNDLED_DATA)[0])
    train, test = split(ratings, "random", 0.2, 42)
    rows, support = [], []
    for name, p in CONFIGS.items():
        t0 = time.monotonic()
        m = fit(spark, train, p)
        seconds = time.monotonic() - t0
        ev = evaluate(m, train, test)
        rows.append(
            {
                "config": name,
                "seconds": round(seconds, 1),
                "rmse_holdout": ev["rmse"],
                "rmse_train": _rmse_on(m, train),
                "mae": ev["mae"],
                "ndcg_at_10": ev["ndcg_at_10"],
                "precision_at_10": ev["precision_at_10"],
            }
        )
        print(
            f"bundled {name}: holdout RMSE {ev['rmse']:.4f}, train RMSE {rows[-1]['rmse_train']:.4f},"
            f" {seconds:.1f}s",
            flush=True,
        )
        if p == Params():
            support = support_sweep(m, train, test)
    return rows, support


def support_sweep(m: Fitted, train, test, levels=(1, 3, 10, 20, 50)) -> list[dict]:
    """Ranking quality against catalogue coverage as the minimum training ratings rise."""
    out = []
    for n in levels:
        items = dataclasses.replace(m.items, min_support=n)
        r = ranking_metrics(dataclasses.replace(m, items=items), train, test, 10)
        metrics = {k: r[k] for k in ("precision_at_10", "recall_at_10", "ndcg_at_10", "map_at_10")}
        out.append({"min_support": n, "servable_movies": int(items.servable.sum()), **metrics})
        print(f"min support {n}: {out[-1]}", flush=True)
    return out


def synthetic(spark, sizes=(1_000_000, 10_000_000)) -> list[dict]:
    rows = []
    for n in sizes:
        df = generate(n, n_users=max(1000, n // 150), n_items=max(500, n // 1000), seed=1)
        train, test = split(df, "random", 0.2, 42)
        t0 = time.monotonic()
        m = fit(spark, train, Params(rank=10, iters=10))
        seconds = time.monotonic() - t0
        ev = evaluate(m, train, test, ranking=False)
        rows.append(
            {
                "ratings": len(df),
                "users": int(df.user_id.nunique()),
                "items": int(df.movie_id.nunique()),
                "seconds": round(seconds, 1),
                "rmse": ev["rmse"],
            }
        )
        print(f"synthetic {len(df):,} ratings: fit {seconds:.1f}s, RMSE {ev['rmse']:.4f}", flush=True)
    return rows


def foldin_cost(spark) -> dict:
    ratings = latest_per_pair(load_ratings(BUNDLED_DATA)[0])
    t0 = time.monotonic()
    m = fit(spark, ratings, Params())
    retrain_s = time.monotonic() - t0
    groups = [(g.movie_id.to_numpy(), g.rating.to_numpy()) for _, g in ratings.groupby("user_id")]
    per_user = []
    for movies, r in groups:
        t = time.perf_counter()
        fold_in(m.items, movies, r, 0.15)
        per_user.append(time.perf_counter() - t)
    t = time.perf_counter()
    fold_in_many(m.items, ratings.user_id, ratings.movie_id, ratings.rating, 0.15)
    batch_s = time.perf_counter() - t
    one = median(per_user)
    return {
        "retrain_seconds": round(retrain_s, 1),
        "foldin_median_us": one * 1e6,
        "foldin_p99_us": float(np.percentile(per_user, 99)) * 1e6,
        "users": len(groups),
        "foldin_all_users_vectorised_s": batch_s,
        "retrain_over_foldin": retrain_s / one,
    }


def run(spark) -> dict:
    rows, support = bundled(spark)
    return {"bundled": rows, "support": support, "foldin": foldin_cost(spark), "synthetic": synthetic(spark)}

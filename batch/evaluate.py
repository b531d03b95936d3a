"""`streamrec evaluate`: the served lists against popularity and EASE under four protocols.

- warm: a random split of ratings; every method ranks for users it trained on;
- strong generalisation (Liang et al. 2018): a fifth of the users never seen in training; a random
  80 % of each one's ratings folded in, the other 20 % scored;
- new users in stream order: the same held-out users' first n ratings by event time folded in;
- prequential replay of the live part after --split-at: before each event, was its movie in the
  list that user would have been served (hit rate@k)? Simulated offline with the stream's own code
  (history.merge_ratings + the model version's Scorer), refreshed after every event.

Methods, on the same candidates (movies seen in training minus the user's inputs) and the same
relevance rule (held-out rating >= 4): the ranking model as served (cold-start blend included),
the ranking model without the blend, the explicit model's lists (by predicted rating), popularity
(count of training ratings) and EASE (Steck 2019, a reference baseline, never served).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from streamrec.history import latest_per_pair
from streamrec.ids import rows_of_known
from streamrec.scorer import Blend, Scorer, top_rows

from .metrics import first_n, holdout_users, list_metrics, relevant_sets
from .train import (
    Fitted,
    Params,
    RankingParams,
    choose_blend,
    evaluate,
    fit,
    fit_ranking,
    ids_of,
    log,
    scorer_of,
    split,
)

METHODS = ("ranking model (served)", "ranking model, no blend", "explicit model", "popularity", "EASE")


@dataclass
class EvalOptions:
    seed: int = 42
    k: int = 10
    test_fraction: float = 0.2  # warm: share of ratings held out
    user_fraction: float = 0.2  # strong generalisation / new users: share of users held out
    ns: tuple[int, ...] = (1, 3, 5, 10, 20)
    split_at: float = 0.8  # prequential: the live part starts here (event order)
    ease_lambda: float = 500.0
    ease_max_items: int = 20_000  # above this the items x items inverse is impractical here
    params: Params = field(default_factory=Params)
    ranking: RankingParams = field(default_factory=RankingParams)
    protocols: tuple[str, ...] = ("warm", "strong", "new_users", "prequential")
    # The catalogue, for the prequential replay's content vectors (None: no content variant).
    movies: pd.DataFrame | None = None
    tags: pd.DataFrame | None = None


@dataclass
class Models:
    """Both models fitted on one training set, with the blend chosen on its validation users."""

    explicit: Fitted
    scorer: Scorer
    counts: np.ndarray  # training ratings per item (popularity), rows of scorer.items
    ease: np.ndarray | None  # EASE item-item weights, or None when skipped
    fit_seconds: float
    rank_user_factors: np.ndarray  # trained users' ranking vectors, rows of explicit.user_ids
    user_counts: np.ndarray  # trained users' rating counts (the blend's n for a stored vector)
    blend_meta: dict = field(default_factory=dict)  # the blend's validation table and fitted curve


def fit_models(spark, ratings: pd.DataFrame, opts: EvalOptions, with_ease: bool = True) -> Models:
    """The same recipe as `train`: the blend is chosen on a fifth of the training users left out of
    a first ranking fit, then both models are fitted on all of `ratings`."""
    t0 = time.monotonic()
    explicit = fit(spark, ratings, opts.params)
    ids = explicit.items.ids
    blend, blend_meta, *_ = choose_blend(spark, explicit, ratings, opts.ranking, opts.seed + 1, opts.k)
    ranking = fit_ranking(spark, ratings, opts.ranking, ids)
    seconds = time.monotonic() - t0
    counts = ratings["movie_id"].value_counts().reindex(ids, fill_value=0).to_numpy()
    ease = None
    if with_ease and len(ids) <= opts.ease_max_items:
        ease = ease_weights(ratings, ids, opts.ease_lambda)
    if not np.array_equal(ranking.user_ids, explicit.user_ids):
        raise RuntimeError("the two models saw different users; this is a bug")
    user_counts = ratings.groupby("user_id").size().reindex(explicit.user_ids).to_numpy()
    return Models(explicit, scorer_of(explicit, ranking, blend), counts, ease, seconds,
                  ranking.user_factors, user_counts, blend_meta)  # fmt: skip


def ease_weights(ratings: pd.DataFrame, item_ids: np.ndarray, lam: float) -> np.ndarray:
    """EASE^R (Steck 2019): B = I - P / diag(P), P = (X'X + lambda I)^-1, diag(B) = 0."""
    users = np.unique(ratings["user_id"].to_numpy())
    x = np.zeros((len(users), len(item_ids)), np.float32)
    x[rows_of_known(users, ratings["user_id"].to_numpy()), rows_of_known(item_ids, ratings["movie_id"])] = 1
    g = x.T @ x
    g[np.diag_indices_from(g)] += lam
    p = np.linalg.inv(g)
    b = -p / np.diag(p)
    b[np.diag_indices_from(b)] = 0.0
    return b


def method_lists(models: Models, inputs: pd.DataFrame, k: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(users, {method: (m, k) movie ids}) for every user of `inputs`, whose movies are excluded."""
    scorer = models.scorer
    users = scorer.fold_in(inputs["user_id"], inputs["movie_id"], inputs["rating"])
    seen = [g.to_numpy() for _, g in inputs.groupby("user_id")["movie_id"]]  # sorted like users.ids
    pos, known = scorer.items.rows(inputs["movie_id"].to_numpy())
    row_of_user = rows_of_known(users.ids, inputs["user_id"].to_numpy())
    mask = np.zeros((len(users), len(scorer.items.ids)), bool)  # each user's own known movies
    mask[row_of_user[known], pos[known]] = True

    def top(scores: np.ndarray) -> np.ndarray:
        scores = np.where(mask, -np.inf, scores)
        return ids_of(scorer, top_rows(scores, k))

    out = {}
    out[METHODS[0]] = ids_of(scorer, scorer.rank_rows(users, k, seen))
    plain = replace(scorer, blend=Blend((1,), (0.0,)))
    out[METHODS[1]] = ids_of(scorer, plain.rank_rows(users, k, seen))
    m = models.explicit
    explicit = users.vectors.astype(np.float64) @ m.items.factors.T.astype(np.float64)
    explicit += m.items.mean + m.items.item_bias(np.arange(len(m.items.ids)))[None, :] + users.biases[:, None]
    explicit[users.n_used == 0] = scorer.prior  # nothing known: the model's cold start
    if m.items.servable is not None:
        explicit[:, ~m.items.servable] = -np.inf
    out[METHODS[2]] = top(explicit)
    out[METHODS[3]] = top(np.broadcast_to(models.counts.astype(np.float64), mask.shape))
    if models.ease is not None:
        out[METHODS[4]] = top(mask.astype(np.float32) @ models.ease)
    return users.ids, out


def score_lists(models: Models, inputs: pd.DataFrame, test: pd.DataFrame, k: int) -> dict[str, dict]:
    """List metrics per method for the users of `inputs` with a relevant item in `test`."""
    rel = relevant_sets(test)
    inputs = inputs[inputs["user_id"].isin(rel.index)]
    users, lists = method_lists(models, inputs, k)
    relevant = [rel[u] for u in users]
    return {name: list_metrics(list(ids), relevant, k) for name, ids in lists.items()}


# -- protocols ------------------------------------------------------------------------------------


def warm(spark, ratings: pd.DataFrame, opts: EvalOptions) -> dict:
    train, test = split(ratings, "random", opts.test_fraction, opts.seed)
    models = fit_models(spark, train, opts)
    res = score_lists(models, train[train["user_id"].isin(test["user_id"])], test, opts.k)
    rating_metrics = evaluate(models.explicit, train, test, opts.k, ranking=False)
    return {"methods": res, "rmse": rating_metrics["rmse"], "mae": rating_metrics["mae"],
            "fit_seconds": round(models.fit_seconds, 1)}  # fmt: skip


def held_out(spark, ratings: pd.DataFrame, opts: EvalOptions) -> tuple[Models, pd.DataFrame]:
    """Models fitted without a seeded fifth of the users, and those users' ratings."""
    users = holdout_users(ratings, opts.user_fraction, opts.seed)
    out = ratings["user_id"].isin(users)
    return fit_models(spark, ratings[~out], opts), ratings[out]


def strong(models: Models, heldout: pd.DataFrame, opts: EvalOptions) -> dict:
    inputs, test = split(heldout, "random", 0.2, opts.seed)
    return {"methods": score_lists(models, inputs, test, opts.k)}


def new_users(models: Models, heldout: pd.DataFrame, opts: EvalOptions) -> dict:
    by_n = {}
    for n in opts.ns:
        inputs, rest = first_n(heldout, n)
        by_n[n] = score_lists(models, inputs, rest, opts.k)
    return {"by_n": by_n}


def prequential(spark, ratings: pd.DataFrame, opts: EvalOptions) -> dict:
    """The prequential replay (batch.prequential), with this module's model recipe."""
    from .prequential import prequential as replay

    return replay(spark, ratings, opts, fit_models, opts.movies, opts.tags)


def run_evaluation(spark, ratings: pd.DataFrame, opts: EvalOptions) -> dict:
    """Every protocol in `opts.protocols` on de-duplicated `ratings` (with timestamps)."""
    t0 = time.monotonic()
    ratings = latest_per_pair(ratings)
    out: dict = {
        "k": opts.k,
        "seed": opts.seed,
        "ratings": int(len(ratings)),
        "users": int(ratings["user_id"].nunique()),
        "movies": int(ratings["movie_id"].nunique()),
    }
    if "warm" in opts.protocols:
        log("warm users: random split of ratings")
        out["warm"] = warm(spark, ratings, opts)
    if {"strong", "new_users"} & set(opts.protocols):
        log(f"held-out users ({opts.user_fraction:.0%}): strong generalisation and stream order")
        models, heldout = held_out(spark, ratings, opts)
        if "strong" in opts.protocols:
            out["strong"] = strong(models, heldout, opts)
        if "new_users" in opts.protocols:
            out["new_users"] = new_users(models, heldout, opts)
    if "prequential" in opts.protocols:
        log(f"prequential replay of the live part after --split-at {opts.split_at}")
        out["prequential"] = prequential(spark, ratings, opts)
    n_items = out["movies"]
    out["ease"] = "computed" if n_items <= opts.ease_max_items else (
        f"skipped: {n_items:,} movies > {opts.ease_max_items:,} (items x items inverse)")  # fmt: skip
    out["seconds"] = round(time.monotonic() - t0, 1)
    return out


def chart(res: dict, path: Path) -> Path:
    """NDCG@k against the number of ratings folded in, one line per method (new users)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_n = res["new_users"]["by_n"]
    ns = sorted(int(n) for n in by_n)
    fig, ax = plt.subplots(figsize=(9, 4.2))
    for name in METHODS:
        ys = [by_n[n if n in by_n else str(n)].get(name, {}).get(f"ndcg_at_{res['k']}") for n in ns]
        if all(y is not None for y in ys):
            ax.plot(ns, ys, marker="o", label=name, linestyle="--" if name == "EASE" else "-")
    ax.set_xscale("log")
    ax.set_xticks(ns, [str(n) for n in ns])
    ax.set_xlabel("ratings known for the new user (first n by event time)")
    ax.set_ylabel(f"NDCG@{res['k']} on the rest")
    ax.set_title("New users in stream order")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path

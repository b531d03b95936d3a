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

from streamrec.history import latest_per_pair, merge_ratings, window
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
    """Hit rate@k of each event's movie in the list served to its user just before it."""
    events = ratings.sort_values("timestamp", kind="stable", ignore_index=True)
    history = window(events, split_at=opts.split_at, part="before")
    live = window(events, split_at=opts.split_at, part="after")
    base = fit_models(spark, latest_per_pair(history), opts, with_ease=False)
    half = len(live) // 2
    scorer = base.scorer
    retrained: Scorer | None = None
    state = {u: (g["movie_id"].to_numpy(np.int32), g["rating"].to_numpy(np.float32),
                 g["timestamp"].to_numpy(np.int64))
             for u, g in latest_per_pair(history).groupby("user_id")}  # fmt: skip
    stored = {int(u): i for i, u in enumerate(base.explicit.user_ids)}
    counts = base.counts.astype(np.float64).copy()
    hits = dict.fromkeys(("static model (no fold-in)", "stream fold-in", "popularity (running counts)",
                          "fold-in + one retrain halfway"), 0)  # fmt: skip
    n_events, t0 = 0, time.monotonic()
    for j, ev in enumerate(live.itertuples(index=False)):
        if j == half:  # the retrain a `retrain --every` would do mid-replay: history + live so far
            log(f"  prequential: retraining on history + {half:,} live events")
            retrained = fit_models(spark, latest_per_pair(pd.concat([history, live.iloc[:half]])), opts,
                                   with_ease=False).scorer  # fmt: skip
        mine = state.get(ev.user_id)
        rated = mine[0] if mine is not None else np.empty(0, np.int32)
        if ev.movie_id not in set(rated.tolist()):  # re-ratings are no prediction target
            n_events += 1
            folded = scorer.fold_in_one(rated, mine[1] if mine is not None else [], explicit=False)
            lists = {"stream fold-in": _first_list(scorer, folded, opts.k, rated)}
            if ev.user_id in stored:
                lists["static model (no fold-in)"] = _static_list(base, stored[ev.user_id], opts.k, rated)
            else:
                lists["static model (no fold-in)"] = _first_list(
                    scorer, scorer.fold_in_one([], []), opts.k, rated
                )
            pop = counts.copy()
            pos, ok = scorer.items.rows(rated)
            pop[pos[ok]] = -np.inf
            lists["popularity (running counts)"] = ids_of(scorer, top_rows(pop[None, :], opts.k))[0]
            if retrained is not None:
                again = retrained.fold_in_one(rated, mine[1] if mine is not None else [], explicit=False)
                lists["fold-in + one retrain halfway"] = _first_list(retrained, again, opts.k, rated)
            else:
                lists["fold-in + one retrain halfway"] = lists["stream fold-in"]
            for name, ids in lists.items():
                hits[name] += int(ev.movie_id in set(np.asarray(ids).tolist()))
        new = {"movie_id": [ev.movie_id], "rating": [ev.rating], "timestamp": [ev.timestamp]}
        state[ev.user_id] = merge_ratings(mine, new)
        pos, ok = scorer.items.rows(np.array([ev.movie_id]))
        if ok[0]:
            counts[pos[0]] += 1
        if (j + 1) % 5000 == 0:
            log(f"  prequential: {j + 1:,}/{len(live):,} events ({(j + 1) / (time.monotonic() - t0):,.0f}/s)")
    return {
        "events": int(len(live)),
        "scored_events": n_events,
        "users": int(live["user_id"].nunique()),
        "new_users": int((~live["user_id"].drop_duplicates().isin(list(stored))).sum()),
        "hit_rate": {name: h / max(n_events, 1) for name, h in hits.items()},
    }


def _first_list(scorer: Scorer, users, k: int, rated: np.ndarray) -> np.ndarray:
    rows = scorer.rank_rows(users, k, [rated])
    return scorer.items.ids[rows[0][rows[0] >= 0]]


def _static_list(models: Models, i: int, k: int, rated: np.ndarray) -> np.ndarray:
    """The base model's stored vectors for a user it trained on (what serving does without the
    stream): the ranking vector and the user's training count for the blend."""
    from streamrec.scorer import Users

    m, s = models.explicit, slice(i, i + 1)
    users = Users(m.user_ids[s], models.rank_user_factors[s], models.user_counts[s], m.user_factors[s],
                  m.user_bias[s])  # fmt: skip
    return _first_list(models.scorer, users, k, rated)


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

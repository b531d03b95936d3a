"""How good are content vectors for movies with no ratings? Measured on movies held out of training.

For each seed: hold out 10% of the movies (stratified by popularity: movies sorted by rating count,
one drawn at random from every 10 consecutive), fit the ranking model on the other movies'
ratings, fit the content map (streamrec.content) on its item factors, and give every held-out movie
a vector from its content alone. For each held-out movie, rank all users of that fit by x_u . y and
compute the AUC of its raters with rating >= 4 (positives) against the users who did not rate it
(raters below 4 are left out). Beside it, on the same movies and users:

  random vector            a seeded Gaussian vector: AUC 0.5 up to noise
  mean item vector         one vector for every movie (support-weighted mean): what knowing
                           nothing but "users who rate a lot rate this too" gives
  genre mean               the mean of its genres' mean item vectors (the simple content baseline)
  year only                the content map fitted on the year features alone (no genres, no tags)
  content, no tags         the content map without tag words (what a layout without tags.csv gets)
  content                  the map as train fits it (genres, year, tag words)
  trained (upper bound)    its vector folded in from its own ratings against the fixed user factors
                           (Spark's implicit objective): scored on the ratings it was fitted to

Usage: python -m batch.content_eval [--data DIR] [--seeds 42,43,44] [--out results.json]
Run with STREAMREC_HOME set to a scratch directory (Spark writes its checkpoints there).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from streamrec.content import ContentMap, fit_content_map, genres_of, load_tags, support_weights
from streamrec.history import latest_per_pair
from streamrec.ids import rows_of_known
from streamrec.movielens import load_movies, load_ratings
from streamrec.ranking import ImplicitFactors, implicit_fold_in_many
from streamrec.settings import BUNDLED_DATA

from .train import RankingParams, fit_ranking, log

HOLDOUT_GROUP = 10  # one movie of every 10 by popularity: a 10% holdout
POPULARITY_BUCKETS = ((1, 2), (3, 9), (10, 49), (50, 10**9))  # ratings per movie
NORM = "norm content / trained"  # how long a content vector is beside the movie's trained one
METHODS = ("random", "mean item vector", "genre mean", "year only", "content, no tags", "content",
           "trained (upper bound)")  # fmt: skip


def held_out_movies(counts: pd.Series, seed: int, group: int = HOLDOUT_GROUP) -> np.ndarray:
    """One movie drawn from every `group` consecutive movies in order of rating count (ties in a
    seeded random order): a 1/group holdout with the same popularity profile as the catalogue."""
    rng = np.random.default_rng(seed)
    ids = counts.index.to_numpy(np.int64)
    order = np.lexsort((rng.random(len(ids)), counts.to_numpy()))
    picks = [order[s + rng.integers(min(group, len(ids) - s))] for s in range(0, len(ids), group)]
    return np.sort(ids[picks])


def auc(scores: np.ndarray, positive: np.ndarray, negative: np.ndarray) -> float:
    """Mann-Whitney AUC of positives over negatives (ties count half); NaN without both."""
    n_pos, n_neg = int(positive.sum()), int(negative.sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    both = positive | negative
    ranks = pd.Series(scores[both]).rank(method="average").to_numpy()
    r_pos = ranks[positive[both]].sum()
    return float((r_pos - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def genre_mean_vectors(movies: pd.DataFrame, item_ids, factors, support, targets: np.ndarray) -> np.ndarray:
    """Each target movie's mean of its genres' (support-weighted) mean item vectors; the overall
    mean for a movie with no known genre."""
    g = movies.drop_duplicates("movie_id").set_index("movie_id")["genres"].map(genres_of)
    w = support_weights(support, 10.0)
    overall = np.average(factors, axis=0, weights=w)
    sums: dict[str, np.ndarray] = {}
    totals: dict[str, float] = {}
    for mid, y, wi in zip(item_ids, factors, w, strict=True):
        for genre in g.get(mid, []):
            sums[genre] = sums.get(genre, 0.0) + wi * y
            totals[genre] = totals.get(genre, 0.0) + wi
    out = np.empty((len(targets), factors.shape[1]))
    for r, mid in enumerate(targets):
        means = [sums[x] / totals[x] for x in g.get(mid, []) if x in sums]
        out[r] = np.mean(means, axis=0) if means else overall
    return out


@dataclass(frozen=True)
class HoldoutFit:
    """One seed's held-out movies and the ranking model fitted without them (shared by
    batch.new_movies_eval, which evaluates the same held-out movies with their first ratings)."""

    seed: int
    held: np.ndarray  # sorted held-out movie ids
    train: pd.DataFrame  # the ratings the model was fitted on (no held-out movie)
    item_ids: np.ndarray  # sorted trained movie ids
    y: np.ndarray  # their item factors, float64 (movies, rank)
    support: np.ndarray  # their training-rating counts
    users: np.ndarray  # sorted user ids of the fit
    x: np.ndarray  # their user factors, float64 (users, rank)
    frame: pd.DataFrame  # movies.csv rows of the held-out movies (id-only rows for absent ones)
    content: ContentMap  # the map as train fits it
    v_content: np.ndarray  # each held-out movie's content vector, in the order of `held`


def fit_holdout(spark, ratings: pd.DataFrame, movies: pd.DataFrame, tags: pd.DataFrame, seed: int,
                rp: RankingParams) -> HoldoutFit:  # fmt: skip
    """Hold out a seeded, popularity-stratified 10% of the movies, fit the ranking model and the
    content map without them, and give every held-out movie its content vector."""
    counts = ratings["movie_id"].value_counts().sort_index()
    held = held_out_movies(counts, seed)
    train = ratings[~ratings["movie_id"].isin(held)]
    item_ids = np.unique(train["movie_id"].to_numpy(np.int64))
    t0 = time.monotonic()
    fitted = fit_ranking(spark, train, rp, item_ids)
    log(f"seed {seed}: ranking model on {len(train):,} ratings of {len(item_ids):,} movies "
        f"({len(held):,} held out) in {time.monotonic() - t0:.0f} s")  # fmt: skip
    y = fitted.factors.factors.astype(np.float64)
    support = train["movie_id"].value_counts().reindex(item_ids, fill_value=0).to_numpy()
    x, users = fitted.user_factors.astype(np.float64), fitted.user_ids
    held_movies = movies[movies["movie_id"].isin(held)]
    cm: ContentMap = fit_content_map(movies, tags, item_ids, y, support, seed=seed)
    # every held-out movie gets a row, in the order of `held` (a movie absent from movies.csv too)
    frame = pd.concat([held_movies, pd.DataFrame({"movie_id": np.setdiff1d(held, held_movies["movie_id"])})])
    ids, v_content = cm.vectors(frame, tags)
    assert np.array_equal(ids, held)
    return HoldoutFit(seed, held, train, item_ids, y, support, users, x, frame, cm, v_content)


def one_seed(spark, ratings: pd.DataFrame, movies: pd.DataFrame, tags: pd.DataFrame, seed: int,
             rp: RankingParams) -> pd.DataFrame:  # fmt: skip
    """One row per held-out movie with a positive and a negative: its AUC under every method."""
    counts = ratings["movie_id"].value_counts().sort_index()
    fit = fit_holdout(spark, ratings, movies, tags, seed, rp)
    held, item_ids, y, support, x, users = fit.held, fit.item_ids, fit.y, fit.support, fit.x, fit.users
    cm, frame, v_content = fit.content, fit.frame, fit.v_content
    cm_plain = fit_content_map(movies, None, item_ids, y, support, seed=seed)
    no_genres = movies.assign(genres=[[] for _ in range(len(movies))])
    cm_year = fit_content_map(no_genres, None, item_ids, y, support, seed=seed)
    _, v_plain = cm_plain.vectors(frame, None)
    _, v_year = cm_year.vectors(frame, None)
    rows = ratings[ratings["movie_id"].isin(held) & ratings["user_id"].isin(users)]
    upos = rows_of_known(users, rows["user_id"].to_numpy(np.int64))
    f_users = ImplicitFactors(fit.x.astype(np.float32), rp.reg, rp.alpha, rp.threshold)
    folded_ids, folded, _ = implicit_fold_in_many(f_users, rows["movie_id"].to_numpy(np.int64), upos,
                                                  rows["rating"].to_numpy())  # fmt: skip
    trained = np.zeros((len(held), y.shape[1]))
    trained[rows_of_known(held, folded_ids)] = folded
    rng = np.random.default_rng(seed)
    vectors = {
        "random": rng.normal(size=(len(held), y.shape[1])),
        "mean item vector": np.repeat(
            np.average(y, axis=0, weights=support_weights(support, 10.0))[None], len(held), 0
        ),  # fmt: skip
        "genre mean": genre_mean_vectors(movies, item_ids, y, support, held),
        "year only": v_year,
        "content, no tags": v_plain,
        "content": v_content,
        "trained (upper bound)": trained,
    }
    scores = {name: x @ v.T for name, v in vectors.items()}  # (users, held movies)
    by_movie = {m: g for m, g in rows.groupby("movie_id")}
    genres = movies.drop_duplicates("movie_id").set_index("movie_id")["genres"].map(genres_of)
    tagged = set(tags["movie_id"].unique())
    out = []
    for j, mid in enumerate(held):
        g = by_movie.get(mid)
        if g is None:
            continue
        pos = np.zeros(len(users), bool)
        rated = np.zeros(len(users), bool)
        r = rows_of_known(users, g["user_id"].to_numpy(np.int64))
        rated[r] = True
        pos[r[g["rating"].to_numpy() >= 4]] = True
        if not pos.any():
            continue
        row = {"seed": seed, "movie_id": int(mid), "ratings": int(counts[mid]), "positives": int(pos.sum()),
               "genres": "|".join(genres.get(mid, [])), "tagged": bool(mid in tagged)}  # fmt: skip
        row.update({name: auc(s[:, j], pos, ~rated) for name, s in scores.items()})
        row[NORM] = float(np.linalg.norm(v_content[j]) / max(np.linalg.norm(trained[j]), 1e-12))
        out.append(row)
    log(f"seed {seed}: {len(out)} of {len(held)} held-out movies have a rater with >= 4 and a non-rater; "
        f"content map lambda {cm.lam:g}, {len(cm.spec.tags)} tag words")  # fmt: skip
    return pd.DataFrame(out)


def summarise(table: pd.DataFrame) -> dict:
    """Mean AUC by method: overall (and its spread over seeds), by popularity bucket, by genre."""
    seeds = table.groupby("seed")[list(METHODS)].mean()
    result = {
        "movies": int(len(table)),
        "seeds": [int(s) for s in seeds.index],
        "auc": {m: round(float(table[m].mean()), 4) for m in METHODS},
        "auc_seed_range": {
            m: [round(float(seeds[m].min()), 4), round(float(seeds[m].max()), 4)] for m in METHODS
        },
        "auc_weighted_by_positives": {
            m: round(float(np.average(table[m], weights=table["positives"])), 4) for m in METHODS
        },
        "by_popularity": {},
        "by_genre": {},
        "tagged": {},
    }
    for lo, hi in POPULARITY_BUCKETS:
        part = table[(table["ratings"] >= lo) & (table["ratings"] <= hi)]
        key = f"{lo}-{hi}" if hi < 10**9 else f"{lo}+"
        result["by_popularity"][key] = {
            "movies": int(len(part)),
            **{m: round(float(part[m].mean()), 4) for m in METHODS},
            NORM: round(float(part[NORM].median()), 3),
        }
    for flag, part in table.groupby("tagged"):
        result["tagged"]["with tags" if flag else "without tags"] = {
            "movies": int(len(part)),
            **{m: round(float(part[m].mean()), 4) for m in METHODS},
        }
    genres = table.assign(genre=table["genres"].str.split("|")).explode("genre")
    for genre, part in sorted(genres.groupby("genre"), key=lambda kv: -len(kv[1])):
        if genre and len(part) >= 20:
            result["by_genre"][genre] = {"movies": int(len(part)),
                                         **{m: round(float(part[m].mean()), 4) for m in METHODS}}  # fmt: skip
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=BUNDLED_DATA)
    ap.add_argument("--seeds", default="42,43,44", help="comma-separated; one ranking fit each")
    ap.add_argument("--out", type=Path, help="write the summary (JSON) here")
    args = ap.parse_args(argv)
    from streamrec import logs
    from streamrec.spark import get_spark

    logs.configure()
    ratings = latest_per_pair(load_ratings(args.data)[0])
    movies, tags = load_movies(args.data), load_tags(args.data)
    spark = get_spark("streamrec-content-eval")
    t0 = time.monotonic()
    table = pd.concat([one_seed(spark, ratings, movies, tags, int(s), RankingParams())
                       for s in args.seeds.split(",")], ignore_index=True)  # fmt: skip
    result = {"data": str(args.data), "seconds": round(time.monotonic() - t0), **summarise(table)}
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    auc_ = result["auc"]
    print(f"content vectors on {result['movies']} held-out movies: AUC {auc_['content']:.3f} "
          f"(genre mean {auc_['genre mean']:.3f}, mean item vector {auc_['mean item vector']:.3f}, "
          f"random {auc_['random']:.3f}, trained {auc_['trained (upper bound)']:.3f})",
          file=sys.stderr)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

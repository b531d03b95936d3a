"""New movies, first m ratings: how well does a movie's vector rank its future raters?

Issue 19's new-movie protocol, on the held-out movies of batch.content_eval (same seeds, same
popularity-stratified 10%, same ranking fit without them). For each held-out movie and each m in
(0, 1, 5, 20) where the movie has more than m raters: its first m ratings by event time (ties by
user id) are the input, folded in with `streamrec.item_foldin.fold_in_item` against the fit's fixed
user vectors, exactly the stream's item solve (m = 0: no input, the movie's content vector, which
is what the stream serves before the first rating). Its remaining raters with rating >= 4 are the
positives, the users who never rated it the negatives (the m input raters are in neither; remaining
raters below 4 are left out), and all users of the fit are ranked by score. Methods:

  random                      a seeded Gaussian vector per movie
  popularity (user activity)  users ranked by their number of training ratings: this direction's
                              popularity baseline (heavy raters rate everything)
  content                     the content vector whatever m (ignores the m ratings)
  fold-in                     m = 0: the content vector; m >= 1: folded in from the m ratings
                              (what the stream does: content until the first rating, then fold-in)
  fold-in + prior <c>         m >= 1: folded in from the m ratings with the content vector as the
                              prior (`ItemSide.prior_weight` mu = c * trace(X'X) / rank, one method
                              per multiple c of --priors); m = 0: the same solve with no ratings,
                              (X'X + mu I)^-1 mu * content (a diagnostic: the stream serves content)

Reported per m as mean AUC and NDCG@100 (binary gains, ties broken at random with the seed),
twice: on the same movies at every m (those with more than max(m) raters and a positive among the
rest at max(m)), and on every movie with more than m raters and a remaining positive (count given).
The prior's multiple is chosen by mean AUC over the m >= 1 on the same movies of --choose-seeds
only; the other seeds are reported apart as a check (`prior` in the JSON).

Usage: python -m batch.new_movies_eval [--data DIR] [--seeds 42,43,44] [--m 0,1,5,20]
           [--priors 0.01,0.03,...] [--choose-seeds 42,43] [--out F.json] [--table F.csv]
Run with STREAMREC_HOME set to a scratch directory (Spark writes its checkpoints there).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from streamrec.content import genres_of, load_tags, parse_year
from streamrec.history import latest_per_pair
from streamrec.ids import rows
from streamrec.item_foldin import ItemSide, fold_in_item, prior_weight
from streamrec.movielens import load_movies, load_ratings
from streamrec.settings import BUNDLED_DATA

from .content_eval import HoldoutFit, auc, fit_holdout
from .train import RankingParams, log

M_VALUES = (0, 1, 5, 20)
METHODS = ("random", "popularity (user activity)", "content", "fold-in")
# the content prior's weight as multiples of trace(X'X) / rank (X'X's mean eigenvalue)
PRIOR_MULTIPLES = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0)
CHOOSE_SEEDS = (42, 43)
NDCG_K = 100
MIN_GENRE_MOVIES = 20


def prior_method(multiple: float) -> str:
    return f"fold-in + prior {multiple:g}"


def first_m(ratings: pd.DataFrame, m: int) -> np.ndarray:
    """Mask of each movie's first m ratings by event time (ties by user id), row-aligned."""
    if len(ratings) == 0:
        return np.zeros(0, bool)
    order = np.lexsort((ratings["user_id"].to_numpy(), ratings["timestamp"].to_numpy(),
                        ratings["movie_id"].to_numpy()))  # fmt: skip
    movie = ratings["movie_id"].to_numpy()[order]
    start = np.r_[True, movie[1:] != movie[:-1]]
    first = np.flatnonzero(start)
    position = np.arange(len(order)) - np.repeat(first, np.diff(np.r_[first, len(order)]))
    mask = np.zeros(len(ratings), bool)
    mask[order] = position < m
    return mask


def ndcg_at(scores: np.ndarray, positive: np.ndarray, negative: np.ndarray, k: int,
            rng: np.random.Generator) -> float:  # fmt: skip
    """Binary NDCG@k of positives among positives + negatives ordered by score (ties in random
    order from `rng`, so a constant score gets chance level, not the order of the ids); NaN
    without a positive."""
    n_pos = int(positive.sum())
    if n_pos == 0:
        return float("nan")
    both = np.flatnonzero(positive | negative)
    s = scores[both]
    top = both[np.lexsort((rng.random(len(s)), -s))[:k]]
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = discounts[: len(top)][positive[top]].sum()
    return float(dcg / discounts[: min(k, n_pos)].sum())


def eval_seed(fit: HoldoutFit, ratings: pd.DataFrame, movies: pd.DataFrame, rp: RankingParams,
              ms: tuple[int, ...] = M_VALUES,
              multiples: tuple[float, ...] = PRIOR_MULTIPLES) -> pd.DataFrame:  # fmt: skip
    """One row per (held-out movie, m) that has more than m raters and a remaining positive."""
    users, x = fit.users, fit.x
    held_rows = ratings[ratings["movie_id"].isin(fit.held)]
    side = ItemSide.of(x, rp.reg, rp.alpha, rp.threshold, explicit_reg=1.0)
    scale = prior_weight(side.gram, 1.0)  # trace(X'X) / rank
    priors = {prior_method(c): dataclasses.replace(side, prior_weight=prior_weight(side.gram, c))
              for c in multiples}  # fmt: skip
    activity = fit.train["user_id"].value_counts().reindex(users, fill_value=0).to_numpy(np.float64)
    rng = np.random.default_rng(fit.seed)
    random_vectors = rng.normal(size=(len(fit.held), x.shape[1]))
    by_id = movies.drop_duplicates("movie_id").set_index("movie_id")
    genres, years = by_id["genres"].map(genres_of), by_id["title"].map(parse_year)
    order = {m: first_m(held_rows, m) for m in ms}
    out = []
    for mid, g in held_rows.groupby("movie_id", sort=True):
        j = int(np.searchsorted(fit.held, mid))
        at = held_rows.index.get_indexer(g.index)
        pos_u, known = rows(users, g["user_id"].to_numpy(np.int64))
        rated = np.zeros(len(users), bool)
        rated[pos_u[known]] = True
        r = g["rating"].to_numpy(np.float64)
        raters = (pos_u, known, rated, r)
        first_rated = pd.Timestamp(int(g["timestamp"].min()), unit="s").year
        year = years.get(mid)
        new = year is not None and not pd.isna(year) and first_rated <= int(year) + 1
        shuffled = np.random.default_rng([fit.seed, int(mid)]).permutation(len(g))
        for m in ms:
            if len(g) <= m:
                continue
            drawn = np.zeros(len(g), bool)
            drawn[shuffled[:m]] = True
            for inputs, is_input in (("first", order[m][at]), ("random", drawn))[: 2 if m else 1]:
                row = _evaluate(fit, side, priors, activity, random_vectors[j], j, m, is_input, raters)
                if row is None:
                    continue
                row.update({"movie_id": int(mid), "inputs": inputs, "ratings": len(g), "scale": scale,
                            "new_when_first_rated": bool(new),
                            "genres": "|".join(genres.get(mid, []))})  # fmt: skip
                out.append(row)
    table = pd.DataFrame(out)
    first = table[table["inputs"] == "first"]
    log(f"seed {fit.seed}: " + ", ".join(f"m={m}: {int((first['m'] == m).sum())} movies" for m in ms)
        + f"; trace(X'X)/rank {scale:.4g}")  # fmt: skip
    return table


def _evaluate(fit: HoldoutFit, side: ItemSide, priors: dict[str, ItemSide], activity: np.ndarray,
              random_vector: np.ndarray, j: int, m: int, is_input: np.ndarray,
              raters: tuple) -> dict | None:  # fmt: skip
    """One movie at one m: fold in its input raters, rank the users; None without a positive left.
    `priors`: method name -> the item side with that prior weight (the prior: the content vector).
    `raters`: the movie's raters' rows in the fit's users, whether the fit knows them, the users'
    mask of its raters, their ratings."""
    x = fit.x
    pos_u, known, rated, r = raters
    positive = np.zeros(len(x), bool)
    positive[pos_u[~is_input & known & (r >= 4)]] = True
    if not positive.any():
        return None
    used = is_input & known  # an input rater the fit does not know is counted, not used
    if m == 0:
        folded, n_pos_in = fit.v_content[j], 0
    else:
        n = int(used.sum())
        iv = fold_in_item(side, r[used], x[pos_u[used]], np.zeros((n, 1)), np.zeros(n))
        folded, n_pos_in = iv.rank_vector.astype(np.float64), iv.n_pos
    scores = {
        "random": x @ random_vector,
        "popularity (user activity)": activity,
        "content": x @ fit.v_content[j],
        "fold-in": x @ folded,
    }
    prior = fit.v_content[j]
    for name, s in priors.items():
        if not used.any():  # m = 0: the prior solve with no rating (fold_in_item needs a row)
            k = len(prior)
            y = np.linalg.solve(s.gram + s.prior_weight * np.eye(k), s.prior_weight * prior)
        else:
            y = fold_in_item(s, r[used], x[pos_u[used]], np.zeros((n, 1)), np.zeros(n), prior=prior)
            y = y.rank_vector.astype(np.float64)
        scores[name] = x @ y
    negative = ~rated  # the input raters rated it: in neither set
    row = {"seed": fit.seed, "m": m, "inputs_used": int(used.sum()), "positive_inputs": n_pos_in,
           "positives": int(positive.sum())}  # fmt: skip
    tie_rng = np.random.default_rng([fit.seed, int(fit.held[j]), m])
    for name, s in scores.items():
        row[f"auc {name}"] = auc(s, positive, negative)
        row[f"ndcg {name}"] = ndcg_at(s, positive, negative, NDCG_K, tie_rng)
    return row


def _methods(table: pd.DataFrame) -> list[str]:
    """METHODS, then the prior's methods present in the table."""
    return [c[len("auc ") :] for c in table.columns if c.startswith("auc ")]


def _means(part: pd.DataFrame, metric: str) -> dict:
    return {name: round(float(part[f"{metric} {name}"].mean()), 4) for name in _methods(part)}


def summarise(table: pd.DataFrame, ms: tuple[int, ...] = M_VALUES) -> dict:
    """Mean AUC and NDCG@k per m with the first m ratings as input: on the same movies at every m,
    and on every movie with > m raters. Diagnostics on the same movies: m raters drawn at random
    instead of the first m, and movies first rated within a year of their release vs the others."""
    top = max(ms)
    drawn, table = table[table["inputs"] == "random"], table[table["inputs"] == "first"]
    common = table.loc[table["m"] == top, ["seed", "movie_id"]]
    same = table.merge(common, on=["seed", "movie_id"])
    result: dict = {"ndcg_k": NDCG_K, "seeds": sorted(int(s) for s in table["seed"].unique())}
    result["same_movies"] = {"movies": int(len(common)), "by_m": {}, "by_genre": {}}
    result["each_m"] = {}
    for m in ms:
        part = same[same["m"] == m]
        seeds = part.groupby("seed")[[f"auc {n}" for n in _methods(part)]].mean()
        result["same_movies"]["by_m"][str(m)] = {
            "auc": _means(part, "auc"),
            "auc_seed_range": {
                n: [round(float(seeds[f"auc {n}"].min()), 4), round(float(seeds[f"auc {n}"].max()), 4)]
                for n in _methods(part)
            },  # fmt: skip
            "ndcg": _means(part, "ndcg"),
            "no_positive_input": int((part["positive_inputs"] == 0).sum()) if m else None,
        }
        each = table[table["m"] == m]
        result["each_m"][str(m)] = {
            "movies": int(len(each)),
            "auc": _means(each, "auc"),
            "ndcg": _means(each, "ndcg"),
            "no_positive_input": int((each["positive_inputs"] == 0).sum()) if m else None,
        }
    exploded = same.assign(genre=same["genres"].str.split("|")).explode("genre")
    counts = exploded[exploded["m"] == top]["genre"].value_counts()
    for genre, n in counts.items():
        if genre and n >= MIN_GENRE_MOVIES:
            part = exploded[exploded["genre"] == genre]
            result["same_movies"]["by_genre"][genre] = {
                "movies": int(n),
                **{str(m): _means(part[part["m"] == m], "auc") for m in ms},
            }
    drawn_same = drawn.merge(common, on=["seed", "movie_id"])
    result["random_inputs"] = {}
    for m in ms[1:] if ms[0] == 0 else ms:
        part = drawn_same[drawn_same["m"] == m]
        result["random_inputs"][str(m)] = {"movies": int(len(part)), "auc": _means(part, "auc")}
    result["new_when_first_rated"] = {}
    for flag, part in same.groupby("new_when_first_rated"):
        result["new_when_first_rated"]["yes" if flag else "no"] = {
            "movies": int((part["m"] == top).sum()),
            **{str(m): _means(part[part["m"] == m], "auc") for m in ms},
        }
    return result


def prior_summary(table: pd.DataFrame, multiples: tuple[float, ...], choose_seeds: tuple[int, ...],
                  ms: tuple[int, ...] = M_VALUES) -> dict:  # fmt: skip
    """The content prior on the same movies at every m (first m ratings as input): per multiple c
    of trace(X'X) / rank, the absolute weight per seed and mean AUC per m on the choosing seeds, on
    the others (the check) and on all; the chosen c (best mean AUC over the m >= 1 on the choosing
    seeds) and, as a diagnostic, the best c at each m alone."""
    top = max(ms)
    table = table[table["inputs"] == "first"]
    common = table.loc[table["m"] == top, ["seed", "movie_id"]]
    same = table.merge(common, on=["seed", "movie_id"])
    seeds = sorted(int(s) for s in same["seed"].unique())
    choose = [s for s in seeds if s in choose_seeds]
    check = [s for s in seeds if s not in choose_seeds]
    rated = [m for m in ms if m > 0]
    names = ["popularity (user activity)", "content", "fold-in"] + [prior_method(c) for c in multiples]
    scale = same.groupby("seed")["scale"].first()

    def by_m(on: list[int]) -> dict:
        part = same[same["seed"].isin(on)]
        out = {n: {str(m): round(float(part.loc[part["m"] == m, f"auc {n}"].mean()), 4) for m in ms}
               for n in names}  # fmt: skip
        for n in names:
            out[n]["mean m>=1"] = round(float(np.mean([out[n][str(m)] for m in rated])), 4)
        return out

    result: dict = {
        "multiples": list(multiples),
        "choose_seeds": choose,
        "check_seeds": check,
        "movies": {part: int(common["seed"].isin(on).sum())
                   for part, on in (("choose", choose), ("check", check))},
        "trace_over_rank": {str(s): round(float(v), 4) for s, v in scale.items()},
        "weight": {f"{c:g}": {str(s): round(float(c * v), 5) for s, v in scale.items()} for c in multiples},
        "choose": by_m(choose),
        "check": by_m(check) if check else None,
        "all": by_m(seeds),
    }  # fmt: skip
    if choose and multiples:
        chosen = result["choose"]
        best = max(multiples, key=lambda c: chosen[prior_method(c)]["mean m>=1"])
        result["chosen"] = best
        result["best_per_m"] = {
            str(m): max(multiples, key=lambda c, m=m: chosen[prior_method(c)][str(m)]) for m in rated
        }
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=BUNDLED_DATA)
    ap.add_argument("--seeds", default="42,43,44", help="comma-separated; one ranking fit each")
    ap.add_argument("--m", default=",".join(map(str, M_VALUES)), help="first ratings folded in")
    ap.add_argument("--priors", default=",".join(f"{c:g}" for c in PRIOR_MULTIPLES),
                    help="content prior weights as multiples of trace(X'X)/rank ('' for none)")  # fmt: skip
    ap.add_argument("--choose-seeds", default=",".join(map(str, CHOOSE_SEEDS)),
                    help="the seeds the prior's multiple is chosen on (the others: the check)")  # fmt: skip
    ap.add_argument("--out", type=Path, help="write the summary (JSON) here")
    ap.add_argument("--table", type=Path, help="write the per-movie rows (CSV) here")
    args = ap.parse_args(argv)
    from streamrec import logs
    from streamrec.spark import get_spark

    logs.configure()
    ms = tuple(sorted({int(v) for v in args.m.split(",")}))
    multiples = tuple(sorted({float(v) for v in args.priors.split(",") if v.strip()}))
    choose_seeds = tuple(int(v) for v in args.choose_seeds.split(",") if v.strip())
    ratings = latest_per_pair(load_ratings(args.data)[0])
    movies, tags = load_movies(args.data), load_tags(args.data)
    spark = get_spark("streamrec-new-movies-eval")
    t0 = time.monotonic()
    rp = RankingParams()
    tables = []
    for s in args.seeds.split(","):
        fit = fit_holdout(spark, ratings, movies, tags, int(s), rp)
        tables.append(eval_seed(fit, ratings, movies, rp, ms, multiples))
    table = pd.concat(tables, ignore_index=True)
    if args.table:
        table.to_csv(args.table, index=False)
    result = {"data": str(args.data), "m": list(ms), "seconds": round(time.monotonic() - t0),
              **summarise(table, ms), "prior": prior_summary(table, multiples, choose_seeds, ms)}  # fmt: skip
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    same = result["same_movies"]
    line = ", ".join(
        f"m={m} {same['by_m'][str(m)]['auc']['fold-in']:.3f}" for m in ms
    )  # fmt: skip
    pop = ", ".join(f"{same['by_m'][str(m)]['auc']['popularity (user activity)']:.3f}" for m in ms)
    print(f"new movies, first m ratings folded in, on the same {same['movies']} held-out movies: "
          f"AUC {line}; popularity (user activity) {pop}; content only "
          f"{same['by_m'][str(ms[0])]['auc']['content']:.3f}", file=sys.stderr)  # fmt: skip
    prior = result["prior"]
    if "chosen" in prior:
        c = prior["chosen"]
        for part in ("choose", "check"):
            if prior[part]:
                auc_m, mean = prior[part][prior_method(c)], "mean m>=1"
                print(f"content prior {c:g} x trace(X'X)/rank, seeds {prior[part + '_seeds']}: "
                      + ", ".join(f"m={m} {auc_m[str(m)]:.3f}" for m in ms if m > 0)
                      + f"; mean {auc_m[mean]:.3f} (content {prior[part]['content'][mean]:.3f}, "
                      f"fold-in {prior[part]['fold-in'][mean]:.3f})", file=sys.stderr)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

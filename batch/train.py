"""Spark ML ALS training on a baseline's residuals, holdout evaluation, grid tuning.

Model: r_ui ~ mu + b_u + b_i + u.v_i. The baseline (mu, b_i, b_u) is the classic regularised
one, computed in closed form; Spark ALS (explicit) learns u, v on the residuals. On the bundled
data this takes holdout RMSE from 0.869 (best plain ALS) to 0.841 (docs/benchmarks.md). `bias=False` is plain
Spark ALS. Fold-in (streamrec.foldin) uses the same formulas, so stream and batch agree.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import asdict, dataclass, replace

import numpy as np
import pandas as pd

from streamrec import logs
from streamrec.errors import InvalidRequest
from streamrec.foldin import ItemFactors, predict
from streamrec.ids import rows as row_index
from streamrec.ids import rows_of_known
from streamrec.ranking import ImplicitFactors
from streamrec.scorer import Blend, Scorer, Users, rank_in_chunks

from .blend_fit import Fit, fit_blend
from .blend_fit import monotone as monotone  # the rule fit_blend replaced (tests, bench)
from .metrics import first_n, holdout_of, list_metrics, ndcg_per_user, relevant_sets

# The cold-start policy's buckets (a user's number of known ratings) and candidate weights of the
# popularity prior; 1e3 is "popularity, personal scores only break ties".
BLEND_N = (1, 2, 3, 5, 8, 12, 20, 35, 50, 100, 200)
BLEND_WEIGHTS = (0.0, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 1e3)
# The served table: the fitted curve w(n) at these bucket starts, dense at small n where it moves most.
BLEND_SERVED_N = (*range(1, 13), 15, 20, 25, 30, 40, 50, 65, 80, 100, 130, 160, 200, 300, 500, 1000)
VALIDATION_USERS = 0.2  # share of training users left out of a ranking fit to choose the blend
# Validation users ranked per bucket of n, at most: 9 weights x 11 buckets ranked for each of the
# 32k validation users of a 25M-rating history took many minutes, and a mean NDCG over 5,000
# users is already within about +-0.005 (ml-latest-small has 122 validation users: all of them).
BLEND_USERS_MAX = 5_000

LOG = logs.get("batch")


@dataclass(frozen=True)
class Params:
    rank: int = 20
    reg: float = 0.15
    iters: int = 15
    bias: bool = True
    item_bias_reg: float = 10.0
    user_bias_reg: float = 15.0
    seed: int = 42
    # Recommend only movies with at least this many training ratings: a rarely rated movie's
    # factors are mostly noise, and on the bundled holdout 10 lifts P@10 from 0.061 to 0.078.
    min_support: int = 10
    blocks: int | None = None  # ALS user/item blocks; None: Spark's default parallelism


@dataclass(frozen=True)
class RankingParams:
    """The ranking model: Spark ML ALS with implicitPrefs=True on p = rating - threshold.

    Defaults from the sweep in docs/benchmarks.md (warm NDCG@10 on the bundled data): confidence
    c = 1 + alpha * |rating - 2.5|; above 2.5 a "yes" (a 5 weighs 3.5), below a confident "no"
    (preference 0, a 1 weighs 2.5), exactly 2.5 no signal (streamrec.ranking).
    """

    rank: int = 32
    reg: float = 0.1
    alpha: float = 1.0
    threshold: float = 2.5
    iters: int = 10
    seed: int = 42
    blocks: int | None = None  # as Params.blocks


def als_blocks(spark, blocks: int | None) -> int:
    """ALS blocks per side: one per core by default. Spark's default of 10 makes ten small tasks
    per half-iteration; on 2 cores, 2 blocks fit both models about twice as fast (bench/)."""
    return blocks or max(2, spark.sparkContext.defaultParallelism)


@dataclass
class RankingFit:
    factors: ImplicitFactors  # rows aligned with the explicit model's item ids
    user_ids: np.ndarray
    user_factors: np.ndarray
    als_model: object


@dataclass
class Fitted:
    items: ItemFactors
    user_ids: np.ndarray
    user_factors: np.ndarray
    user_bias: np.ndarray
    als_model: object  # pyspark ALSModel, for Parquet export
    reg: float = 0.15


def log(msg: str) -> None:
    """Progress of a training run (stderr, through the `streamrec.batch` logger)."""
    LOG.info(msg)


def baseline(df, p: Params):
    """mu, b_i = sum(r - mu)/(lambda_i + n_i), b_u = sum(r - mu - b_i)/(lambda_u + n_u), in Spark.

    Returns (mu, b_i and n_i by movie, b_u by user: pandas, O(keys)) and the residuals as a Spark
    DataFrame (user_id, movie_id, rating) for ALS."""
    from pyspark.sql import functions as F

    r = F.col("rating").cast("double")
    movies = df.groupBy("movie_id").agg(F.count("*").alias("n"), F.sum(r).alias("s"))
    if not p.bias:
        m = movies.toPandas().set_index("movie_id")
        users = df.select("user_id").distinct().toPandas()["user_id"]
        zero_i = pd.DataFrame({"b_i": 0.0, "n": m["n"]}, index=m.index)
        zero_u = pd.Series(0.0, index=np.sort(users.to_numpy()))
        return 0.0, zero_i, zero_u, df.select("user_id", "movie_id", "rating")
    m = movies.toPandas().set_index("movie_id")
    mu = float(m["s"].sum() / m["n"].sum())
    m["b_i"] = (m["s"] - mu * m["n"]) / (p.item_bias_reg + m["n"])
    spark = df.sparkSession
    b_i = F.broadcast(spark.createDataFrame(m["b_i"].reset_index().astype({"movie_id": "int32"}),
                                            "movie_id int, b_i double"))  # fmt: skip
    with_bi = df.join(b_i, "movie_id")
    u = (with_bi.groupBy("user_id").agg(F.count("*").alias("n"), F.sum(r - mu - F.col("b_i")).alias("s"))
         .toPandas().set_index("user_id"))  # fmt: skip
    b_u = u["s"] / (p.user_bias_reg + u["n"])
    bu = F.broadcast(spark.createDataFrame(b_u.rename("b_u").reset_index().astype({"user_id": "int32"}),
                                           "user_id int, b_u double"))  # fmt: skip
    residual = with_bi.join(bu, "user_id").select(
        "user_id", "movie_id", (r - mu - F.col("b_i") - F.col("b_u")).cast("float").alias("rating")
    )
    return mu, m[["b_i", "n"]], b_u.sort_index(), residual


def fit(spark, ratings, p: Params) -> Fitted:
    """Fit on de-duplicated ratings (user_id, movie_id, rating): a Spark DataFrame, or pandas."""
    from pyspark.ml.recommendation import ALS

    from .frames import as_frame

    mu, b_i, b_u, train = baseline(as_frame(spark, ratings), p)
    als = ALS(
        rank=p.rank, regParam=p.reg, maxIter=p.iters, seed=p.seed,
        userCol="user_id", itemCol="movie_id", ratingCol="rating",
        nonnegative=False, implicitPrefs=False, checkpointInterval=5,
        numUserBlocks=als_blocks(spark, p.blocks), numItemBlocks=als_blocks(spark, p.blocks),
    )  # fmt: skip
    model = als.fit(train)
    items = model.itemFactors.toPandas().sort_values("id")
    users = model.userFactors.toPandas().sort_values("id")
    item_ids = items["id"].to_numpy(np.int64)
    user_ids = users["id"].to_numpy(np.int64)
    support = b_i["n"].reindex(item_ids, fill_value=0).to_numpy(np.int64)
    factors = ItemFactors(
        item_ids,
        np.stack(items["features"].to_numpy()).astype(np.float32),
        b_i["b_i"].reindex(item_ids).to_numpy(np.float64) if p.bias else None,
        mu,
        p.user_bias_reg if p.bias else None,
        support,
        p.min_support,
    )
    return Fitted(
        factors,
        user_ids,
        np.stack(users["features"].to_numpy()).astype(np.float32),
        b_u.reindex(user_ids, fill_value=0.0).to_numpy(np.float64),
        model,
        p.reg,
    )


def fit_ranking(spark, ratings, rp: RankingParams, item_ids: np.ndarray) -> RankingFit:
    """Spark implicit ALS on de-duplicated ratings (Spark or pandas); item rows re-ordered to `item_ids`."""
    from pyspark.ml.recommendation import ALS
    from pyspark.sql import functions as F

    from .frames import as_frame

    pref = (F.col("rating").cast("double") - rp.threshold).cast("float").alias("rating")
    train = as_frame(spark, ratings).select("user_id", "movie_id", pref)
    als = ALS(
        rank=rp.rank, regParam=rp.reg, alpha=rp.alpha, maxIter=rp.iters, seed=rp.seed,
        userCol="user_id", itemCol="movie_id", ratingCol="rating",
        implicitPrefs=True, checkpointInterval=5,
        numUserBlocks=als_blocks(spark, rp.blocks), numItemBlocks=als_blocks(spark, rp.blocks),
    )  # fmt: skip
    model = als.fit(train)
    items = model.itemFactors.toPandas()
    users = model.userFactors.toPandas().sort_values("id")
    rows = np.zeros((len(item_ids), rp.rank), np.float32)
    pos = rows_of_known(item_ids, items["id"].to_numpy(np.int64))
    rows[pos] = np.stack(items["features"].to_numpy())
    factors = ImplicitFactors(rows, rp.reg, rp.alpha, rp.threshold)
    return RankingFit(factors, users["id"].to_numpy(np.int64),
                      np.stack(users["features"].to_numpy()).astype(np.float32), model)  # fmt: skip


def scorer_of(m: Fitted, r: RankingFit, blend: Blend | None = None) -> Scorer:
    return Scorer(m.items, r.factors, m.reg, blend or Blend())


def stored_users(m: Fitted, r: RankingFit, train: pd.DataFrame | pd.Series, users: np.ndarray) -> Users:
    """Trained users' vectors of both models (users must be in both fits); `train`: the training
    ratings, or their count per user."""
    e = rows_of_known(m.user_ids, users)
    i = rows_of_known(r.user_ids, users)
    per_user = train if isinstance(train, pd.Series) else train.groupby("user_id").size()
    n = per_user.reindex(users, fill_value=0).to_numpy()
    return Users(users, r.user_factors[i], n, m.user_factors[e], m.user_bias[e])


def ranking_model_metrics(scorer: Scorer, users: Users, train: pd.DataFrame, test: pd.DataFrame,
                          k: int = 10) -> dict:  # fmt: skip
    """List metrics of the served lists (scorer) for `users` against their held-out ratings."""
    rel = relevant_sets(test)
    keep = np.isin(users.ids, rel.index.to_numpy())
    users = users.subset(keep)
    seen = {u: g.to_numpy() for u, g in train.groupby("user_id")["movie_id"]}
    rows = scorer.rank_rows(users, k, [seen.get(u, np.empty(0)) for u in users.ids])
    lists = list(ids_of(scorer, rows))
    return list_metrics(lists, [rel[u] for u in users.ids], k)


def ids_of(scorer: Scorer, rows: np.ndarray) -> np.ndarray:
    """Movie ids of item rows, -1 kept for padding."""
    return np.where(rows >= 0, scorer.items.ids[np.maximum(rows, 0)], -1)


def popularity_metrics(items: ItemFactors, users: np.ndarray, train: pd.DataFrame, test: pd.DataFrame,
                       k: int = 10, counts: np.ndarray | None = None) -> dict:  # fmt: skip
    """The same list metrics for "most popular" (count of training ratings: `counts` by item row,
    default counted in `train`), on the same users and candidates (training movies minus the
    user's own), as the yardstick every list must beat. `train` must hold `users`' own ratings."""
    rel = relevant_sets(test)
    users = users[np.isin(users, rel.index.to_numpy())]
    if counts is None:
        counts = train["movie_id"].value_counts().reindex(items.ids, fill_value=0).to_numpy(np.float64)
    counts = np.asarray(counts, np.float64)
    seen = {u: g.to_numpy() for u, g in train.groupby("user_id")["movie_id"]}
    rows, _ = rank_in_chunks(items, len(users), k, lambda a, b: np.tile(counts, (b - a, 1)),
                             [seen.get(u, np.empty(0)) for u in users])  # fmt: skip
    return list_metrics([items.ids[r[r >= 0]] for r in rows], [rel[u] for u in users], k)


def calibrate_blend(scorer: Scorer, ratings: pd.DataFrame, k: int = 10) -> tuple[Blend, list[dict], Fit]:
    """Choose the prior's weight w(n) on users the ranking model never saw.

    For each n in BLEND_N: fold in each user's first n ratings by event time (pass each user's
    complete history: what a new user gives first), rank with every candidate weight, score NDCG@k
    on the rest of their ratings. One curve w(n) = a / (n + b) is then fitted to all the buckets'
    rows together (`blend_fit.fit_blend`): smooth and non-increasing in n, so the noise of one
    bucket cannot set the others. A large enough a puts every bucket at the popularity candidate,
    so the curve's mean validation NDCG is at least popularity's. The served table holds the curve
    at BLEND_SERVED_N.
    A bucket with more than BLEND_USERS_MAX users is scored on a seeded sample of them.
    """
    table = []
    for n in BLEND_N:
        inputs, rest = first_n(ratings, n)
        rel = relevant_sets(rest)
        keep = rel.index.to_numpy()
        if len(keep) > BLEND_USERS_MAX:  # a seeded sample: the same users on every run
            keep = np.random.default_rng(n).choice(keep, BLEND_USERS_MAX, replace=False)
        inputs = inputs[inputs["user_id"].isin(keep)]
        if inputs.empty:
            continue
        users = scorer.fold_in(inputs["user_id"], inputs["movie_id"], inputs["rating"])
        exclude = [g.to_numpy() for _, g in inputs.groupby("user_id")["movie_id"]]  # sorted like users
        relevant = [rel[u] for u in users.ids]
        row = {"n": n, "users": len(users)}
        ranked = scorer.rank_rows_per_weight(users, k, BLEND_WEIGHTS, exclude)
        for w, rows in zip(BLEND_WEIGHTS, ranked, strict=True):
            row[str(w)] = float(ndcg_per_user(ids_of(scorer, rows), relevant, k).mean())
        row["chosen"] = max(BLEND_WEIGHTS, key=lambda w: row[str(w)])  # this bucket's own best
        table.append(row)
    fit = fit_blend(table, BLEND_WEIGHTS)
    for row in table:
        row["fitted"] = min(float(fit.weight(row["n"])), max(BLEND_WEIGHTS))
    return Blend(BLEND_SERVED_N, fit.table(BLEND_SERVED_N, max(BLEND_WEIGHTS))), table, fit


def choose_blend(
    spark,
    explicit: Fitted,
    ratings,
    rp: RankingParams,
    seed: int,
    k: int = 10,
    history=None,
) -> tuple[Blend, dict, RankingFit, np.ndarray]:
    """The cold-start blend, as `train` and `evaluate` both choose it: fit the ranking model
    without a seeded fifth of the users of `ratings`, then `calibrate_blend` on those users.

    `history` (default `ratings`) supplies the validation users' ratings, so a caller whose
    `ratings` is a random training split can pass the users' complete histories: their first n
    ratings by event time are then their real first n. Only rows of the validation users are read,
    and they never enter the ranking fit. The caller must make sure no metric it reports scores
    those rows (`train` reports warm metrics on the other users only).

    `ratings` and `history` are Spark DataFrames or pandas. The ranking fit runs in Spark; the
    driver gets the user ids and the histories of at most CALIBRATION_USERS_MAX validation users.

    Returns (blend, {"validation": table, "fit": curve}, that ranking fit, the validation users)."""
    from .frames import CALIBRATION_USERS_MAX, as_frame, distinct_users, pick, rows_of, without

    frame = as_frame(spark, ratings)
    local = isinstance(ratings, pd.DataFrame)
    ids = np.unique(ratings["user_id"].to_numpy()) if local else distinct_users(frame)
    val = holdout_of(ids, VALIDATION_USERS, seed)
    partial = fit_ranking(spark, without(frame, val), rp, explicit.items.ids)
    source = ratings if history is None else history
    calibration = pick(val, CALIBRATION_USERS_MAX, seed)
    if isinstance(source, pd.DataFrame):
        rows = source[source["user_id"].isin(calibration)]
    else:
        rows = rows_of(source, calibration)
    blend, table, fit = calibrate_blend(scorer_of(explicit, partial), rows, k)
    return blend, {"validation": table, "fit": fit.to_dict()}, partial, val


def split(ratings: pd.DataFrame, how: str, test_fraction: float, seed: int):
    """(train, test): a seeded random split, or the newest `test_fraction` by event time."""
    if not 0 < test_fraction < 1:
        raise InvalidRequest(f"test_fraction must be between 0 and 1, got {test_fraction}")
    if how == "random":
        mask = np.random.default_rng(seed).random(len(ratings)) < test_fraction
    elif how == "time":
        order = np.argsort(ratings["timestamp"].to_numpy(), kind="stable")
        mask = np.zeros(len(ratings), bool)
        mask[order[int(np.floor((1 - test_fraction) * len(ratings))) :]] = True
    else:
        raise InvalidRequest(f"split must be random or time, got {how!r}")
    return ratings[~mask].reset_index(drop=True), ratings[mask].reset_index(drop=True)


def evaluate(m: Fitted, train: pd.DataFrame, test: pd.DataFrame, k: int = 10, ranking: bool = True) -> dict:
    """RMSE/MAE on the holdout (cold-start rows dropped and counted) and ranking metrics @k."""
    u_pos, known_u = row_index(m.user_ids, test["user_id"].to_numpy())
    i_pos, known_i = m.items.rows(test["movie_id"].to_numpy())
    warm = known_u & known_i
    uv = np.einsum("ij,ij->i", m.user_factors[u_pos[warm]], m.items.factors[i_pos[warm]])
    pred = m.items.mean + m.items.item_bias(i_pos[warm]) + m.user_bias[u_pos[warm]] + uv
    err = test["rating"].to_numpy(np.float64)[warm] - pred
    metrics = {
        "rmse": float(np.sqrt(np.mean(err**2))) if len(err) else float("nan"),
        "mae": float(np.mean(np.abs(err))) if len(err) else float("nan"),
        "holdout_rows": int(len(test)),
        "cold_start_dropped": int((~warm).sum()),
    }
    if ranking:
        metrics.update(ranking_metrics(m, train, test, k))
    return metrics


def ranking_metrics(m: Fitted, train: pd.DataFrame, test: pd.DataFrame, k: int) -> dict:
    """List metrics of the explicit model's own lists (ranked by predicted rating), for reference.

    Candidates are the model's servable items the user did not rate in training.
    """
    rel = relevant_sets(test)
    seen = {u: g.to_numpy() for u, g in train.groupby("user_id")["movie_id"]}
    pos, known = row_index(m.user_ids, rel.index.to_numpy())
    users, pos = rel.index.to_numpy()[known], pos[known]

    def predicted(a: int, b: int) -> np.ndarray:
        return predict(m.items, m.user_factors[pos[a:b]], m.user_bias[pos[a:b], None])

    rows, _ = rank_in_chunks(m.items, len(users), k, predicted, [seen.get(u, np.empty(0)) for u in users],
                             m.items.servable)  # fmt: skip
    res = list_metrics([m.items.ids[r[r >= 0]] for r in rows], [rel[u] for u in users], k)
    res["ranking_users"] = res.pop("users")
    return res


def tune(spark, train, grid: dict, base: Params, folds: int, seed: int) -> tuple[Params, list[dict]]:
    """Grid search on the training part only (a validation split, or k folds): best by RMSE.

    Fits in Spark on `train` (Spark or pandas); validation RMSE on the rows of at most
    EVAL_USERS_MAX users (the driver's share)."""
    from .frames import EVAL_USERS_MAX, as_frame, distinct_users, folds_frame, pick, rows_of, split_frame

    frame = as_frame(spark, train)
    combos = [replace(base, rank=r, reg=g, iters=i) for r, g, i in itertools.product(*grid.values())]
    splits = folds_frame(frame, folds, seed) if folds >= 2 else [split_frame(frame, "random", 0.2, seed)]
    judges = pick(distinct_users(frame), EVAL_USERS_MAX, seed)
    held = [rows_of(va, judges) for _, va in splits]
    results = []
    for n, params in enumerate(combos, 1):
        t0 = time.monotonic()
        scores = []
        for (tr, _), va in zip(splits, held, strict=True):
            m = fit(spark, tr, params)
            scores.append(evaluate(m, va.iloc[:0], va, ranking=False)["rmse"])
        row = {"rank": params.rank, "reg": params.reg, "iters": params.iters,
               "rmse": float(np.mean(scores)), "seconds": round(time.monotonic() - t0, 1)}  # fmt: skip
        results.append(row)
        log(f"  tune [{n}/{len(combos)}] rank={params.rank} reg={params.reg} iters={params.iters}"
            f" -> validation RMSE {row['rmse']:.4f} ({row['seconds']}s)")  # fmt: skip
    best = min(results, key=lambda r: r["rmse"])
    return replace(base, rank=best["rank"], reg=best["reg"], iters=best["iters"]), results


def tune_ranking(
    spark, train, grid: dict, base: RankingParams, item_ids: np.ndarray
) -> tuple[RankingParams, list[dict]]:
    """Grid search of the ranking model on a validation split of the training part, by NDCG@10
    (fits in Spark; lists scored for at most EVAL_USERS_MAX users)."""
    from .frames import EVAL_USERS_MAX, as_frame, counts_by, distinct_users, pick, rows_of, split_frame

    combos = [replace(base, rank=r, reg=g, alpha=a) for r, g, a in itertools.product(*grid.values())]
    tr, va = split_frame(as_frame(spark, train), "random", 0.2, base.seed)
    # Item ids of this fit (a movie only in the validation part has no factors).
    support = counts_by(tr, "movie_id").sort_index()
    ids = support.index.to_numpy(np.int64)
    items = ItemFactors(ids, np.zeros((len(ids), 1), np.float32), support=support.to_numpy())
    judges = pick(distinct_users(tr), EVAL_USERS_MAX, base.seed)
    tr_rows, va_rows = rows_of(tr, judges), rows_of(va, judges)
    per_user = counts_by(tr, "user_id")
    results = []
    for n, rp in enumerate(combos, 1):
        t0 = time.monotonic()
        r = fit_ranking(spark, tr, rp, ids)
        scorer = Scorer(items, r.factors, 0.0, Blend())
        n_used = per_user.reindex(r.user_ids, fill_value=0).to_numpy()
        users = Users(r.user_ids, r.user_factors, n_used, np.zeros((len(r.user_ids), 1), np.float32),
                      np.zeros(len(r.user_ids)))  # fmt: skip
        m = ranking_model_metrics(scorer, users, tr_rows, va_rows)
        row = {
            "rank": rp.rank,
            "reg": rp.reg,
            "alpha": rp.alpha,
            "ndcg_at_10": m["ndcg_at_10"],
            "precision_at_10": m["precision_at_10"],
            "seconds": round(time.monotonic() - t0, 1),
        }
        results.append(row)
        log(f"  tune ranking [{n}/{len(combos)}] rank={rp.rank} reg={rp.reg} alpha={rp.alpha}"
            f" -> validation NDCG@10 {row['ndcg_at_10']:.4f} ({row['seconds']}s)")  # fmt: skip
    best = max(results, key=lambda r: r["ndcg_at_10"])
    return replace(base, rank=best["rank"], reg=best["reg"], alpha=best["alpha"]), results


def params_dict(p: Params) -> dict:
    d = asdict(p)
    d["baseline"] = (
        {"mean": None, "item_reg": p.item_bias_reg, "user_reg": p.user_bias_reg} if p.bias else None
    )
    return d

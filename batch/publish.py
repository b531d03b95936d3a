"""One training run end to end: history -> split -> (tune) -> fit -> evaluate -> gate -> publish.

The holdout measures the parameters; the published model is then refit on all of the history
with those parameters, so serving uses every rating while the gate compares holdout scores.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from streamrec.content import ContentMap, fit_content_map, load_tags
from streamrec.errors import DataError, ModelStoreError, QualityGateFailed
from streamrec.history import HistorySpec
from streamrec.ids import rows_of_known
from streamrec.model_store import CONTENT_NPZ, ModelStore, write_npz
from streamrec.movielens import load_movies
from streamrec.scorer import Scorer, Users
from streamrec.settings import EVAL_SAMPLE_RATINGS

from .train import (
    VALIDATION_USERS,
    Params,
    RankingParams,
    choose_blend,
    evaluate,
    fit,
    fit_ranking,
    log,
    params_dict,
    popularity_metrics,
    ranking_model_metrics,
    scorer_of,
    stored_users,
    tune,
    tune_ranking,
)

LOG_N = (1, 2, 3, 5, 10, 20, 50, 100, 200)  # the blend's weight is logged at these n
GATE_TOLERANCE = 0.02  # refuse a model whose holdout RMSE is > 2% worse than CURRENT's
# ... or whose lists' NDCG@10 is > 10% worse (lists are noisier than RMSE across data growth)
RANKING_GATE_TOLERANCE = 0.10
# ... or whose data looks like another dataset: history only grows, so fewer than half of
# CURRENT's users, movies or ratings means a wrong file or window, and a 10x jump in users or
# movies (a file with swapped columns turned 610 users into 9,724) is not a retrain's growth.
COUNT_SHRINK, COUNT_GROWTH = 0.5, 10.0
GATE_MIN_ROWS = 200  # held-out ratings newer than CURRENT's data needed to compare on them


@dataclass
class TrainOptions:
    spec: HistorySpec
    params: Params = field(default_factory=Params)
    ranking: RankingParams = field(default_factory=RankingParams)
    ranking_grid: dict | None = None  # {"rank": [...], "reg": [...], "alpha": [...]}
    split: str = "random"
    test_fraction: float = 0.2
    tune_grid: dict | None = None  # {"rank": [...], "reg": [...], "iters": [...]}
    folds: int = 0
    force: bool = False
    keep: int = 5
    refit_full: bool = True
    candidate: bool = False  # publish without making it CURRENT (shadow-scored by the stream)
    # Evaluate on a user sample of about this many ratings when there are more (0: on all);
    # only with refit_full, else the evaluated model is the one served.
    eval_sample_ratings: int = EVAL_SAMPLE_RATINGS


def run_training(spark, opts: TrainOptions, store: ModelStore | None = None) -> dict:
    """Train, evaluate and publish through the quality gate. Returns the run's summary."""
    store = store or ModelStore()
    store.clean_staging()  # what a killed run left behind
    t0 = time.monotonic()
    at = f" version {opts.spec.event_log_version}" if opts.spec.event_log_version is not None else ""
    log(f"loading history from {opts.spec.data}" + (f" + event log{at}" if opts.spec.event_log else ""))
    from pyspark import StorageLevel

    from streamrec.history_frames import history_frame, latest_per_pair

    # Read and de-duplicated by the executors; kept on their disks for the fits that follow
    # (on disk, not in the JVM's heap: memory must not grow with the history).
    raw = history_frame(spark, opts.spec, pinned=True)  # the snapshot the spec names (metadata)
    ratings = latest_per_pair(raw).persist(StorageLevel.DISK_ONLY)
    try:
        return _train_and_publish(spark, opts, store, raw, ratings, t0)
    finally:
        ratings.unpersist()
        drop_rdd_checkpoints(spark)


def drop_rdd_checkpoints(spark) -> None:
    """Delete the RDD checkpoints ALS wrote during the run (every checkpointInterval iterations):
    they only cut lineage inside one fit, Spark never deletes them by itself, and `retrain --every`
    keeps one SparkContext for weeks (the soak found its checkpoint directory growing per run)."""
    import shutil
    from urllib.parse import urlparse

    where = spark.sparkContext.getCheckpointDir()
    if not where:
        return
    root = Path(urlparse(where).path) if where.startswith("file:") else Path(where)
    for rdd in root.glob("rdd-*") if root.is_dir() else []:
        shutil.rmtree(rdd, ignore_errors=True)


def _train_and_publish(spark, opts: TrainOptions, store: ModelStore, raw, ratings, t0: float) -> dict:
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    from .frames import evaluation_sample

    head = raw.agg(F.count("*"), F.max("timestamp")).first()
    size = ratings.agg(F.count("*"), F.countDistinct("user_id"), F.countDistinct("movie_id")).first()
    counts = {"rating_events": int(head[0]), "ratings": int(size[0]), "users": int(size[1]),
              "movies": int(size[2])}  # fmt: skip
    if counts["ratings"] == 0:  # a data error (exit 1), not a quality-gate refusal (exit 3)
        raise DataError("no ratings in the selected history (--until / --split-at): nothing to train on")
    newest = int(head[1])
    # The evaluation's fits run on a bounded user sample (the served models are refit on all below).
    limit = opts.eval_sample_ratings if opts.refit_full else 0
    basis, sample = evaluation_sample(ratings, counts["ratings"], limit, opts.params.seed)
    if sample is not None:
        basis = basis.persist(StorageLevel.DISK_ONLY)
        log(f"evaluating on the ratings of a seeded {sample['user_fraction']:.1%} of users (about "
            f"{limit:,} of {counts['ratings']:,}); the served models are fit on all of them")  # fmt: skip
    try:
        return _evaluate_and_publish(spark, opts, store, ratings, basis, sample, counts, newest, t0)
    finally:
        if sample is not None:
            basis.unpersist()


def _evaluate_and_publish(spark, opts: TrainOptions, store: ModelStore, ratings, basis, sample: dict | None,
                          counts: dict, newest: int, t0: float) -> dict:  # fmt: skip
    from .frames import EVAL_USERS_MAX, counts_by, distinct_users, pick, rows_of, split_frame

    train, test = split_frame(basis, opts.split, opts.test_fraction, opts.params.seed)
    # The driver's share of the holdout: the ratings of at most EVAL_USERS_MAX users (all of them on
    # small data), a seeded sample otherwise; every figure below is scored on them.
    judges = pick(distinct_users(basis), EVAL_USERS_MAX, opts.params.seed)
    train_rows, test_rows = rows_of(train, judges), rows_of(test, judges)
    n_train = train.count()
    params, tuning = opts.params, None
    if opts.tune_grid:
        how = f"{opts.folds} folds" if opts.folds >= 2 else "a validation split"
        log(f"tuning over {_grid_size(opts.tune_grid)} candidates with {how}")
        params, tuning = tune(spark, train, opts.tune_grid, params, opts.folds, params.seed)
        log(f"best: rank={params.rank} reg={params.reg} iters={params.iters}")
    log(f"fitting the explicit model: ALS rank={params.rank} reg={params.reg} iters={params.iters} "
        f"bias={'on' if params.bias else 'off'} on {n_train:,} ratings")  # fmt: skip
    model = fit(spark, train, params)
    metrics = evaluate(model, train_rows, test_rows)
    log(f"holdout ({opts.split} {opts.test_fraction:.0%}, {len(judges):,} users): "
        f"RMSE {metrics['rmse']:.4f}, "
        f"MAE {metrics['mae']:.4f}, NDCG@10 of its own lists {metrics['ndcg_at_10']:.4f}")  # fmt: skip

    # The ranking model's holdout fit leaves a fifth of the users out entirely: they are the
    # "new users" on whom the cold-start blend is chosen; the others give the warm metrics.
    rparams, rtuning = opts.ranking, None
    if opts.ranking_grid:
        log(f"tuning the ranking model over {_grid_size(opts.ranking_grid)} candidates (NDCG@10)")
        rparams, rtuning = tune_ranking(spark, train, opts.ranking_grid, rparams, model.items.ids)
        log(f"best: rank={rparams.rank} reg={rparams.reg} alpha={rparams.alpha}")
    log(f"fitting the ranking model: implicit ALS rank={rparams.rank} reg={rparams.reg} "
        f"alpha={rparams.alpha}, {VALIDATION_USERS:.0%} of users held out for the blend")  # fmt: skip
    # The blend is calibrated on the validation users' first n ratings by event time. After a random
    # split their training rows are a random 80 %, not their first ratings, so it reads their
    # complete histories: the ranking fit excludes these users, and every list metric reported
    # (and gated) below scores the other users' holdout only; RMSE does not depend on the blend.
    # After a time split their training rows already are their first ratings, and their newer rows
    # belong to the period the gate measures: those are left out.
    history = basis if opts.split == "random" else train
    blend, blend_meta, ranking, val_users = choose_blend(spark, model, train, rparams, params.seed,
                                                         history=history)  # fmt: skip
    warm = np.setdiff1d(np.intersect1d(model.user_ids, ranking.user_ids), val_users)
    warm = np.intersect1d(warm, judges)
    scorer = scorer_of(model, ranking, blend)
    warm_users = stored_users(model, ranking, counts_by(train, "user_id"), warm)
    rmetrics = ranking_model_metrics(scorer, warm_users, train_rows, test_rows)
    metrics["explicit_lists"] = {k: metrics.pop(k) for k in list(metrics) if k.endswith("_at_10")}
    metrics["explicit_lists"]["users"] = metrics.pop("ranking_users")
    metrics.update(rmetrics)
    metrics["popularity"] = popularity_metrics(model.items, warm, train_rows, test_rows,
                                               counts=model.items.support)  # fmt: skip
    log(f"ranking model, warm users: P@10 {rmetrics['precision_at_10']:.4f}, "
        f"NDCG@10 {rmetrics['ndcg_at_10']:.4f} (popularity {metrics['popularity']['ndcg_at_10']:.4f}); "
        f"cold-start prior weight w(n) = {blend_meta['fit']['a']:.3g}/(n+{blend_meta['fit']['b']:.3g}): "
        + ", ".join(f"{n}:{w:.3g}" for n, w in zip(LOG_N, blend.weight(np.array(LOG_N)), strict=True))
    )  # fmt: skip

    current = store.current_version()
    # A model evaluated on a sample is compared with CURRENT's figures from the same protocol only:
    # scored beside CURRENT (refit on all ratings) it would lose by its smaller training set.
    same = None if sample else _same_holdout(store, current, scorer, warm_users, train_rows, test_rows)
    gate = _gate(current, same or _recorded_holdout(store, current, metrics, sample),
                 counts, store.metadata(current).counts if current else None)  # fmt: skip
    if not gate["passed"] and not opts.force:
        raise QualityGateFailed(f"not published: {gate['reason']} (--force overrides)")

    if opts.refit_full:
        log(f"refitting both models on all {counts['ratings']:,} ratings for serving")
        model = fit(spark, ratings, params)
        ranking = fit_ranking(spark, ratings, rparams, model.items.ids)
    else:  # the blend's ranking fit left the validation users out: serve one that has them
        ranking = fit_ranking(spark, train, rparams, model.items.ids)
    if not np.array_equal(ranking.user_ids, model.user_ids):
        raise RuntimeError("the two models saw different users; this is a bug")
    user_support = counts_by(ratings, "user_id").reindex(model.user_ids, fill_value=0).to_numpy()
    content = _content_map(opts, model.items, ranking.factors.factors, params.seed)
    with store.staging() as staged:  # removed again if anything below fails
        if content is not None:
            content.save(staged / CONTENT_NPZ)
        write_npz(staged / "factors.npz", model.items, model.user_ids, model.user_factors, model.user_bias,
                  ranking.factors.factors, ranking.user_factors, user_support)  # fmt: skip
        for name, factors in [("item_factors", model.als_model.itemFactors),
                              ("user_factors", model.als_model.userFactors),
                              ("ranking_item_factors", ranking.als_model.itemFactors),
                              ("ranking_user_factors", ranking.als_model.userFactors)]:  # fmt: skip
            write_factors(factors, staged / name)
        pdict = params_dict(params)
        if pdict["baseline"]:
            pdict["baseline"]["mean"] = model.items.mean
        pdict["ranking"] = asdict(rparams)
        meta = {
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "params": pdict,
            "blend": {**blend.to_dict(), **blend_meta},
            "metrics": metrics,
            "evaluation": {
                "split": opts.split,
                "test_fraction": opts.test_fraction,
                "seed": params.seed,
                "validation_users": len(val_users),
                "holdout_users": len(judges),  # whose holdout rows the metrics score (EVAL_USERS_MAX)
                "sample": sample,  # the users the evaluation's fits ran on (None: all)
            },  # fmt: skip
            "counts": counts,
            "history": opts.spec.to_dict(),
            "newest_event_ts": newest,
            "trained_on": "all history" if opts.refit_full else "training split",
            "gate": gate,
            "tuning": tuning,
            "ranking_tuning": rtuning,
            "content": content.summary if content is not None else None,
            "seconds": round(time.monotonic() - t0, 1),
        }
        version = store.publish(staged, meta, make_current=not opts.candidate)
    if opts.candidate:
        store.set_candidate(version)
    pruned = store.prune(opts.keep)
    return {"version": version, "pruned": pruned, "candidate": opts.candidate, **meta}


def _content_map(opts: TrainOptions, items, rank_factors: np.ndarray, seed: int) -> ContentMap | None:
    """Content (genres, tags, year) -> the ranking model's item factors, for movies with no ratings
    (streamrec.content). A data folder whose movies cannot be read gets no map, not a failed run."""
    try:
        movies, tags = load_movies(Path(opts.spec.data)), load_tags(Path(opts.spec.data))
    except DataError as exc:
        log(f"no content map: {exc}")
        return None
    content = fit_content_map(movies, tags, items.ids, rank_factors, items.support, seed=seed)
    v = content.summary["validation"]
    log(f"content map: {content.spec.n_features} features ({len(content.spec.tags)} tag words), "
        f"lambda {content.lam:g}, on {content.summary['movies_fitted']:,} movies; validation movies "
        + (f"R^2 {v['r2']:.3f}, cosine {v['cosine']:.3f}" if v["r2"] is not None else "too few"))  # fmt: skip
    return content


def _same_holdout(store: ModelStore, current: str | None, scorer: Scorer, users: Users, train: pd.DataFrame,
                  test: pd.DataFrame) -> dict | None:  # fmt: skip
    """The candidate and CURRENT scored on the same held-out ratings, ones neither was trained on.

    Those are the candidate's holdout rows newer than CURRENT's newest training event, of the
    candidate's warm users; CURRENT folds in those users' training rows with its factors fixed
    (its exact fold-in). Rows CURRENT trained on would flatter it with its training error, so
    they are left out. None when there is no usable CURRENT or fewer than GATE_MIN_ROWS such rows
    (data that did not grow: then the candidate's holdout is CURRENT's own, same data and seed).
    """
    if current is None or store.check(current):
        return None
    try:
        old = store.load(current)
    except ModelStoreError:
        return None
    newest = old.meta.newest_event_ts
    unseen = test[(test["timestamp"] > newest) & test["user_id"].isin(users.ids)] if newest else test[:0]
    if len(unseen) < GATE_MIN_ROWS:
        return None
    users = users.subset(np.isin(users.ids, unseen["user_id"].unique()))
    rows = train[train["user_id"].isin(users.ids)]
    old_users = old.scorer.fold_in(rows["user_id"], rows["movie_id"], rows["rating"])
    both = (
        old.items.rows(unseen["movie_id"].to_numpy())[1] & scorer.items.rows(unseen["movie_id"].to_numpy())[1]
    )
    held = unseen[both]
    return {
        "basis": f"{len(unseen):,} held-out ratings newer than {current}'s data",
        "ndcg_at_10": ranking_model_metrics(scorer, users, train, unseen)["ndcg_at_10"],
        "current_ndcg_at_10": ranking_model_metrics(old.scorer, old_users, train, unseen)["ndcg_at_10"],
        "rmse": _rmse(scorer, users, held),
        "current_rmse": _rmse(old.scorer, old_users, held),
        "holdout_rows": int(len(unseen)),
        "users": int(len(users)),
    }


def _rmse(scorer: Scorer, users: Users, rows: pd.DataFrame) -> float:
    """The explicit model's RMSE on held-out rows of `users` (movies the scorer knows)."""
    u = rows_of_known(users.ids, rows["user_id"].to_numpy())
    i, _ = scorer.items.rows(rows["movie_id"].to_numpy())
    dot = np.einsum(
        "ij,ij->i", users.vectors[u].astype(np.float64), scorer.items.factors[i].astype(np.float64)
    )
    pred = scorer.items.mean + scorer.items.item_bias(i) + users.biases[u] + dot
    err = rows["rating"].to_numpy(np.float64) - pred
    return float(np.sqrt(np.mean(err**2))) if len(err) else float("nan")


def _recorded_holdout(store: ModelStore, current: str | None, metrics: dict, sample: dict | None = None
                      ) -> dict | None:  # fmt: skip
    """CURRENT's recorded holdout figures beside the candidate's: the same holdout when the data
    did not grow (same data, same seed, same split), or, for a candidate evaluated on a user
    `sample`, CURRENT's figures from a sample of the same size (None when only one of the two
    evaluations was sampled, or at another size: not comparable). NDCG only when CURRENT's is a
    ranking model's (a version from before it recorded its explicit model's lists there)."""
    if current is None or store.check(current):
        return None
    meta = store.metadata(current)
    old = meta.metrics
    if old.get("rmse") is None:
        return None
    theirs = (meta.raw.get("evaluation") or {}).get("sample")
    if (theirs or {}).get("limit") != (sample or {}).get("limit"):  # one of them sampled, or sizes differ
        return None
    basis = f"a user sample of about {sample['limit']:,} ratings each" if sample else "the data did not grow"
    lists = "explicit_lists" in old
    return {"basis": f"{current}'s recorded holdout ({basis})",
            "rmse": metrics["rmse"], "current_rmse": old["rmse"],
            "ndcg_at_10": metrics["ndcg_at_10"] if lists else None,
            "current_ndcg_at_10": old["ndcg_at_10"] if lists else None}  # fmt: skip


def _implausible(counts: dict, current_counts: dict | None, current: str | None) -> str | None:
    """Why the candidate's data does not look like a later version of CURRENT's, or None."""
    for key in ("users", "movies", "ratings"):
        new, old = counts.get(key), (current_counts or {}).get(key)
        if not new or not old:
            continue
        if new < old * COUNT_SHRINK:
            return f"{new:,} {key} is fewer than half of {current}'s {old:,} (a wrong file or window?)"
        if key != "ratings" and new > old * COUNT_GROWTH:
            return f"{new:,} {key} is more than {COUNT_GROWTH:g}x {current}'s {old:,} (swapped columns?)"
    return None


def write_factors(factors, path: Path) -> None:
    """ALS factors (id, features) as Parquet that Spark reads back, written by the driver: the
    store is the driver's directory, and on a cluster `df.write` would leave each part on the
    executor that wrote it (found by the cluster test: the workers cannot see this disk)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.mkdir()
    table = pa.Table.from_pandas(factors.toPandas(), preserve_index=False)
    pq.write_table(table, path / "part-00000.parquet")


def _gate(current: str | None, comparison: dict | None, counts: dict | None = None,
          current_counts: dict | None = None) -> dict:  # fmt: skip
    """Refuse a candidate whose RMSE or lists' NDCG@10 is worse than CURRENT's beyond the
    tolerances, both measured on one holdout (`_same_holdout`, else `_recorded_holdout`), or
    whose user/movie/rating counts jump implausibly from CURRENT's."""
    gate = {"current_version": current, "tolerance": GATE_TOLERANCE, "ndcg_tolerance": RANKING_GATE_TOLERANCE,
            "comparison": comparison, "passed": True}  # fmt: skip
    c = comparison
    if current and counts and (why := _implausible(counts, current_counts, current)):
        return {**gate, "passed": False, "reason": f"implausible data: {why}"}
    if c is None:
        return gate  # nothing to compare with
    if c["rmse"] > c["current_rmse"] * (1 + GATE_TOLERANCE):
        gate.update(
            passed=False,
            reason=f"holdout RMSE {c['rmse']:.4f} is more than {GATE_TOLERANCE:.0%} worse than "
            f"{current}'s {c['current_rmse']:.4f} ({c['basis']})",
        )
    elif c["ndcg_at_10"] is not None and c["ndcg_at_10"] < c["current_ndcg_at_10"] * (
        1 - RANKING_GATE_TOLERANCE
    ):
        gate.update(
            passed=False,
            reason=f"holdout NDCG@10 {c['ndcg_at_10']:.4f} is more than {RANKING_GATE_TOLERANCE:.0%} "
            f"worse than {current}'s {c['current_ndcg_at_10']:.4f} ({c['basis']})",
        )
    return gate


def _grid_size(grid: dict) -> int:
    n = 1
    for values in grid.values():
        n *= len(values)
    return n


def default_spec(
    data: Path, until=None, split_at=None, with_event_log: bool = True, event_log_version: int | None = None
) -> HistorySpec:
    """History of a training run: the data folder window, plus the event log when it exists,
    pinned to one table version (`event_log_version`, default the latest) so the run reads one
    snapshot however much the stream appends meanwhile, and the model can be retrained on it.

    The metadata's newest_event_ts records how far the included events went.
    """
    from streamrec.event_log import committed_files, event_log_dir, open_table, table_version

    log_dir = event_log_dir()
    if event_log_version is not None:
        if not with_event_log:
            raise DataError("--event-log-version needs the event log (drop --no-event-log)")
        open_table(log_dir, event_log_version)  # a clear error now when there is no such snapshot
        return HistorySpec(str(Path(data).resolve()), until, split_at, str(log_dir), event_log_version)
    use_log = with_event_log and bool(committed_files(log_dir))
    version = table_version(log_dir) if use_log else None  # None: a legacy log not migrated yet
    return HistorySpec(str(Path(data).resolve()), until, split_at, str(log_dir) if use_log else None, version)

"""Batch subcommands: train, retrain, model, evaluate, report."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

import click

from streamrec.errors import StreamrecError
from streamrec.history import TIME
from streamrec.settings import (
    DURATION,
    EVAL_SAMPLE_RATINGS,
    FLOATS,
    FRACTION,
    INTS,
    PATH,
    POSITIVE,
    WORDS,
    data_option,
    run_with_args,
    sink_option,
)

NON_NEGATIVE = click.FloatRange(min=0)


def training_options_decorator(f: Callable) -> Callable:
    """The options `train` and `retrain` share."""
    opts = [
        data_option(),
        click.option("--until", type=TIME, default=None, help="train only on events before this time"),
        click.option(
            "--split-at",
            type=FRACTION,
            default=None,
            help="train only on the oldest F of events (the base model for a replay)",
        ),
        click.option(
            "--event-log/--no-event-log", default=True, help="include the stream's event log when it exists"
        ),
        click.option(
            "--event-log-version",
            type=click.IntRange(min=0),
            default=None,
            help="train on this snapshot (table version) of the event log, as a model's "
            "history.event_log_version names it [default: the latest]",
        ),
        click.option("--rank", type=POSITIVE, default=20, help="latent factors"),
        click.option("--reg", type=NON_NEGATIVE, default=0.15, help="ALS regParam (lambda)"),
        click.option("--iters", type=POSITIVE, default=15, help="ALS maxIter"),
        click.option(
            "--bias/--no-bias",
            default=True,
            help="learn a baseline (mean + user/item biases) and ALS on its residuals",
        ),
        click.option(
            "--min-support",
            type=POSITIVE,
            default=10,
            help="recommend only movies with at least N training ratings (1: every movie)",
        ),
        click.option(
            "--ranking-rank", type=POSITIVE, default=32, help="ranking model (implicit ALS): latent factors"
        ),
        click.option(
            "--ranking-reg", type=NON_NEGATIVE, default=0.1, help="ranking model: regParam (lambda)"
        ),
        click.option(
            "--ranking-alpha", type=NON_NEGATIVE, default=1.0, help="ranking model: confidence slope alpha"
        ),
        click.option(
            "--ranking-threshold",
            type=float,
            default=2.5,
            help="ranking model: preference = rating - T; a rating below T is a confident no",
        ),
        click.option("--ranking-iters", type=POSITIVE, default=10, help="ranking model: maxIter"),
        click.option(
            "--tune",
            is_flag=True,
            help="grid-search both models first (explicit by RMSE, ranking by NDCG@10)",
        ),
        click.option("--tune-rank", type=INTS, default="10,20,50", help="ranks to try"),
        click.option("--tune-reg", type=FLOATS, default="0.05,0.1,0.15,0.2", help="regParams to try"),
        click.option("--tune-iters", type=INTS, default="15", help="maxIters to try"),
        click.option("--tune-ranking-rank", type=INTS, default="32,50", help="ranking model ranks to try"),
        click.option(
            "--tune-ranking-reg", type=FLOATS, default="0.1,0.3", help="ranking model regParams to try"
        ),
        click.option(
            "--tune-ranking-alpha", type=FLOATS, default="0.5,1.0,2.0", help="ranking model alphas to try"
        ),
        click.option(
            "--folds", type=click.IntRange(min=0), default=0, help="k-fold tuning (0: one validation split)"
        ),
        click.option(
            "--split", type=click.Choice(["random", "time"]), default="random", help="holdout split"
        ),
        click.option("--test-fraction", type=FRACTION, default=0.2, help="holdout fraction"),
        click.option("--seed", type=int, default=42, help="random seed (split and ALS)"),
        click.option("--force", is_flag=True, help="publish even if the quality gate refuses"),
        click.option("--keep", type=POSITIVE, default=5, help="model versions to keep"),
        click.option(
            "--eval-sample-ratings",
            type=click.IntRange(min=0),
            default=EVAL_SAMPLE_RATINGS,
            help="above this many ratings, the holdout's fits, the blend and tuning run on a seeded "
            "user sample of about this many (the served models still learn from all; 0: never sample)",
        ),
        click.option(
            "--candidate",
            is_flag=True,
            help="publish without making it CURRENT: the stream shadow-scores it on live events "
            "until `model promote` or `model reject`",
        ),  # fmt: skip
        click.option("--json", is_flag=True, help="print one JSON object"),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


@click.command("train", help="train both models (ranking + explicit), evaluate, publish a version")
@training_options_decorator
def train(**kwargs) -> int:
    return run_with_args(train_cmd)(**kwargs)


@click.command("retrain", help="train + publish periodically (SIGTERM stops between runs)")
@training_options_decorator
@click.option("--every", type=DURATION, default="10m", help="interval, e.g. 90s, 10m, 1h")
@click.option("--once", is_flag=True, help="one run, then exit")
@click.option("--min-new-events", type=click.IntRange(min=0), default=0,
              help="skip a run unless the event log grew by at least N events")  # fmt: skip
@click.option("--promote-when-live-better", is_flag=True,
              help="with --candidate: promote after --shadow-events live events if its hit rate is at "
              "least CURRENT's (paired, 95 %; batch/promotion.py), reject if worse")  # fmt: skip
@click.option("--shadow-events", type=POSITIVE, default=2000, help="live events to shadow before deciding")
@click.option("--shadow-timeout", type=DURATION, default="1h", help="undecided after this long: reject")
@sink_option("sink DB URL the stream writes live_eval to")
def retrain(**kwargs) -> int:
    return run_with_args(retrain_cmd)(**kwargs)


@click.command("model", help="list, show, roll back, promote or reject model versions")
@click.argument("action", type=click.Choice(["list", "show", "rollback", "promote", "reject"]))
@click.argument("version", required=False)
@click.option("--json", is_flag=True, help="print JSON")
def model(**kwargs) -> int:
    return run_with_args(model_cmd)(**kwargs)


@click.command("evaluate", help="served lists vs popularity and EASE: warm, new users, prequential")
@data_option()
@click.option(
    "--protocols",
    type=WORDS,
    default="warm,strong,new_users,prequential",
    help="comma-separated subset of warm,strong,new_users,prequential",
)
@click.option("--n", type=INTS, default="1,3,5,10,20", help="new users: numbers of first ratings folded in")
@click.option("--user-fraction", type=FRACTION, default=0.2, help="users held out for strong / new users")
@click.option("--test-fraction", type=FRACTION, default=0.2, help="warm: ratings held out")
@click.option("--split-at", type=FRACTION, default=0.8, help="prequential: the live part starts here")
@click.option("--ease-lambda", type=NON_NEGATIVE, default=500.0, help="EASE regularisation")
@click.option("--ease-max-items", type=POSITIVE, default=20_000, help="skip EASE above this many movies")
@click.option("--rank", type=POSITIVE, default=20, help="explicit model: latent factors")
@click.option("--ranking-rank", type=POSITIVE, default=32, help="ranking model: latent factors")
@click.option("--ranking-alpha", type=NON_NEGATIVE, default=1.0, help="ranking model: alpha")
@click.option("--ranking-reg", type=NON_NEGATIVE, default=0.1, help="ranking model: regParam")
@click.option("--ranking-threshold", type=float, default=2.5, help="ranking model: preference threshold")
@click.option("--seed", type=int, default=42, help="random seed (splits, held-out users, ALS)")
@click.option("--chart", type=PATH, default=None, help="write the NDCG@10-vs-n chart (PNG) here")
@click.option("--json", is_flag=True, help="print one JSON object")
def evaluate(**kwargs) -> int:
    return run_with_args(evaluate_cmd)(**kwargs)


@click.command("report", help="OLAP report with Spark SQL (Markdown; CSV + PNG with --out)")
@data_option()
@click.option("--out", type=PATH, default=None, help="also write CSV per query and PNG charts here")
@click.option("--min-count", type=POSITIVE, default=50, help="minimum ratings for 'best movies'")
@click.option("--top", type=POSITIVE, default=10, help="rows in top-N tables")
def report(**kwargs) -> int:
    return run_with_args(report_cmd)(**kwargs)


def training_options(args: argparse.Namespace, inherit_cut: bool = False):
    """TrainOptions of the parsed flags. `inherit_cut` (retrain): without --split-at and --until,
    use the data-folder cut CURRENT was trained on, so the folder's live part, which reaches the
    model through the event log, is not also read from the folder."""
    from streamrec.consistency import trained_on

    from .publish import TrainOptions, default_spec
    from .train import Params, RankingParams, log

    if inherit_cut and args.split_at is None and args.until is None and (current := trained_on(args.data)):
        args.split_at, args.until = current.spec.split_at, current.spec.until
        log(f"using the data cut {current.version} was trained on: {current.cut}")

    spec = default_spec(args.data, args.until, args.split_at, args.event_log, args.event_log_version)
    params = Params(rank=args.rank, reg=args.reg, iters=args.iters, bias=args.bias, seed=args.seed,
                    min_support=args.min_support)  # fmt: skip
    ranking = RankingParams(
        rank=args.ranking_rank,
        reg=args.ranking_reg,
        alpha=args.ranking_alpha,
        threshold=args.ranking_threshold,
        iters=args.ranking_iters,
        seed=args.seed,
    )
    grid = {"rank": args.tune_rank, "reg": args.tune_reg, "iters": args.tune_iters} if args.tune else None
    rgrid = (
        {"rank": args.tune_ranking_rank, "reg": args.tune_ranking_reg, "alpha": args.tune_ranking_alpha}
        if args.tune
        else None
    )
    return TrainOptions(spec, params, ranking, rgrid, args.split, args.test_fraction, grid, args.folds,
                        args.force, args.keep, candidate=args.candidate,
                        eval_sample_ratings=args.eval_sample_ratings)  # fmt: skip


def summary_line(res: dict) -> str:
    m, p = res["metrics"], res["params"]
    r = p["ranking"]
    return (
        f"published {res['version']}{' as the candidate' if res.get('candidate') else ''}: "
        f"lists P@10 {m['precision_at_10']:.4f}, NDCG@10 {m['ndcg_at_10']:.4f} "
        f"(popularity {m['popularity']['precision_at_10']:.4f}, {m['popularity']['ndcg_at_10']:.4f}; "
        f"ranking model rank {r['rank']}, alpha {r['alpha']}); ratings RMSE {m['rmse']:.4f}, "
        f"MAE {m['mae']:.4f} "
        f"(rank {p['rank']}, reg {p['reg']}, {p['iters']} iters, bias {'on' if p['bias'] else 'off'}; "
        f"{res['counts']['ratings']:,} ratings, {m['cold_start_dropped']} cold-start holdout rows "
        f"dropped) in {res['seconds']}s"
    )


def train_cmd(args: argparse.Namespace) -> int:
    from streamrec.spark import get_spark

    from .publish import run_training

    opts = training_options(args)
    res = run_training(get_spark("streamrec-train"), opts)
    print(json.dumps(res, default=str) if args.json else summary_line(res))
    return 0


def evaluate_cmd(args: argparse.Namespace) -> int:
    from streamrec.content import load_tags
    from streamrec.movielens import load_movies, load_ratings
    from streamrec.spark import get_spark

    from .evaluate import EvalOptions, chart, run_evaluation
    from .report_eval import markdown_tables, summary
    from .train import Params, RankingParams

    known = {"warm", "strong", "new_users", "prequential"}
    if not args.protocols or set(args.protocols) - known:
        raise StreamrecError(
            f"--protocols must be a subset of {','.join(sorted(known))}, got {args.protocols}"
        )
    if not args.n or min(args.n) < 1:
        raise StreamrecError(f"--n must be positive integers, got {args.n}")
    ratings, _ = load_ratings(args.data)
    if ratings.empty:
        raise StreamrecError(f"{args.data}: no ratings to evaluate")
    opts = EvalOptions(
        seed=args.seed, test_fraction=args.test_fraction, user_fraction=args.user_fraction, ns=tuple(args.n),
        split_at=args.split_at, ease_lambda=args.ease_lambda, ease_max_items=args.ease_max_items,
        params=Params(rank=args.rank, seed=args.seed),
        ranking=RankingParams(rank=args.ranking_rank, reg=args.ranking_reg, alpha=args.ranking_alpha,
                              threshold=args.ranking_threshold, seed=args.seed),
        protocols=tuple(args.protocols), movies=load_movies(args.data), tags=load_tags(args.data),
    )  # fmt: skip
    res = run_evaluation(get_spark("streamrec-evaluate"), ratings, opts)
    if args.chart and "new_users" in res:
        res["chart"] = str(chart(res, args.chart))
    print(json.dumps(res, default=str) if args.json else markdown_tables(res))
    if not args.json:
        print(summary(res))
    return 0


def retrain_cmd(args: argparse.Namespace) -> int:
    from .retrain import retrain_loop

    return retrain_loop(args, lambda a: training_options(a, inherit_cut=True), summary_line)


def model_cmd(args: argparse.Namespace) -> int:
    from streamrec.model_store import ModelStore

    store = ModelStore()
    current, candidate = store.current_version(), store.candidate_version()
    if args.action == "list":
        rows = []
        for v in store.versions():
            problem = store.check(v)
            meta = None if problem else store.metadata(v)
            rows.append({"version": v, "current": v == current, "candidate": v == candidate,
                         "problem": problem,
                         "created_at": meta and meta.created_at, "rmse": meta and meta.metric("rmse"),
                         "ndcg_at_10": meta and meta.metric("ndcg_at_10"),
                         "ratings": meta and meta.counts.get("ratings")})  # fmt: skip
        if args.json:
            print(json.dumps(rows))
        elif not rows:
            print(f"no model versions in {store.root}")
        for r in [] if args.json else rows:
            mark = "*" if r["current"] else "c" if r["candidate"] else " "
            if r["problem"]:
                print(f"{mark} {r['version']}  UNUSABLE: {r['problem']}")
            else:
                print(f"{mark} {r['version']}  {r['created_at']}  lists NDCG@10 {r['ndcg_at_10']:.4f}  "
                      f"RMSE {r['rmse']:.4f}  {r['ratings']:,} ratings")  # fmt: skip
        return 0
    if args.action == "show":
        version = args.version or current
        if version is None:
            raise StreamrecError(f"no model published yet in {store.root}: run `streamrec train`")
        if not (store.root / version).is_dir():
            raise StreamrecError(f"model {version} does not exist in {store.root}")
        meta = store.metadata(version)
        print(json.dumps(meta.to_dict(), indent=None if args.json else 2))
        return 0
    if args.action == "reject":
        dropped = store.clear_candidate()
        print(f"candidate {dropped} rejected: the stream stops shadow-scoring it" if dropped
              else "no candidate to reject")  # fmt: skip
        return 0
    if not args.version:
        raise StreamrecError(f"{args.action} needs a VERSION (see `streamrec model list`)")
    if args.action == "promote":
        store.promote(args.version)
        print(f"CURRENT is now {args.version} (was {current}); the stream hot-swaps to it")
        return 0
    store.rollback(args.version)
    print(f"CURRENT is now {args.version} (was {current})")
    return 0


def report_cmd(args: argparse.Namespace) -> int:
    from .report import run_report

    return run_report(args)

"""Batch subcommands: train, retrain, model, evaluate, report."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from streamrec.errors import StreamrecError
from streamrec.history import parse_time
from streamrec.settings import BUNDLED_DATA, option, parse_duration


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x]


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def _words(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def add_training_options(p: argparse.ArgumentParser) -> None:
    option(p, "--data", type=Path, default=BUNDLED_DATA, help="MovieLens folder (any layout)")
    option(p, "--until", type=parse_time, default=None, help="train only on events before this time")
    option(p, "--split-at", type=float, default=None,
           help="train only on the oldest F of events (the base model for a replay)")  # fmt: skip
    option(p, "--event-log", action=argparse.BooleanOptionalAction, default=True,
           help="include the stream's event log when it exists")  # fmt: skip
    option(p, "--rank", type=int, default=20, help="latent factors")
    option(p, "--reg", type=float, default=0.15, help="ALS regParam (lambda)")
    option(p, "--iters", type=int, default=15, help="ALS maxIter")
    option(p, "--bias", action=argparse.BooleanOptionalAction, default=True,
           help="learn a baseline (mean + user/item biases) and ALS on its residuals")  # fmt: skip
    option(p, "--min-support", type=int, default=10,
           help="recommend only movies with at least N training ratings (1: every movie)")  # fmt: skip
    option(p, "--ranking-rank", type=int, default=32, help="ranking model (implicit ALS): latent factors")
    option(p, "--ranking-reg", type=float, default=0.1, help="ranking model: regParam (lambda)")
    option(p, "--ranking-alpha", type=float, default=1.0, help="ranking model: confidence slope alpha")
    option(p, "--ranking-threshold", type=float, default=2.5,
           help="ranking model: preference = rating - T; a rating below T is a confident no")  # fmt: skip
    option(p, "--ranking-iters", type=int, default=10, help="ranking model: maxIter")
    option(p, "--tune", action="store_true",
           help="grid-search both models first (explicit by RMSE, ranking by NDCG@10)")  # fmt: skip
    option(p, "--tune-rank", type=_ints, default=[10, 20, 50], help="ranks to try")
    option(p, "--tune-reg", type=_floats, default=[0.05, 0.1, 0.15, 0.2], help="regParams to try")
    option(p, "--tune-iters", type=_ints, default=[15], help="maxIters to try")
    option(p, "--tune-ranking-rank", type=_ints, default=[32, 50], help="ranking model ranks to try")
    option(p, "--tune-ranking-reg", type=_floats, default=[0.1, 0.3], help="ranking model regParams to try")
    option(p, "--tune-ranking-alpha", type=_floats, default=[0.5, 1.0, 2.0],
           help="ranking model alphas to try")  # fmt: skip
    option(p, "--folds", type=int, default=0, help="k-fold tuning (0: one validation split)")
    option(p, "--split", choices=["random", "time"], default="random", help="holdout split")
    option(p, "--test-fraction", type=float, default=0.2, help="holdout fraction")
    option(p, "--seed", type=int, default=42, help="random seed (split and ALS)")
    option(p, "--force", action="store_true", help="publish even if the quality gate refuses")
    option(p, "--keep", type=int, default=5, help="model versions to keep")
    option(p, "--json", action="store_true", help="print one JSON object")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train both models (ranking + explicit), evaluate, publish a version")
    add_training_options(p)
    p.set_defaults(func=train_cmd)

    p = sub.add_parser("retrain", help="train + publish periodically (SIGTERM stops between runs)")
    add_training_options(p)
    option(p, "--every", type=parse_duration, default=600.0, help="interval, e.g. 90s, 10m, 1h")
    option(p, "--once", action="store_true", help="one run, then exit")
    option(p, "--min-new-events", type=int, default=0,
           help="skip a run unless the event log grew by at least N events")  # fmt: skip
    p.set_defaults(func=retrain_cmd)

    p = sub.add_parser("model", help="list, show or roll back model versions")
    p.add_argument(
        "action", choices=["list", "show", "rollback"], help="list versions, show one, or make one CURRENT"
    )
    p.add_argument("version", nargs="?", help="version for show / rollback (show: default CURRENT)")
    option(p, "--json", action="store_true", help="print JSON")
    p.set_defaults(func=model_cmd)

    p = sub.add_parser("evaluate", help="served lists vs popularity and EASE: warm, new users, prequential")
    option(p, "--data", type=Path, default=BUNDLED_DATA, help="MovieLens folder (any layout)")
    option(p, "--protocols", type=_words, default=["warm", "strong", "new_users", "prequential"],
           help="comma-separated subset of warm,strong,new_users,prequential")  # fmt: skip
    option(p, "--n", type=_ints, default=[1, 3, 5, 10, 20],
           help="new users: numbers of first ratings folded in")  # fmt: skip
    option(p, "--user-fraction", type=float, default=0.2, help="users held out for strong / new users")
    option(p, "--test-fraction", type=float, default=0.2, help="warm: ratings held out")
    option(p, "--split-at", type=float, default=0.8, help="prequential: the live part starts here")
    option(p, "--ease-lambda", type=float, default=500.0, help="EASE regularisation")
    option(p, "--ease-max-items", type=int, default=20_000, help="skip EASE above this many movies")
    option(p, "--rank", type=int, default=20, help="explicit model: latent factors")
    option(p, "--ranking-rank", type=int, default=32, help="ranking model: latent factors")
    option(p, "--ranking-alpha", type=float, default=1.0, help="ranking model: alpha")
    option(p, "--ranking-reg", type=float, default=0.1, help="ranking model: regParam")
    option(p, "--ranking-threshold", type=float, default=2.5, help="ranking model: preference threshold")
    option(p, "--seed", type=int, default=42, help="random seed (splits, held-out users, ALS)")
    option(p, "--chart", type=Path, default=None, help="write the NDCG@10-vs-n chart (PNG) here")
    option(p, "--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=evaluate_cmd)

    p = sub.add_parser("report", help="OLAP report with Spark SQL (Markdown; CSV + PNG with --out)")
    option(p, "--data", type=Path, default=BUNDLED_DATA, help="MovieLens folder (any layout)")
    option(p, "--out", type=Path, default=None, help="also write CSV per query and PNG charts here")
    option(p, "--min-count", type=int, default=50, help="minimum ratings for 'best movies'")
    option(p, "--top", type=int, default=10, help="rows in top-N tables")
    p.set_defaults(func=report_cmd)


def training_options(args: argparse.Namespace):
    from .publish import TrainOptions, default_spec
    from .train import Params, RankingParams

    for name in ("rank", "iters", "keep", "min_support", "ranking_rank", "ranking_iters"):
        if getattr(args, name) < 1:
            raise StreamrecError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    for name in ("reg", "ranking_reg", "ranking_alpha"):
        if getattr(args, name) < 0:
            raise StreamrecError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")
    if args.split_at is not None and not 0 < args.split_at <= 1:
        raise StreamrecError(f"--split-at must be in (0, 1], got {args.split_at}")
    if not 0 < args.test_fraction < 1:
        raise StreamrecError(f"--test-fraction must be between 0 and 1, got {args.test_fraction}")
    spec = default_spec(args.data, args.until, args.split_at, args.event_log)
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
                        args.force, args.keep)  # fmt: skip


def summary_line(res: dict) -> str:
    m, p = res["metrics"], res["params"]
    r = p["ranking"]
    return (
        f"published {res['version']}: lists P@10 {m['precision_at_10']:.4f}, NDCG@10 {m['ndcg_at_10']:.4f} "
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
    from streamrec.movielens import load_ratings
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
    for name in ("user_fraction", "test_fraction", "split_at"):
        if not 0 < getattr(args, name) < 1:
            raise StreamrecError(
                f"--{name.replace('_', '-')} must be between 0 and 1, got {getattr(args, name)}"
            )
    ratings, _ = load_ratings(args.data)
    if ratings.empty:
        raise StreamrecError(f"{args.data}: no ratings to evaluate")
    opts = EvalOptions(
        seed=args.seed, test_fraction=args.test_fraction, user_fraction=args.user_fraction, ns=tuple(args.n),
        split_at=args.split_at, ease_lambda=args.ease_lambda, ease_max_items=args.ease_max_items,
        params=Params(rank=args.rank, seed=args.seed),
        ranking=RankingParams(rank=args.ranking_rank, reg=args.ranking_reg, alpha=args.ranking_alpha,
                              threshold=args.ranking_threshold, seed=args.seed),
        protocols=tuple(args.protocols),
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

    return retrain_loop(args, training_options, summary_line)


def model_cmd(args: argparse.Namespace) -> int:
    from streamrec.model_store import ModelStore

    store = ModelStore()
    current = store.current_version()
    if args.action == "list":
        rows = []
        for v in store.versions():
            problem = store.check(v)
            meta = {} if problem else store.metadata(v)
            rows.append({"version": v, "current": v == current, "problem": problem,
                         "created_at": meta.get("created_at"),
                         "rmse": meta.get("metrics", {}).get("rmse"),
                         "ndcg_at_10": meta.get("metrics", {}).get("ndcg_at_10"),
                         "ratings": meta.get("counts", {}).get("ratings")})  # fmt: skip
        if args.json:
            print(json.dumps(rows))
        elif not rows:
            print(f"no model versions in {store.root}")
        for r in [] if args.json else rows:
            mark = "*" if r["current"] else " "
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
        print(json.dumps(meta, indent=None if args.json else 2))
        return 0
    if not args.version:
        raise StreamrecError("rollback needs a VERSION (see `streamrec model list`)")
    store.rollback(args.version)
    print(f"CURRENT is now {args.version} (was {current})")
    return 0


def report_cmd(args: argparse.Namespace) -> int:
    from .report import run_report

    return run_report(args)

"""One training run end to end: history -> split -> (tune) -> fit -> evaluate -> gate -> publish.

The holdout measures the parameters; the published model is then refit on all of the history
with those parameters, so serving uses every rating while the gate compares holdout scores.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from pathlib import Path

from streamrec.errors import QualityGateFailed
from streamrec.history import HistorySpec, latest_per_pair, load_history
from streamrec.model_store import ModelStore, write_npz

from .recommend import popularity
from .train import Params, evaluate, fit, log, params_dict, split, tune

GATE_TOLERANCE = 0.02  # refuse a model whose holdout RMSE is > 2% worse than CURRENT's
POPULAR_MIN_COUNT, POPULAR_SIZE = 20, 200  # cold-start list stored with each model


@dataclass
class TrainOptions:
    spec: HistorySpec
    params: Params = field(default_factory=Params)
    split: str = "random"
    test_fraction: float = 0.2
    tune_grid: dict | None = None  # {"rank": [...], "reg": [...], "iters": [...]}
    folds: int = 0
    force: bool = False
    keep: int = 5
    refit_full: bool = True


def run_training(spark, opts: TrainOptions, store: ModelStore | None = None) -> dict:
    """Train, evaluate and publish through the quality gate. Returns the run's summary."""
    store = store or ModelStore()
    t0 = time.monotonic()
    log(f"loading history from {opts.spec.data}" + (" + event log" if opts.spec.event_log else ""))
    raw = load_history(opts.spec)
    ratings = latest_per_pair(raw)
    counts = {
        "rating_events": int(len(raw)),
        "ratings": int(len(ratings)),
        "users": int(ratings["user_id"].nunique()),
        "movies": int(ratings["movie_id"].nunique()),
    }
    if len(ratings) == 0:
        raise QualityGateFailed("no ratings in the selected history: nothing to train on")
    newest = int(raw["timestamp"].max())
    train, test = split(ratings, opts.split, opts.test_fraction, opts.params.seed)
    params, tuning = opts.params, None
    if opts.tune_grid:
        how = f"{opts.folds} folds" if opts.folds >= 2 else "a validation split"
        log(f"tuning over {_grid_size(opts.tune_grid)} candidates with {how}")
        params, tuning = tune(spark, train, opts.tune_grid, params, opts.folds, params.seed)
        log(f"best: rank={params.rank} reg={params.reg} iters={params.iters}")
    log(f"fitting ALS rank={params.rank} reg={params.reg} iters={params.iters} "
        f"bias={'on' if params.bias else 'off'} on {len(train):,} ratings")  # fmt: skip
    model = fit(spark, train, params)
    metrics = evaluate(model, train, test)
    log(f"holdout ({opts.split} {opts.test_fraction:.0%}): RMSE {metrics['rmse']:.4f}, "
        f"MAE {metrics['mae']:.4f}, NDCG@10 {metrics['ndcg_at_10']:.4f}")  # fmt: skip

    current = store.current_version()
    baseline_rmse = _current_rmse(store, current)
    gate = {"current_version": current, "current_rmse": baseline_rmse, "tolerance": GATE_TOLERANCE}
    if baseline_rmse is not None and metrics["rmse"] > baseline_rmse * (1 + GATE_TOLERANCE):
        gate["passed"] = False
        if not opts.force:
            raise QualityGateFailed(
                f"not published: holdout RMSE {metrics['rmse']:.4f} is more than "
                f"{GATE_TOLERANCE:.0%} worse than {current}'s {baseline_rmse:.4f} (--force overrides)"
            )
    else:
        gate["passed"] = True

    if opts.refit_full:
        log(f"refitting on all {len(ratings):,} ratings for serving")
        model = fit(spark, ratings, params)
    staged = store.staging_dir()
    write_npz(staged / "factors.npz", model.items, model.user_ids, model.user_factors, model.user_bias)
    model.als_model.itemFactors.write.parquet(str(staged / "item_factors"))
    model.als_model.userFactors.write.parquet(str(staged / "user_factors"))
    pdict = params_dict(params)
    if pdict["baseline"]:
        pdict["baseline"]["mean"] = model.items.mean
    pop = popularity(ratings, None, POPULAR_MIN_COUNT).head(POPULAR_SIZE)
    meta = {
        "popular": {
            "min_count": POPULAR_MIN_COUNT,
            "movie_ids": pop["movie_id"].tolist(),
            "scores": pop["score"].round(4).tolist(),
        },  # fmt: skip
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "params": pdict,
        "metrics": metrics,
        "evaluation": {"split": opts.split, "test_fraction": opts.test_fraction, "seed": params.seed},
        "counts": counts,
        "history": opts.spec.to_dict(),
        "newest_event_ts": newest,
        "trained_on": "all history" if opts.refit_full else "training split",
        "gate": gate,
        "tuning": tuning,
        "seconds": round(time.monotonic() - t0, 1),
    }
    version = store.publish(staged, meta)
    pruned = store.prune(opts.keep)
    return {"version": version, "pruned": pruned, **meta}


def _current_rmse(store: ModelStore, current: str | None) -> float | None:
    if current is None or store.check(current):
        return None
    return store.metadata(current).get("metrics", {}).get("rmse")


def _grid_size(grid: dict) -> int:
    n = 1
    for values in grid.values():
        n *= len(values)
    return n


def default_spec(data: Path, until=None, split_at=None, with_event_log: bool = True) -> HistorySpec:
    """History of a training run: the data folder window, plus the event log when it exists.

    The metadata's newest_event_ts records how far the included events went.
    """
    from streamrec.event_log import committed_files, event_log_dir

    log_dir = event_log_dir()
    use_log = with_event_log and bool(committed_files(log_dir))
    return HistorySpec(str(Path(data).resolve()), until, split_at, str(log_dir) if use_log else None)

"""The cold-start blend's two rules on one run: the fitted curve w(n) = a/(n+b) (`batch.blend_fit`,
what `train` and `evaluate` use) against the old per-bucket best capped by smaller n (`monotone`).

Both rules read the same validation table of the same fit (`streamrec evaluate`'s held-out-users
recipe, same seeds), so the only difference between the two rows of figures is the rule.

    python -m bench.blend_rules --data data/ml-latest-small --out /tmp/small.json
    python -m bench.blend_rules --synthetic-100k /tmp/syn100k --out /tmp/syn.json

--synthetic-100k writes `bench.synthetic.generate` ratings in the ml-100k layout (u.data, tab
separated, whole stars 1-5; u.item, pipe separated with 19 genre flags) and evaluates that folder
through the ordinary loader.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from batch.blend_fit import per_bucket_rule
from batch.evaluate import EvalOptions, held_out, new_users, strong
from batch.train import BLEND_N, BLEND_WEIGHTS, Params, RankingParams
from streamrec.history import latest_per_pair
from streamrec.movielens import GENRES_100K, load_ratings
from streamrec.scorer import Blend

SERVED, POP, EASE = "ranking model (served)", "popularity", "EASE"


def write_100k(folder: Path, n_ratings: int = 100_000, n_users: int = 943, n_items: int = 1682,
               seed: int = 7) -> Path:  # fmt: skip
    """Synthetic ratings (bench.synthetic) written as an ml-100k folder."""
    from bench.synthetic import generate

    df = generate(n_ratings, n_users, n_items, seed=seed)
    df["rating"] = np.clip(np.round(df["rating"]), 1, 5).astype(int)  # ml-100k has whole stars
    folder.mkdir(parents=True, exist_ok=True)
    df[["user_id", "movie_id", "rating", "timestamp"]].to_csv(folder / "u.data", sep="\t", header=False,
                                                               index=False)  # fmt: skip
    rng = np.random.default_rng(seed)
    with open(folder / "u.item", "w", encoding="latin-1") as fh:
        for m in range(1, n_items + 1):
            flags = ["0"] * len(GENRES_100K)
            flags[1 + rng.integers(len(GENRES_100K) - 1)] = "1"
            fh.write(
                f"{m}|Movie {m} ({1950 + m % 50})|01-Jan-{1950 + m % 50}||http://x|" + "|".join(flags) + "\n"
            )
    return folder


def run(data: Path, seed: int = 42) -> dict:
    from streamrec.spark import get_spark

    ratings, _ = load_ratings(data)
    ratings = latest_per_pair(ratings)
    opts = EvalOptions(seed=seed, params=Params(seed=seed), ranking=RankingParams(rank=32, seed=seed),
                       protocols=("strong", "new_users"))  # fmt: skip
    models, heldout = held_out(get_spark("blend-rules"), ratings, opts)
    table = models.blend_meta["validation"]
    old = Blend(BLEND_N, per_bucket_rule(table, BLEND_WEIGHTS, BLEND_N))
    rules = {"new: a/(n+b) fit": models, "old: per-bucket best, capped": replace(
        models, scorer=replace(models.scorer, blend=old))}  # fmt: skip
    out = {"data": str(data), "ratings": len(ratings), "users": int(ratings["user_id"].nunique()),
           "validation": table, "fit": models.blend_meta["fit"],
           "old_weights": dict(zip(BLEND_N, old.weights, strict=True)), "rules": {}}  # fmt: skip
    for name, m in rules.items():
        out["rules"][name] = {"strong": strong(m, heldout, opts), "new_users": new_users(m, heldout, opts)}
    return out


def markdown(res: dict) -> str:
    k = "ndcg_at_10"
    ns = list(next(iter(res["rules"].values()))["new_users"]["by_n"])
    lines = ["| rule | " + " | ".join(f"n={n}" for n in ns) + " | strong |",
             "|---|" + "---:|" * (len(ns) + 1)]  # fmt: skip
    first = next(iter(res["rules"].values()))
    for name, r in res["rules"].items():
        cells = [f"{r['new_users']['by_n'][n][SERVED][k]:.4f}" for n in ns]
        lines.append(
            f"| served, {name} | " + " | ".join(cells) + f" | {r['strong']['methods'][SERVED][k]:.4f} |"
        )
    for method in (POP, EASE):
        if method in first["strong"]["methods"]:
            cells = [f"{first['new_users']['by_n'][n][method][k]:.4f}" for n in ns]
            lines.append(
                f"| {method} | " + " | ".join(cells) + f" | {first['strong']['methods'][method][k]:.4f} |"
            )
    lines.append("")
    lines.append(
        "| n | users | " + " | ".join(f"{w:g}" for w in BLEND_WEIGHTS) + " | own best | old rule | fit |"
    )
    lines.append("|---:|---:|" + "---:|" * (len(BLEND_WEIGHTS) + 3))
    for row in res["validation"]:
        cells = " | ".join(f"{row[str(w)]:.4f}" for w in BLEND_WEIGHTS)
        lines.append(f"| {row['n']} | {row['users']} | {cells} | {row['chosen']:g} | "
                     f"{res['old_weights'][row['n']]:g} | {row['fitted']:.3g} |")  # fmt: skip
    f = res["fit"]
    lines.append(
        f"\nfit: w(n) = {f['a']:.4g}/(n+{f['b']:.4g}), "
        f"mean validation NDCG@10 {f['mean_validation_ndcg']:.4f}"
    )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path)
    ap.add_argument("--synthetic-100k", type=Path, help="write a synthetic ml-100k folder here and use it")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    data = write_100k(args.synthetic_100k) if args.synthetic_100k else args.data
    if data is None:
        ap.error("--data or --synthetic-100k")
    res = run(data, args.seed)
    if args.out:
        args.out.write_text(json.dumps(res, default=lambda o: o.item() if hasattr(o, "item") else str(o)))
    print(markdown(res))


if __name__ == "__main__":
    pd.set_option("display.width", 200)
    main()

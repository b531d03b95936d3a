"""The cold-start blend's weight w(n), fitted as one smooth curve to every bucket's validation table.

Lists are ranked by x·y_i + w(n)·pop_i, n = the user's known ratings. `calibrate_blend` (train.py)
measures, per bucket n, the validation users' NDCG@k at each candidate weight. Choosing each
bucket's best weight on its own lets sampling noise pick the weight, and the old repair (cap each
weight by those of smaller n, `per_bucket_rule`) let one noisy small-n bucket drag every larger n
down with it (measured: n = 1's 0.2 overrode 1.0, 1.0 and 2.0 at n = 2, 5, 8).

Here w(n) = a / (n + b), a >= 0, b >= 0: smooth and non-increasing in n by construction (more of
a user's own ratings never calls for more of the prior). (a, b) maximises the mean over buckets,
weighted by each bucket's validation users, of the bucket's NDCG at w(n) read off its table:
the mean NDCG over all validation (user, n) pairs. Every bucket informs one curve, so a bucket
whose row is noise moves the others by a fraction of its share instead of setting them.

Pure NumPy: no Spark, no model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

FORM = "a/(n+b)"
# The search grid. a spans "no prior" to "popularity up to n = 200+" (w(200) = 1e3 needs a ~ 2e5),
# ten steps a decade (each a factor 1.26, finer than the candidate weights' factor 2-2.5).
# b = 0 is the steepest fall (w halves from n = 1 to 2); b = 1e4 is flat up to n ~ 200.
A_GRID = np.concatenate([[0.0], np.logspace(-3, 7, 101)])
B_GRID = np.concatenate([[0.0], np.logspace(-1, 4, 51)])


def coordinate(w: np.ndarray | float, w1: float) -> np.ndarray:
    """Where a weight sits on the axis the tables are interpolated on: log w for w >= w1 (the
    smallest positive candidate), continued by its tangent below w1 (so 0 sits at log w1 - 1).

    Why log: the prior's effect depends on w relative to the spread of the personal scores x·y,
    which differs by data set and by n, so a change of w acts multiplicatively; the candidates are
    themselves near-geometric (x2 to x2.5). Near 0 the prior is a small perturbation of the
    personal ranking and NDCG moves about linearly in w, hence the linear (tangent) piece, which
    also keeps the axis smooth at w1. Reading NDCG off the tables (rather than re-ranking every
    validation user at every (a, b) of the grid, ~5,000 x 11 rankings each) costs nothing and is
    exact at the candidates; between two candidates it is a straight line on this axis.
    """
    w = np.asarray(w, dtype=np.float64)
    return np.where(w >= w1, np.log(np.maximum(w, w1)), np.log(w1) + (w - w1) / w1)


def interpolate(weights: Sequence[float], values: np.ndarray, w: np.ndarray) -> np.ndarray:
    """NDCG at weights `w` from one table row (`values` at the candidate `weights`), piecewise
    linear on `coordinate`; beyond the largest candidate (popularity itself) it stays flat."""
    cand = np.asarray(weights, dtype=np.float64)
    order = np.argsort(cand)
    cand, values = cand[order], np.asarray(values, dtype=np.float64)[order]
    w1 = float(cand[cand > 0].min())
    return np.interp(coordinate(w, w1), coordinate(cand, w1), values)


@dataclass(frozen=True)
class Fit:
    """w(n) = a / (n + b), and the weighted mean validation NDCG it reaches on the tables."""

    a: float
    b: float
    mean_ndcg: float | None = None

    def weight(self, n: np.ndarray | Sequence[int] | int) -> np.ndarray:
        return self.a / (np.asarray(n, dtype=np.float64) + self.b)

    def table(self, ns: Sequence[int], cap: float) -> tuple[float, ...]:
        """w at each bucket start n (a user in a bucket takes its start's weight), at most `cap`
        (the popularity candidate: a larger weight ranks the same)."""
        return tuple(float(w) for w in np.minimum(self.weight(ns), cap))

    def to_dict(self) -> dict:
        return {"form": FORM, "a": self.a, "b": self.b, "mean_validation_ndcg": self.mean_ndcg}


def rows_of(table: list[dict], weights: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n, users, NDCG matrix buckets x candidates) from `calibrate_blend`'s table rows."""
    n = np.array([r["n"] for r in table], dtype=np.float64)
    users = np.array([r["users"] for r in table], dtype=np.float64)
    ndcg = np.array([[r[str(w)] for w in weights] for r in table], dtype=np.float64).reshape(len(table), -1)
    return n, users, ndcg


def fit_blend(table: list[dict], weights: Sequence[float]) -> Fit:
    """The (a, b) of the grid with the highest users-weighted mean NDCG over the table's buckets.

    Ties (flat stretches: a prior already at popularity everywhere, or rows that do not move)
    go to the smallest w(1), then the smallest a: no more prior than the tables ask for. With no
    table (no validation user had more than one rating) the blend is off: w = 0.
    """
    if not table:
        return Fit(0.0, 0.0, None)
    n, users, ndcg = rows_of(table, weights)
    share = users / users.sum() if users.sum() > 0 else np.full(len(n), 1 / len(n))
    a, b = np.meshgrid(A_GRID, B_GRID, indexing="ij")
    a, b = a.ravel(), b.ravel()
    w = a[:, None] / (n[None, :] + b[:, None])  # (grid, buckets)
    score = np.zeros(len(a))
    for j in range(len(n)):
        score += share[j] * interpolate(weights, ndcg[j], w[:, j])
    best = np.flatnonzero(score >= score.max() - 1e-12)
    pick = best[np.lexsort((a[best], w[best, 0] if len(n) else a[best]))[0]]
    return Fit(float(a[pick]), float(b[pick]), float(score[pick]))


def per_bucket_rule(table: list[dict], weights: Sequence[float], ns: Sequence[int]) -> tuple[float, ...]:
    """The rule `fit_blend` replaced, kept to measure against: each bucket's best candidate, then
    `monotone` (a bucket without a row takes the previous bucket's weight, the first 0)."""
    chosen = {r["n"]: max(weights, key=lambda w, r=r: r[str(w)]) for r in table}
    out, last = [], 0.0
    for n in ns:
        last = chosen.get(n, last)
        out.append(last)
    return monotone(out)


def monotone(weights: Sequence[float]) -> tuple[float, ...]:
    """Each bucket's weight capped by every smaller n's: a non-increasing prior weight.

    It answered one retrain's per-bucket 0.1 at n=1 but 5.0 at n>=200 (a few heavy validation users:
    near-popularity lists for heavy users, which the gate refused), but it lets the smallest noisy
    choice set every larger n: on an unseen layout n = 1's 0.2 replaced 1.0, 1.0, 2.0 at n = 2, 5,
    8 and the lists lost to popularity at n = 5. `fit_blend` answers both (a users-weighted fit
    gives a 12-user bucket little say, and a/(n+b) cannot rise with n)."""
    return tuple(float(w) for w in np.minimum.accumulate(np.asarray(weights, dtype=np.float64)))

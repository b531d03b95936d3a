"""The ranking model's maths: implicit-feedback ALS fold-in, exactly as Spark ML solves it.

Spark ML `ALS(implicitPrefs=True)` (Hu, Koren, Volinsky 2008) with its input value p_ui per
(user, item). Reading Spark's `ALS.computeFactors` (4.x, `NormalEquation.add(a, b, c)` adds
c * a a' to A and b * a to the right-hand side): for a user with item factors Y fixed,

    c1_i = alpha * |p_i|                     (confidence - 1, never negative)
    A    = Y'Y + sum_i c1_i y_i y_i' + lambda * n_+ * I
    b    = sum_{i: p_i > 0} (1 + c1_i) y_i
    x    = A^-1 b

where Y'Y runs over every item factor and n_+ counts the entries with p_i > 0 ("ALS-WR"
scaling). An entry with p_i < 0 is a confident "no" (preference 0 with confidence 1 + c1_i).
Spark updates user factors last in each iteration, so folding in a trained user's own inputs
reproduces their stored vector (tested for every user).

What we feed Spark (`preference`): p = rating - threshold, threshold 2.5 by default. A 5 is a
"yes" with confidence 1 + 2.5 alpha, a 3 a weak "yes", a 1 a confident "no", a 2.5 says nothing.
Measured against threshold 0 (every rating a "yes") and others on the bundled data
(docs/benchmarks.md); the threshold is stored with the model so the stream folds in exactly as
training did.

Pure NumPy: the stream, `recommend`, `evaluate` and the tests share it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np


@dataclass(frozen=True)
class ImplicitFactors:
    """Item factors of an implicit ALS model (rows aligned with the model's item ids)."""

    factors: np.ndarray  # float32 (n_items, rank)
    reg: float  # Spark's regParam (lambda)
    alpha: float  # Spark's alpha
    threshold: float = 0.0  # preference = rating - threshold; < 0 is a confident "no"
    # Y'Y of the trained items when `factors` also holds items streamed in since (item fold-in):
    # those stay out of the user objective, so a user folds in exactly as the version trained.
    fixed_gram: np.ndarray | None = None

    @property
    def rank(self) -> int:
        return self.factors.shape[1]

    @cached_property
    def factors64(self) -> np.ndarray:
        """The factors in float64 (as Spark's solver sees them), converted once per version."""
        return self.factors.astype(np.float64)

    @cached_property
    def gram(self) -> np.ndarray:
        """Y'Y over every trained item, in float64: computed once per model version."""
        if self.fixed_gram is not None:
            return self.fixed_gram
        return self.factors64.T @ self.factors64

    def preference(self, ratings: np.ndarray) -> np.ndarray:
        return np.asarray(ratings, dtype=np.float64) - self.threshold


def implicit_fold_in(f: ImplicitFactors, pos: np.ndarray, ratings: np.ndarray) -> tuple[np.ndarray, int]:
    """Reference: one user's vector from their rated rows `pos`; (vector, n positive inputs).

    A user with no positive input gets Spark's answer for a zero right-hand side: x = 0.
    """
    a, y, w, n = implicit_system(f, pos, ratings)
    if n == 0:
        return np.zeros(f.rank, np.float32), 0
    return np.linalg.solve(a, y.T @ w).astype(np.float32), n


def implicit_system(
    f: ImplicitFactors, pos: np.ndarray, ratings: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """One user's normal equations A x = Y' w of the fold-in, from their rated rows `pos`:
    (A, Y their rows' factors, w the weight 1 + c of each positive input and 0 of the others,
    n positive inputs). Spark's implicit ALS (computeFactors) on one user: A = Y0'Y0 + Y'C Y +
    reg n I, C = alpha |p|, p the preference; `streamrec.explain` splits the same solve by input."""
    p = f.preference(ratings)
    n = int((p > 0).sum())
    c1 = f.alpha * np.abs(p)
    y = f.factors64[np.asarray(pos)]
    a = f.gram + (y.T * c1) @ y + f.reg * n * np.eye(f.rank)
    return a, y, np.where(p > 0, 1.0 + c1, 0.0), n


def implicit_fold_in_many(
    f: ImplicitFactors, users: np.ndarray, pos: np.ndarray, ratings: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vectorised fold-in of many users: (sorted unique users, vectors, n positive inputs).

    The same normal equations as `implicit_fold_in`, built with one BLAS product per user and
    solved in one batched call.
    """
    users = np.asarray(users, dtype=np.int64)
    order = np.argsort(users, kind="stable")
    users, pos = users[order], np.asarray(pos)[order]
    p = f.preference(np.asarray(ratings)[order])
    out_users = np.unique(users)
    k = f.rank
    vectors = np.zeros((len(out_users), k), np.float32)
    n_pos = np.zeros(len(out_users), np.int64)
    if len(users) == 0:
        return out_users, vectors, n_pos
    _, starts, counts = np.unique(users, return_index=True, return_counts=True)
    positive = p > 0
    n_pos[:] = np.add.reduceat(positive.astype(np.int64), starts)
    c1 = f.alpha * np.abs(p)
    rhs = np.where(positive, 1.0 + c1, 0.0)
    y_all = f.factors64[pos]
    a = np.empty((len(out_users), k, k))
    b = np.empty((len(out_users), k))
    # One BLAS product per user (Y_u' C_u Y_u), then one batched solve for everyone.
    for j, (s0, n) in enumerate(zip(starts, counts, strict=True)):
        y = y_all[s0 : s0 + n]
        a[j] = (y.T * c1[s0 : s0 + n]) @ y
        b[j] = y.T @ rhs[s0 : s0 + n]
    a += f.gram + (f.reg * n_pos)[:, None, None] * np.eye(k)
    vectors[:] = np.linalg.solve(a, b[:, :, None])[:, :, 0]
    vectors[n_pos == 0] = 0.0  # zero right-hand side: Spark's answer is exactly 0
    return out_users, vectors, n_pos

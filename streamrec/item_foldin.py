"""Item fold-in: a movie's vectors from its raters' vectors, both models, user factors fixed.

The mirror image of the user fold-in (Oryx's speed layer does the same, `ALSUtils.computeUpdatedXu`
against X'X instead of Y'Y). Reading Spark's `ALS.computeFactors` for the item half-step, with
user factors X fixed:

- ranking model (implicit): with p_u = rating - threshold and c1_u = alpha * |p_u|,

      (X'X + sum_u c1_u x_u x_u' + lambda * n_+ * I) y = sum_{u: p_u > 0} (1 + c1_u) x_u

  X'X over every trained user's ranking vector, computed once per model version;
- explicit model (baseline + ALS): the item bias in the same closed form as training,
  b_i = sum(r - mu) / (lambda_i + n), then ALS-WR on the residuals,

      (U'U + lambda * n * I) v = U'(r - mu - b_i - b_u)      over the n raters.

Spark updates items before users in each iteration, so folding in a trained movie from its own
ratings reproduces Spark's item factors only approximately (tests/test_item_foldin.py measures
how close). Pure NumPy: the stream's item processor, serving and the tests share it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# The content prior's weight as a multiple of trace(X'X) / rank (X'X's mean eigenvalue), so that it
# transfers across models and catalogues. Measured by batch.new_movies_eval (docs/content.md,
# 2026-12-02, bundled data, held-out movies, each folded in from its first m ratings by time), chosen
# on seeds 42,43 by mean AUC over m = 1, 5, 20 from 0.001-30: 10 gives 0.885 / 0.892 / 0.884 against
# content alone 0.885 / 0.887 / 0.877 and no prior (Spark's objective) 0.593 / 0.684 / 0.772; seed 44
# (the check): 0.903 / 0.907 / 0.889 against 0.902 / 0.903 / 0.886 and 0.600 / 0.704 / 0.784. Flat
# from 10 to 30; 1 and below lose to content at every m. mu = 128 on that model (trace/rank 12.8).
CONTENT_PRIOR = 10.0


def prior_weight(gram: np.ndarray, multiple: float = CONTENT_PRIOR) -> float:
    """`ItemSide.prior_weight` for a model version: `multiple` * trace(X'X) / rank, `gram` = X'X."""
    g = np.asarray(gram, dtype=np.float64)
    if g.ndim != 2 or g.shape[0] != g.shape[1] or g.shape[0] == 0:
        raise ValueError(f"gram must be a non-empty square matrix, got shape {g.shape}")
    return float(multiple * np.trace(g) / g.shape[0])


@dataclass(frozen=True)
class ItemSide:
    """What an item solve needs from one model version (user side fixed)."""

    gram: np.ndarray  # X'X over every trained user's ranking vector, float64 (k_r, k_r)
    reg: float  # ranking regParam
    alpha: float
    threshold: float
    explicit_reg: float  # explicit regParam
    mean: float = 0.0  # mu (0 without a baseline)
    item_bias_reg: float | None = None  # lambda_i; None: no baseline
    # Pull towards a prior vector (the movie's content vector) instead of towards 0: adds
    # prior_weight * |y - prior|^2 to the ranking objective. 0: Spark's objective exactly.
    prior_weight: float = 0.0

    @classmethod
    def of(cls, rank_user_factors: np.ndarray, reg: float, alpha: float, threshold: float,
           explicit_reg: float, mean: float = 0.0, item_bias_reg: float | None = None,
           prior_weight: float = 0.0) -> ItemSide:  # fmt: skip
        x = np.asarray(rank_user_factors, dtype=np.float64)
        return cls(x.T @ x, reg, alpha, threshold, explicit_reg, mean, item_bias_reg, prior_weight)


@dataclass(frozen=True)
class ItemVectors:
    """One movie's solved vectors; `n_pos` counts positive inputs of the ranking model."""

    rank_vector: np.ndarray  # float32 (k_r,)
    vector: np.ndarray  # float32 (k_e,)
    bias: float
    n_pos: int


def item_bias(side: ItemSide, ratings: np.ndarray) -> float:
    """b_i = sum(r - mu) / (lambda_i + n), training's closed form (0 without a baseline)."""
    if side.item_bias_reg is None:
        return 0.0
    r = np.asarray(ratings, dtype=np.float64)
    return float((r - side.mean).sum() / (side.item_bias_reg + len(r)))


def fold_in_item(
    side: ItemSide,
    ratings: np.ndarray,
    rank_vectors: np.ndarray,
    vectors: np.ndarray,
    user_biases: np.ndarray,
    prior: np.ndarray | None = None,
) -> ItemVectors:
    """Reference: one movie from its raters (row-aligned ratings, ranking vectors, explicit vectors
    and biases), pulled towards `prior` when `side.prior_weight` > 0. The obviously-correct version
    of `fold_in_items`."""
    r = np.asarray(ratings, dtype=np.float64)
    x = np.asarray(rank_vectors, dtype=np.float64).reshape(len(r), side.gram.shape[0])
    k_r = side.gram.shape[0]
    p = r - side.threshold
    n_pos = int((p > 0).sum())
    mu = side.prior_weight if prior is not None else 0.0
    if n_pos == 0 and mu == 0:
        y = np.zeros(k_r)
    else:
        c1 = side.alpha * np.abs(p)
        a = side.gram + (x.T * c1) @ x + (side.reg * n_pos + mu) * np.eye(k_r)
        b = x.T @ np.where(p > 0, 1.0 + c1, 0.0) + (mu * np.asarray(prior, np.float64) if mu else 0.0)
        y = np.linalg.solve(a, b)
    b_i = item_bias(side, r)
    u = np.asarray(vectors, dtype=np.float64)
    k_e = u.shape[1]
    if len(r):
        resid = r - side.mean - b_i - np.asarray(user_biases, dtype=np.float64)
        v = np.linalg.solve(u.T @ u + side.explicit_reg * len(r) * np.eye(k_e), u.T @ resid)
    else:
        v = np.zeros(k_e)
    return ItemVectors(y.astype(np.float32), v.astype(np.float32), b_i, n_pos)


def fold_in_items(
    side: ItemSide,
    movie_ids: np.ndarray,
    ratings: np.ndarray,
    rank_vectors: np.ndarray,
    vectors: np.ndarray,
    user_biases: np.ndarray,
    priors: dict[int, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Vectorised: many movies, one row per (movie, rater); `priors`: movie id -> prior vector
    (movies without one are pulled towards 0, as in Spark).

    Returns (sorted unique movie ids, ranking vectors, explicit vectors, item biases, n_pos): the
    same normal equations as `fold_in_item`, built with one product per movie and solved in one
    batched call per model."""
    movie_ids = np.asarray(movie_ids, dtype=np.int64)
    order = np.argsort(movie_ids, kind="stable")
    movie_ids = movie_ids[order]
    r = np.asarray(ratings, dtype=np.float64)[order]
    x = np.asarray(rank_vectors, dtype=np.float64)[order]
    u = np.asarray(vectors, dtype=np.float64)[order]
    ub = np.asarray(user_biases, dtype=np.float64)[order]
    ids, starts, counts = np.unique(movie_ids, return_index=True, return_counts=True)
    k_r, k_e, m = side.gram.shape[0], u.shape[1] if u.ndim == 2 else 0, len(ids)
    rank_out, vec_out = np.zeros((m, k_r), np.float32), np.zeros((m, k_e), np.float32)
    biases, n_pos = np.zeros(m), np.zeros(m, np.int64)
    if m == 0:
        return ids, rank_out, vec_out, biases, n_pos
    p = r - side.threshold
    positive = p > 0
    c1 = side.alpha * np.abs(p)
    rhs = np.where(positive, 1.0 + c1, 0.0)
    n_pos[:] = np.add.reduceat(positive.astype(np.int64), starts)
    if side.item_bias_reg is not None:
        biases[:] = np.add.reduceat(r - side.mean, starts) / (side.item_bias_reg + counts)
    resid = r - side.mean - np.repeat(biases, counts) - ub
    a_r, b_r = np.empty((m, k_r, k_r)), np.empty((m, k_r))
    a_e, b_e = np.empty((m, k_e, k_e)), np.empty((m, k_e))
    for j, (s0, n) in enumerate(zip(starts, counts, strict=True)):
        xs, us = x[s0 : s0 + n], u[s0 : s0 + n]
        a_r[j] = (xs.T * c1[s0 : s0 + n]) @ xs
        b_r[j] = xs.T @ rhs[s0 : s0 + n]
        a_e[j] = us.T @ us
        b_e[j] = us.T @ resid[s0 : s0 + n]
    mu = np.zeros(m)
    if priors and side.prior_weight > 0:
        for j, movie in enumerate(ids):
            if (prior := priors.get(int(movie))) is not None:
                mu[j] = side.prior_weight
                b_r[j] += side.prior_weight * np.asarray(prior, np.float64)
    a_r += side.gram + (side.reg * n_pos + mu)[:, None, None] * np.eye(k_r)
    a_e += (side.explicit_reg * counts)[:, None, None] * np.eye(k_e)
    rank_out[:] = np.linalg.solve(a_r, b_r[:, :, None])[:, :, 0]
    rank_out[(n_pos == 0) & (mu == 0)] = 0.0  # zero right-hand side: Spark's answer is exactly 0
    vec_out[:] = np.linalg.solve(a_e, b_e[:, :, None])[:, :, 0]
    return ids, rank_out, vec_out, biases, n_pos

"""Fold-in: a user's latent vector from their ratings against fixed item factors.

The objective is Spark ML ALS's explicit one with the item factors V held fixed:

    minimise  sum_i (r_i - u.v_i)^2 + lambda * n * |u|^2     over the user's n rated items
    =>        (V'V + lambda * n * I) u = V' r

Spark updates user factors last in every ALS iteration, so folding in a trained user's own
training ratings reproduces the stored user vector (up to float32 precision).

Models may carry a baseline (global mean mu, item biases b_i, user bias b_u): ALS is then
trained on residuals r - mu - b_i - b_u, and fold-in first computes the user's bias in the same
closed form as training, b_u = sum(r - mu - b_i) / (lambda_u + n), then solves on the
residuals. Without a baseline mu = b_i = b_u = 0 and this is plain Spark ALS.
This module is pure NumPy: the streaming job, `recommend` and the tests all use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .ids import rows as row_index


@dataclass(frozen=True)
class ItemFactors:
    """Item ids (sorted), their factor rows and baseline, with an id -> row lookup."""

    ids: np.ndarray  # int64, sorted ascending
    factors: np.ndarray  # float32, shape (n_items, rank)
    bias: np.ndarray | None = None  # float64 item biases b_i (None: no baseline)
    mean: float = 0.0  # global mean mu
    user_bias_reg: float | None = None  # lambda_u; None: users have no bias term
    support: np.ndarray | None = None  # training ratings per item (None: unknown, older models)
    min_support: int = 1  # an item is recommended only with at least this many training ratings

    def item_bias(self, pos: np.ndarray) -> np.ndarray:
        return self.bias[pos] if self.bias is not None else np.zeros(len(pos))

    def rows(self, movie_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row index, known mask) for movie ids; unknown movies get mask False."""
        return row_index(self.ids, movie_ids)

    @property
    def rank(self) -> int:
        return self.factors.shape[1]

    def serves(self, movie_ids: np.ndarray) -> np.ndarray:
        """Bool per movie id: the model knows it and may recommend it (`servable`), i.e. it serves
        the movie from training; the stream folds in the others (streamrec.item_foldin)."""
        pos, known = self.rows(np.asarray(movie_ids))
        served = known.copy()
        if self.servable is not None:
            served[known] = self.servable[pos[known]]
        return served

    @cached_property
    def servable(self) -> np.ndarray | None:
        """Bool per item: may be recommended (None: every item)."""
        return None if self.support is None else self.support >= self.min_support


@dataclass(frozen=True)
class FoldIn:
    vector: np.ndarray | None  # None when no rated item is known to the model
    bias: float  # the user's baseline bias b_u (0 without a baseline)
    n_used: int
    n_unknown: int


def user_bias(items: ItemFactors, residual_sum: np.ndarray, n: np.ndarray) -> np.ndarray:
    """b_u = sum(r - mu - b_i) / (lambda_u + n): the same closed form training uses."""
    if items.user_bias_reg is None:
        return np.zeros(np.shape(n))
    return residual_sum / (items.user_bias_reg + n)


def fold_in(items: ItemFactors, movie_ids, ratings, reg: float) -> FoldIn:
    """Reference implementation: one regularised least-squares solve for one user."""
    pos, known = items.rows(np.asarray(movie_ids))
    pos = pos[known]
    n = int(known.sum())
    if n == 0:
        return FoldIn(None, 0.0, 0, len(known))
    r = np.asarray(ratings, dtype=np.float64)[known] - items.mean - items.item_bias(pos)
    b_u = float(user_bias(items, r.sum(), n))
    v = items.factors[pos].astype(np.float64)
    a = v.T @ v + reg * n * np.eye(items.rank)
    u = np.linalg.solve(a, v.T @ (r - b_u))
    return FoldIn(u.astype(np.float32), b_u, n, int((~known).sum()))


def fold_in_many(
    items: ItemFactors, user_ids, movie_ids, ratings, reg: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Vectorised fold-in for many users at once.

    Returns (users, vectors, biases, n_used) for the users with at least one known item, users
    sorted.
    Same maths as `fold_in`: per-user normal equations built with one reduceat over the
    per-rating outer products, then one batched solve.
    """
    user_ids = np.asarray(user_ids, dtype=np.int64)
    pos, known = items.rows(np.asarray(movie_ids))
    user_ids, pos = user_ids[known], pos[known]
    r = np.asarray(ratings, dtype=np.float64)[known] - items.mean - items.item_bias(pos)
    if len(user_ids) == 0:
        e = np.empty(0)
        return e.astype(np.int64), np.empty((0, items.rank), np.float32), e, e.astype(np.int64)
    order = np.argsort(user_ids, kind="stable")
    user_ids, pos, r = user_ids[order], pos[order], r[order]
    users, starts, counts = np.unique(user_ids, return_index=True, return_counts=True)
    biases = user_bias(items, np.add.reduceat(r, starts), counts)
    r = r - np.repeat(biases, counts)
    k = items.rank
    vectors = np.empty((len(users), k), dtype=np.float32)
    # Chunk by ratings so the (nnz, k, k) outer-product buffer stays small.
    chunk_users = max(1, int(2_000_000 // (k * k)) // max(1, int(counts.mean())))
    eye = np.eye(k)
    for lo in range(0, len(users), chunk_users):
        hi = min(lo + chunk_users, len(users))
        a0, a1 = starts[lo], starts[hi - 1] + counts[hi - 1]
        v = items.factors[pos[a0:a1]].astype(np.float64)
        outer = np.einsum("ni,nj->nij", v, v)
        rel = starts[lo:hi] - a0
        a = np.add.reduceat(outer, rel, axis=0) + (reg * counts[lo:hi])[:, None, None] * eye
        b = np.add.reduceat(v * r[a0:a1, None], rel, axis=0)
        vectors[lo:hi] = np.linalg.solve(a, b[:, :, None])[:, :, 0]
    return users, vectors, biases, counts


def predict(items: ItemFactors, vector: np.ndarray, bias: float | np.ndarray = 0.0) -> np.ndarray:
    """Predicted ratings of every item: mu + b_u + b_i + u.v_i, for one user (a vector and a bias)
    or several (an (m, rank) matrix and an (m, 1) column of biases: an (m, items) matrix)."""
    scores = (vector.astype(np.float32) @ items.factors.T).astype(np.float64)
    if items.bias is not None:
        scores += items.bias
    return scores + items.mean + bias


def top_k(
    items: ItemFactors,
    vector: np.ndarray,
    k: int,
    exclude: np.ndarray | None = None,
    bias: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """The k best servable movie ids for a user, excluding `exclude` ids; (ids, predicted ratings)."""
    scores = predict(items, vector, bias)
    if items.servable is not None:
        scores = np.where(items.servable, scores, -np.inf)
    if exclude is not None and len(exclude):
        pos, known = items.rows(np.asarray(exclude))
        scores[pos[known]] = -np.inf
    k = min(k, int(np.isfinite(scores).sum()))
    if k <= 0:
        return np.empty(0, np.int64), np.empty(0, np.float32)
    best = np.argpartition(-scores, k - 1)[:k]
    best = best[np.argsort(-scores[best], kind="stable")]
    return items.ids[best], scores[best]

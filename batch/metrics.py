"""List metrics and the small pieces every evaluation protocol shares (pure NumPy/pandas).

Rules, the same for every method: relevant = a held-out rating >= 4; candidates = movies seen in
training minus the user's own inputs; a list shorter than k counts its empty slots as misses.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

RELEVANT = 4.0


def list_metrics(lists: list[np.ndarray], relevant: list[set], k: int = 10) -> dict:
    """Mean precision@k, recall@k, NDCG@k (binary gains) and MAP@k over users.

    MAP@k divides by min(|relevant|, k); users without a relevant item must be left out by the
    caller (they have no defined recall or NDCG).
    """
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    p = r = n = ap = 0.0
    for top, rel in zip(lists, relevant, strict=True):
        hits = np.zeros(k)
        top = list(top)[:k]
        hits[: len(top)] = [t in rel for t in top]
        p += hits.sum() / k
        r += hits.sum() / len(rel)
        n += (hits * discounts).sum() / discounts[: min(len(rel), k)].sum()
        ap += (np.cumsum(hits) / np.arange(1, k + 1) * hits).sum() / min(len(rel), k)
    d = max(len(lists), 1)
    return {
        f"precision_at_{k}": p / d,
        f"recall_at_{k}": r / d,
        f"ndcg_at_{k}": n / d,
        f"map_at_{k}": ap / d,
        "users": len(lists),
    }


def ndcg_per_user(lists: np.ndarray, relevant: list[set], k: int = 10) -> np.ndarray:
    """NDCG@k of each user (lists: (m, k) ids, -1 padded)."""
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    out = np.empty(len(relevant))
    for j, rel in enumerate(relevant):
        hits = np.fromiter((t in rel for t in lists[j][:k]), float, count=min(k, len(lists[j])))
        out[j] = (hits * discounts[: len(hits)]).sum() / discounts[: min(len(rel), k)].sum()
    return out


def relevant_sets(test: pd.DataFrame) -> pd.Series:
    """user -> set of held-out movies rated >= 4 (users without one are absent)."""
    return test[test["rating"] >= RELEVANT].groupby("user_id")["movie_id"].agg(set)


def first_n(ratings: pd.DataFrame, n: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each user's first n ratings by event time, and the rest (users with more than n only)."""
    ordered = ratings.sort_values(["user_id", "timestamp"], kind="stable")
    rank = ordered.groupby("user_id").cumcount()
    size = ordered.groupby("user_id")["movie_id"].transform("size")
    ordered = ordered[size > n]
    rank = rank[size > n]
    return ordered[rank < n], ordered[rank >= n]


def holdout_users(ratings: pd.DataFrame, fraction: float, seed: int) -> np.ndarray:
    """A seeded random `fraction` of the user ids, sorted."""
    return holdout_of(np.unique(ratings["user_id"].to_numpy()), fraction, seed)


def holdout_of(users: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A seeded random `fraction` of the sorted unique ids `users`, sorted."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(users, max(1, int(round(fraction * len(users)))), replace=False))

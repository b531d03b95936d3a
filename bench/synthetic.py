"""Synthetic ratings with a planted low-rank structure, for training benchmarks at scale.

r = clip(round2(mu + b_u + b_i + u.v + noise)) with popularity-skewed items (Zipf) and
heavy-tailed user activity, so the data looks like MovieLens but with a known rank.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def generate(n_ratings: int, n_users: int, n_items: int, rank: int = 10, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    u = rng.normal(0, 0.5, (n_users, rank)).astype(np.float32)
    v = rng.normal(0, 0.5, (n_items, rank)).astype(np.float32)
    b_u = rng.normal(0, 0.3, n_users)
    b_i = rng.normal(0, 0.4, n_items)
    activity = rng.pareto(1.5, n_users) + 1
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.8
    pairs = np.empty(0, dtype=np.int64)
    while len(pairs) < n_ratings:  # skewed draws repeat pairs: top up until n unique pairs
        draw = int((n_ratings - len(pairs)) * 1.5) + 1000
        users = rng.choice(n_users, draw, p=activity / activity.sum())
        items = rng.choice(n_items, draw, p=popularity / popularity.sum())
        pairs = pd.unique(np.concatenate([pairs, users.astype(np.int64) * n_items + items]))
    pairs = pairs[:n_ratings]
    df = pd.DataFrame({"user_id": (pairs // n_items).astype(np.int32) + 1,
                       "movie_id": (pairs % n_items).astype(np.int32) + 1})  # fmt: skip
    uu, ii = df["user_id"].to_numpy() - 1, df["movie_id"].to_numpy() - 1
    signal = 3.5 + b_u[uu] + b_i[ii] + np.einsum("ij,ij->i", u[uu], v[ii])
    noisy = signal + rng.normal(0, 0.5, len(df))
    df["rating"] = np.clip(np.round(noisy * 2) / 2, 0.5, 5.0).astype(np.float32)
    df["timestamp"] = rng.integers(1_000_000_000, 1_500_000_000, len(df))
    return df

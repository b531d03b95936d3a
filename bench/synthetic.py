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
    users = rng.choice(n_users, n_ratings, p=activity / activity.sum())
    items = rng.choice(n_items, n_ratings, p=popularity / popularity.sum())
    df = pd.DataFrame({"user_id": users.astype(np.int32) + 1, "movie_id": items.astype(np.int32) + 1})
    df = df.drop_duplicates(["user_id", "movie_id"]).reset_index(drop=True)
    uu, ii = df["user_id"].to_numpy() - 1, df["movie_id"].to_numpy() - 1
    signal = 3.5 + b_u[uu] + b_i[ii] + np.einsum("ij,ij->i", u[uu], v[ii])
    noisy = signal + rng.normal(0, 0.5, len(df))
    df["rating"] = np.clip(np.round(noisy * 2) / 2, 0.5, 5.0).astype(np.float32)
    df["timestamp"] = rng.integers(1_000_000_000, 1_500_000_000, len(df))
    return df

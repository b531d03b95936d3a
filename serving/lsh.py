"""Approximate Euclidean neighbours by random projections, in NumPy (for the HTTP API).

The same scheme as Spark's BucketedRandomProjectionLSH: table i hashes x to
floor(x . v_i / bucket_length) with v_i a random unit vector; a query's candidates are the
movies whose hash distance (the smallest |h_i(x) - h_i(q)| over the tables) is within the k-th
smallest, and candidates are ranked by exact distance. Why not Spark's: starting a Spark job per
request costs seconds for a few thousand vectors. The projections come from NumPy's generator,
not Scala's, so buckets differ from `similar --metric lsh` for the same seed; recall against the
exact answer is what both are measured by.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np


@dataclass(frozen=True)
class RandomProjectionLSH:
    factors: np.ndarray  # (n, rank)
    bucket_length: float = 2.0
    tables: int = 5
    seed: int = 42

    @cached_property
    def _planes(self) -> np.ndarray:
        v = np.random.default_rng(self.seed).standard_normal((self.factors.shape[1], self.tables))
        return v / np.linalg.norm(v, axis=0, keepdims=True)

    @cached_property
    def _hashes(self) -> np.ndarray:
        return np.floor(self.factors.astype(np.float64) @ self._planes / self.bucket_length)

    def query(self, row: int, k: int, candidates: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(item rows, Euclidean distances) of up to k approximate neighbours of item `row`."""
        hash_dist = np.abs(self._hashes - self._hashes[row]).min(axis=1)
        allowed = np.ones(len(hash_dist), bool) if candidates is None else candidates.copy()
        allowed[row] = False
        if not allowed.any() or k < 1:
            return np.empty(0, np.int64), np.empty(0)
        k = min(k, int(allowed.sum()))
        threshold = np.partition(hash_dist[allowed], k - 1)[k - 1]
        pool = np.flatnonzero(allowed & (hash_dist <= threshold))
        dist = np.linalg.norm(self.factors[pool].astype(np.float64) - self.factors[row], axis=1)
        best = np.argsort(dist, kind="stable")[:k]
        return pool[best], dist[best]

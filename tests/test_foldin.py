"""Fold-in math: a known answer, the vectorised path against the reference, top-k."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamrec.foldin import ItemFactors, fold_in, fold_in_many, top_k


def test_known_answer_two_items():
    # V = I (rank 2), ratings (4, 2), reg 0.5, n = 2: (I + 1*I) u = (4, 2) -> u = (2, 1)
    items = ItemFactors(np.array([10, 20]), np.eye(2, dtype=np.float32))
    f = fold_in(items, [10, 20], [4.0, 2.0], reg=0.5)
    assert np.allclose(f.vector, [2.0, 1.0]) and f.n_used == 2 and f.n_unknown == 0


def test_known_answer_with_baseline():
    # mu = 3, b_i = (1, -1): residuals (0, 0) -> b_u = 0 and u = 0
    items = ItemFactors(np.array([1, 2]), np.eye(2, dtype=np.float32), np.array([1.0, -1.0]), 3.0, 5.0)
    f = fold_in(items, [1, 2], [4.0, 2.0], reg=0.1)
    assert f.bias == pytest.approx(0.0) and np.allclose(f.vector, 0.0)
    # residuals (1, 1): b_u = 2 / (5 + 2)
    f = fold_in(items, [1, 2], [5.0, 3.0], reg=0.1)
    assert f.bias == pytest.approx(2 / 7)


def test_unknown_items_are_ignored_and_counted():
    items = ItemFactors(np.array([1, 2, 3]), np.eye(3, dtype=np.float32))
    f = fold_in(items, [1, 99, 3, 1000], [5, 5, 1, 4], reg=0.1)
    assert f.n_used == 2 and f.n_unknown == 2
    empty = fold_in(items, [99], [5.0], reg=0.1)
    assert empty.vector is None and empty.n_unknown == 1


def _random_problem(rng, n_items=40, rank=5, n_users=12, with_bias=True):
    ids = np.sort(rng.choice(10_000, n_items, replace=False)).astype(np.int64)
    factors = rng.normal(size=(n_items, rank)).astype(np.float32)
    bias = rng.normal(scale=0.3, size=n_items) if with_bias else None
    items = ItemFactors(ids, factors, bias, 3.5 if with_bias else 0.0, 15.0 if with_bias else None)
    rows = []
    for u in range(n_users):
        k = rng.integers(1, n_items)
        chosen = rng.choice(ids, k, replace=False)
        extra = [123_456] if u % 3 == 0 else []  # an unknown movie now and then
        for m in [*chosen, *extra]:
            rows.append((u * 7 + 1, m, rng.integers(1, 11) / 2))
    users, movies, ratings = map(np.array, zip(*rows, strict=True))
    return items, users, movies, ratings


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.booleans())
def test_vectorised_fold_in_matches_the_reference(seed, with_bias):
    rng = np.random.default_rng(seed)
    items, users, movies, ratings = _random_problem(rng, with_bias=with_bias)
    out_users, vectors, biases, counts = fold_in_many(items, users, movies, ratings, reg=0.1)
    assert list(out_users) == sorted(set(users.tolist()))
    for u, vec, b, n in zip(out_users, vectors, biases, counts, strict=True):
        mask = users == u
        ref = fold_in(items, movies[mask], ratings[mask], reg=0.1)
        assert n == ref.n_used
        assert b == pytest.approx(ref.bias, abs=1e-9)
        np.testing.assert_allclose(vec, ref.vector, atol=1e-5)


def test_top_k_excludes_and_orders():
    items = ItemFactors(np.array([1, 2, 3, 4]), np.array([[1.0], [3.0], [2.0], [4.0]], np.float32))
    ids, scores = top_k(items, np.array([1.0]), k=2, exclude=np.array([4]))
    assert ids.tolist() == [2, 3] and scores.tolist() == [3.0, 2.0]
    ids, _ = top_k(items, np.array([1.0]), k=10, exclude=np.array([1, 2, 3, 4]))
    assert len(ids) == 0


def test_top_k_returns_only_servable_items():
    factors = np.array([[1.0], [3.0], [2.0], [4.0]], np.float32)
    items = ItemFactors(np.array([1, 2, 3, 4]), factors, support=np.array([5, 1, 2, 9]), min_support=2)
    ids, _ = top_k(items, np.array([1.0]), k=10, exclude=np.array([4]))
    assert ids.tolist() == [3, 1]


def test_a_movie_is_served_from_training_when_known_and_rated_enough():
    f = np.zeros((3, 2), np.float32)
    items = ItemFactors(np.array([10, 20, 30]), f, support=np.array([5, 1, 3]), min_support=3)
    assert items.serves(np.array([30, 20, 99, 10])).tolist() == [True, False, False, True]
    assert ItemFactors(np.array([10, 20]), f[:2]).serves(np.array([20, 99])).tolist() == [True, False]

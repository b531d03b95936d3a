"""Content vectors (streamrec.content) without Spark: year parser, features, ridge, npz round trip."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamrec.content import (
    ContentMap,
    FeatureSpec,
    fit_content_map,
    load_tags,
    parse_year,
    ridge,
)
from streamrec.settings import BUNDLED_DATA


@pytest.mark.parametrize(
    ("title", "year"),
    [
        ("Toy Story (1995)", 1995),
        ("Toy Story (1995) ", 1995),
        ("City of Lost Children, The (Cité des enfants perdus, La) (1995)", 1995),
        ("Shawshank Redemption, The (1994)", 1994),
        ("Babylon 5 (1994-1998)", 1994),
        ("Jim & Andy: The Great Beyond (2017– )", 2017),
        ("Babylon 5", None),
        ("Death Note: Desu nôto (2006\ufffd?007)", None),
        ("1984 (a novel)", None),  # four digits, but not a year in parentheses at the end
        ("(500) Days of Summer (2009)", 2009),
        ("Movie (0042)", None),  # out of range
        ("", None),
        (None, None),
        (float("nan"), None),
    ],
)
def test_the_year_is_the_last_parenthesised_four_digits_of_the_title(title, year):
    assert parse_year(title) == year


def movies_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "movie_id": [3, 1, 2, 4, 5],
            "title": ["C (1970)", "A (1995)", "B (2010)", "D", "E (1995)"],
            "genres": [["Drama"], ["Comedy", "Drama"], "Action|Comedy", ["(no genres listed)"], None],
        }
    )


def tags_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "movie_id": [1, 2, 2, 3, 1, 5, 99],
            "tag": ["Funny", "funny ", "dark", "Dark", "FUNNY", "one-off", "funny"],
        }
    )


def test_the_feature_matrix_has_one_sorted_row_per_movie_and_is_deterministic():
    spec = FeatureSpec.fit(movies_frame(), tags_frame())
    assert spec.genres == ("Action", "Comedy", "Drama")
    assert spec.tags == ("dark", "funny")  # lower-cased, on >= 2 movies; "one-off" is on one only
    ids, f = spec.matrix(movies_frame(), tags_frame())
    assert ids.tolist() == [1, 2, 3, 4, 5]
    assert f.shape == (5, spec.n_features) == (5, len(spec.names))
    col = {name: j for j, name in enumerate(spec.names)}
    assert (f[:, col["intercept"]] == 1).all()
    assert f[:, col["year_unknown"]].tolist() == [0, 0, 0, 1, 0]
    assert f[3, col["year_z"]] == 0 and f[3, col["year_z2"]] == 0
    assert f[2, col["year>=1970"]] == 1 and f[1, col["year>=2010"]] == 1 and f[0, col["year>=1990"]] == 1
    assert f[:, col["genre:Comedy"]].tolist() == [1, 1, 0, 0, 0]
    assert f[3, col["genre:Action"] : col["genre:Drama"] + 1].sum() == 0  # no genres listed
    assert f[:, col["tag:funny"]].tolist() == [1, 1, 0, 0, 0]
    assert f[:, col["tag:dark"]].tolist() == [0, 1, 1, 0, 0]
    again = FeatureSpec.fit(movies_frame().sample(frac=1, random_state=1), tags_frame().iloc[::-1])
    assert again == spec
    np.testing.assert_array_equal(again.matrix(movies_frame().iloc[::-1], tags_frame())[1], f)


def test_movies_and_tags_outside_the_vocabulary_are_ignored():
    spec = FeatureSpec.fit(movies_frame(), tags_frame())
    new = pd.DataFrame({"movie_id": [7], "title": ["New (2030)"], "genres": [["Western", "Drama"]]})
    ids, f = spec.matrix(new, pd.DataFrame({"movie_id": [7, 7], "tag": ["unseen", "Dark"]}))
    col = {name: j for j, name in enumerate(spec.names)}
    assert ids.tolist() == [7]
    assert f[0, col["genre:Drama"]] == 1 and f[0, col["tag:dark"]] == 1
    assert (
        f[0].sum() == 1 + 1 + 1 + 1 + f[0, col["year_z"]] + f[0, col["year_z2"]]
    )  # intercept, bin, genre, tag


def test_a_movie_known_only_by_its_id_gets_the_intercept_and_year_unknown():
    spec = FeatureSpec.fit(movies_frame(), None)
    assert spec.tags == ()
    ids, f = spec.matrix(pd.DataFrame({"movie_id": [42]}), None)
    assert ids.tolist() == [42] and f[0].tolist() == [1.0, 1.0] + [0.0] * (spec.n_features - 2)


def test_an_explicit_year_column_wins_over_the_title():
    spec = FeatureSpec.fit(movies_frame(), None)
    year = pd.array([1980, pd.NA], "Int16")
    frame = pd.DataFrame({"movie_id": [1, 2], "title": ["A (1995)", "B"], "year": year, "genres": [[], []]})
    _, f = spec.matrix(frame, None)
    col = {name: j for j, name in enumerate(spec.names)}
    assert f[0, col["year>=1980"]] == 1 and f[1, col["year_unknown"]] == 1


@settings(max_examples=25, deadline=None)
@given(
    n_features=st.integers(2, 12),
    rank=st.integers(1, 6),
    seed=st.integers(0, 2**31 - 1),
    weighted=st.booleans(),
)
def test_ridge_recovers_a_known_linear_map(n_features, rank, seed, weighted):
    rng = np.random.default_rng(seed)
    n = 40 * n_features
    f = np.column_stack([np.ones(n), rng.normal(size=(n, n_features - 1))])
    w_true = rng.normal(size=(n_features, rank))
    y = f @ w_true
    weights = rng.uniform(0.1, 1.0, n) if weighted else None
    np.testing.assert_allclose(ridge(f, y, 1e-9, weights), w_true, atol=1e-6)
    # with noise, a little shrinkage still lands close; heavy shrinkage pulls all but the intercept to 0
    noisy = y + 0.01 * rng.normal(size=y.shape)
    np.testing.assert_allclose(ridge(f, noisy, 1e-3, weights), w_true, atol=0.05)
    shrunk = ridge(np.column_stack([np.ones(n), np.zeros((n, n_features - 1))]), y, 1e6, weights)
    assert np.allclose(shrunk[1:], 0)


def synthetic_catalogue(n: int = 600, rank: int = 4, seed: int = 0):
    """Movies whose item factors are an exact linear function of their content (plus noise)."""
    rng = np.random.default_rng(seed)
    genres = ["Action", "Comedy", "Drama", "Horror", "Romance"]
    movies = pd.DataFrame(
        {
            "movie_id": np.arange(1, n + 1) * 3,
            "title": [f"M{i} ({1940 + i % 80})" if i % 17 else f"M{i}" for i in range(n)],
            "genres": [list(rng.choice(genres, size=rng.integers(1, 3), replace=False)) for _ in range(n)],
        }
    )
    tags = pd.DataFrame({"movie_id": movies["movie_id"][::4], "tag": "cult"})
    spec = FeatureSpec.fit(movies, tags)
    ids, f = spec.matrix(movies, tags)
    w_true = rng.normal(size=(spec.n_features, rank))
    y = f @ w_true + 0.01 * rng.normal(size=(n, rank))
    return movies, tags, ids, y, w_true, spec


def test_the_fitted_map_predicts_vectors_of_movies_it_did_not_see():
    movies, tags, ids, y, w_true, spec = synthetic_catalogue()
    support = np.where(np.arange(len(ids)) % 5, 30, 0)  # every fifth movie has no ratings: not fitted
    cm = fit_content_map(movies, tags, ids, y, support, seed=3)
    assert cm.summary["movies_fitted"] == int((support > 0).sum()) and cm.rank == y.shape[1]
    assert cm.summary["validation"]["r2"] > 0.99 and cm.lam <= 1.0  # exact data: little shrinkage
    unseen = movies[support == 0]
    out_ids, vectors = cm.vectors(unseen, tags)
    assert out_ids.dtype == np.int64 and vectors.dtype == np.float32 and vectors.shape == (len(unseen), 4)
    assert np.array_equal(out_ids, np.sort(unseen["movie_id"].to_numpy()))
    np.testing.assert_allclose(vectors, y[support == 0], atol=0.1)


def test_the_map_round_trips_through_npz(tmp_path):
    movies, tags, ids, y, _, _ = synthetic_catalogue(n=200)
    cm = fit_content_map(movies, tags, ids, y, np.full(len(ids), 12))
    cm.save(tmp_path / "content.npz")
    back = ContentMap.load(tmp_path / "content.npz")
    assert back.spec == cm.spec and back.lam == cm.lam
    np.testing.assert_array_equal(back.weights, cm.weights)
    np.testing.assert_array_equal(back.vectors(movies, tags)[1], cm.vectors(movies, tags)[1])
    assert ContentMap.from_npz(cm.to_npz_dict()).spec == cm.spec
    with np.load(tmp_path / "content.npz", allow_pickle=False) as z:  # plain arrays, no pickles
        assert {a.dtype.kind for a in (z[k] for k in z.files)} <= {"U", "f", "i"}


def test_a_layout_without_tags_fits_and_serves_without_them(tmp_path):
    movies, _, ids, y, _, _ = synthetic_catalogue(n=200)
    (tmp_path / "u.data").write_text("1\t3\t4\t881250949\n")
    (tmp_path / "u.item").write_text(
        "3|M (1995)|01-Jan-1995||http://x|" + "|".join(["0"] * 18 + ["1"]) + "\n"
    )
    tags = load_tags(tmp_path)  # ml-100k layout: no tags file
    assert tags.empty and list(tags.columns) == ["movie_id", "tag"]
    cm = fit_content_map(movies, tags, ids, y, np.full(len(ids), 5))
    assert cm.spec.tags == () and cm.summary["features"]["tags"] == 0
    assert cm.vectors(movies.head(3), None)[1].shape == (3, y.shape[1])
    assert np.array_equal(cm.vectors(movies, tags)[1], cm.vectors(movies, None)[1])


def test_the_bundled_tags_load_as_movie_and_tag():
    tags = load_tags(BUNDLED_DATA)
    assert list(tags.columns) == ["movie_id", "tag"] and len(tags) > 3000
    assert tags["movie_id"].dtype == np.int64


def test_the_first_m_ratings_are_each_movies_earliest_with_ties_by_user_id():
    from batch.new_movies_eval import first_m

    ratings = pd.DataFrame(
        {
            "user_id": [5, 9, 3, 1, 2, 7, 4],
            "movie_id": [10, 10, 10, 10, 20, 20, 30],
            "timestamp": [300, 100, 100, 400, 50, 40, 10],
            "rating": [4.0] * 7,
        },
        index=[70, 60, 50, 40, 30, 20, 10],  # the mask is row-aligned, not index-aligned
    )
    # movie 10 by (time, user): users 9 and 3 at 100 (3 first, not file order), then 5, then 1
    assert first_m(ratings, 0).tolist() == [False] * 7
    assert first_m(ratings, 1).tolist() == [False, False, True, False, False, True, True]
    assert first_m(ratings, 2).tolist() == [False, True, True, False, True, True, True]
    assert first_m(ratings, 3).tolist() == [True, True, True, False, True, True, True]
    assert first_m(ratings, 20).all()
    assert first_m(ratings.iloc[:0], 5).tolist() == []


def test_auc_and_ndcg_count_ties_fairly():
    from batch.content_eval import auc
    from batch.new_movies_eval import ndcg_at

    n = 400
    positive = np.zeros(n, bool)
    positive[-4:] = True  # the positives are the last ids: an id-order tie break would bury them
    negative = ~positive
    negative[0] = False  # neither (an input rater): left out of both
    assert auc(np.zeros(n), positive, negative) == 0.5
    perfect = positive.astype(float)
    assert auc(perfect, positive, negative) == 1.0
    assert ndcg_at(perfect, positive, negative, 100, np.random.default_rng(0)) == pytest.approx(1.0)
    assert ndcg_at(-perfect, positive, negative, 100, np.random.default_rng(0)) == 0.0
    # the one user outside both sets is not ranked: a top score for it changes nothing
    lifted = perfect.copy()
    lifted[0] = 10.0
    assert ndcg_at(lifted, positive, negative, 100, np.random.default_rng(0)) == pytest.approx(1.0)
    # a constant score: chance level on average over tie orders (4 of 399 users, k = 100)
    draws = [ndcg_at(np.zeros(n), positive, negative, 100, np.random.default_rng(s)) for s in range(300)]
    discounts = 1 / np.log2(np.arange(2, 102))
    chance = 4 / 399 * discounts.sum() / discounts[:4].sum()
    assert np.mean(draws) == pytest.approx(chance, rel=0.15)
    # one positive, ranked third of the candidates
    one = np.zeros(n, bool)
    one[5] = True
    scores = np.zeros(n)
    scores[[1, 2, 5]] = [3.0, 2.0, 1.0]
    assert ndcg_at(scores, one, ~one, 100, np.random.default_rng(0)) == pytest.approx(1 / np.log2(4))
    assert np.isnan(ndcg_at(scores, np.zeros(n, bool), ~one, 100, np.random.default_rng(0)))


def test_the_content_prior_weight_is_a_multiple_of_the_mean_eigenvalue_of_the_users_gram():
    from streamrec.item_foldin import CONTENT_PRIOR, prior_weight

    gram = np.diag([1.0, 2.0, 3.0, 6.0])  # trace 12 over rank 4: mean eigenvalue 3
    assert prior_weight(gram, 0.5) == pytest.approx(1.5)
    assert prior_weight(gram) == pytest.approx(CONTENT_PRIOR * 3.0) and CONTENT_PRIOR > 0
    assert prior_weight(gram, 0.0) == 0.0  # Spark's objective
    x = np.random.default_rng(0).normal(size=(50, 4))
    q, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(4, 4)))
    g = x.T @ x
    # sum of squared user-vector norms over rank: off-diagonal entries do not count, a rotation of
    # the factor space changes nothing, and doubling every user vector quadruples the weight
    assert prior_weight(g, 1.0) == pytest.approx((x**2).sum() / 4)
    assert prior_weight((x @ q).T @ (x @ q), 1.0) == pytest.approx(prior_weight(g, 1.0))
    assert prior_weight((2 * x).T @ (2 * x), 0.3) == pytest.approx(4 * prior_weight(g, 0.3))
    with pytest.raises(ValueError):
        prior_weight(np.ones((2, 3)))

"""Ranking model maths, the scorer's cold-start blend, list metrics and the ratings-file reader
(pure logic: no Spark; the property against Spark's own vectors is in test_batch.py)."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batch.metrics import first_n, list_metrics, ndcg_per_user
from serving.recommend import read_ratings_file
from streamrec.errors import StreamrecError
from streamrec.foldin import ItemFactors
from streamrec.ranking import ImplicitFactors, implicit_fold_in, implicit_fold_in_many
from streamrec.scorer import Blend, Scorer, top_rows


def test_implicit_fold_in_known_answer():
    # Y = I (rank 2), one positive item (row 0) with p = 1, alpha = 2 -> c1 = 2, reg 0.5, n+ = 1:
    # A = I + 2 e0 e0' + 0.5 I = diag(3.5, 1.5); b = (1 + 2) e0 -> x = (3/3.5, 0)
    f = ImplicitFactors(np.eye(2, dtype=np.float32), reg=0.5, alpha=2.0, threshold=0.0)
    x, n = implicit_fold_in(f, np.array([0]), np.array([1.0]))
    assert n == 1 and np.allclose(x, [3 / 3.5, 0.0])


def test_a_rating_below_the_threshold_is_a_confident_no_and_at_it_says_nothing():
    # threshold 2.5, alpha 1: a 1.0 is p = -1.5 -> A gains 1.5 y y' and b nothing (Spark 4.x).
    f = ImplicitFactors(np.eye(3, dtype=np.float32), reg=0.1, alpha=1.0, threshold=2.5)
    yes, n = implicit_fold_in(f, np.array([0]), np.array([5.0]))
    assert n == 1 and np.allclose(yes, [(1 + 2.5) / (1 + 2.5 + 0.1), 0, 0])
    with_no, m = implicit_fold_in(f, np.array([0, 1]), np.array([5.0, 1.0]))
    assert m == 1 and np.allclose(with_no, yes)  # orthogonal items: the "no" changes nothing else...
    g = ImplicitFactors(np.array([[1, 0], [1, 1], [0, 1]], np.float32), 0.1, 1.0, 2.5)
    x, _ = implicit_fold_in(g, np.array([0]), np.array([5.0]))
    x_no, _ = implicit_fold_in(g, np.array([0, 1]), np.array([5.0, 1.0]))
    assert x_no @ g.factors[1] < x @ g.factors[1]  # ...but lowers the score of a disliked movie
    x_meh, _ = implicit_fold_in(g, np.array([0, 1]), np.array([5.0, 2.5]))
    assert np.allclose(x_meh, x)  # exactly the threshold: no signal
    none, k = implicit_fold_in(f, np.array([2]), np.array([1.0]))
    assert k == 0 and not none.any()  # no positive input: zero right-hand side, x = 0


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.0, 3.0))
def test_vectorised_implicit_fold_in_matches_the_reference(seed, threshold):
    rng = np.random.default_rng(seed)
    f = ImplicitFactors(rng.normal(size=(30, 4)).astype(np.float32), 0.1, 1.5, threshold)
    users, pos, ratings = [], [], []
    for u in range(8):
        k = rng.integers(1, 30)
        users += [u * 3 + 1] * k
        pos += list(rng.choice(30, k, replace=False))
        ratings += list(rng.integers(1, 11, k) / 2)
    users, pos, ratings = np.array(users), np.array(pos), np.array(ratings)
    out, vectors, n_pos = implicit_fold_in_many(f, users, pos, ratings)
    assert out.tolist() == sorted(set(users.tolist()))
    for u, vec, n in zip(out, vectors, n_pos, strict=True):
        ref, m = implicit_fold_in(f, pos[users == u], ratings[users == u])
        assert n == m
        np.testing.assert_allclose(vec, ref, atol=1e-5)


def test_blend_weight_takes_the_last_bucket_at_or_below_n():
    b = Blend((1, 3, 10), (5.0, 1.0, 0.1))
    assert b.weight(np.array([1, 2, 3, 9, 10, 500])).tolist() == [5.0, 5.0, 1.0, 1.0, 0.1, 0.1]
    assert Blend.from_dict(b.to_dict()) == b


def _scorer(weights=(0.0,)):
    # 4 items; item 3 is the most popular, item 1 personal for someone who liked item 0.
    items = ItemFactors(
        np.array([10, 11, 12, 13]),
        np.zeros((4, 1), np.float32),
        support=np.array([1, 2, 3, 100]),
        min_support=1,
    )
    ranking = ImplicitFactors(np.array([[1, 0], [1, 0], [0, 0], [0, 1]], np.float32), 0.1, 1.0, 0.0)
    return Scorer(items, ranking, 0.1, Blend((1,), weights))


def test_the_blend_moves_a_list_from_personal_to_popular():
    users = _scorer().fold_in_one([10], [5.0])
    personal = _scorer((0.0,)).top_k(users, 1, [np.array([10])])[0][0]
    popular = _scorer((1e3,)).top_k(users, 1, [np.array([10])])[0][0]
    assert personal.tolist() == [11] and popular.tolist() == [13]


def test_a_user_with_no_known_movie_gets_the_popularity_order():
    s = _scorer((0.0,))
    users = s.fold_in_one([999], [5.0])  # unknown to the model
    assert users.n_used[0] == 0 and users.n_unknown[0] == 1
    ids, _, _ = s.top_k(users, 4)[0]
    assert ids.tolist() == [13, 12, 11, 10]
    empty = s.fold_in_one([], [])
    assert s.top_k(empty, 2)[0][0].tolist() == [13, 12]


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 7))
def test_ranking_in_chunks_of_users_equals_ranking_all_at_once(seed, cells):
    rng = np.random.default_rng(seed)
    n_items, n_users = 12, 9
    items = ItemFactors(np.arange(100, 100 + n_items), rng.normal(size=(n_items, 2)).astype(np.float32),
                        support=rng.integers(1, 50, n_items), min_support=1)  # fmt: skip
    ranking = ImplicitFactors(rng.normal(size=(n_items, 3)).astype(np.float32), 0.1, 1.0, 0.0)
    s = Scorer(items, ranking, 0.1, Blend((1, 3), (0.5, 0.1)))
    users = s.fold_in(rng.integers(0, n_users, 40), rng.integers(100, 100 + n_items, 40),
                      rng.integers(1, 11, 40) / 2)  # fmt: skip
    exclude = [rng.choice(items.ids, rng.integers(0, 4), replace=False) for _ in range(len(users))]
    whole = s.top_k(users, 5, exclude)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("streamrec.scorer.SCORE_CELLS", cells * n_items)  # `cells` users per chunk
        rows, chunked = s.rank_rows(users, 5, exclude), s.top_k(users, 5, exclude)
    assert rows.tolist() == top_rows(_masked(s, users, exclude), 5).tolist()
    for (a, sa, pa), (b, sb, pb) in zip(whole, chunked, strict=True):
        assert a.tolist() == b.tolist() and np.allclose(sa, sb) and np.allclose(pa, pb)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from([6, 40]), st.integers(1, 7))
def test_ranking_under_every_weight_at_once_equals_one_blend_per_weight(seed, n_items, cells):
    """The blend calibration's shortcut (personal scores and masks once, a float32 pass, then
    float64 order) gives the lists of one scorer per weight: unservable movies, each user's own
    movies and users with nothing personal (only unknown movies) included."""
    from dataclasses import replace

    rng = np.random.default_rng(seed)
    items = ItemFactors(np.arange(100, 100 + n_items), rng.normal(size=(n_items, 2)).astype(np.float32),
                        support=rng.integers(1, 50, n_items), min_support=8)  # fmt: skip
    ranking = ImplicitFactors(rng.normal(size=(n_items, 3)).astype(np.float32), 0.1, 1.0, 0.0)
    s = Scorer(items, ranking, 0.1)
    unknown = 100 + n_items + np.arange(3)  # ids unknown to the model; users 9 and 10 rated only those
    movies = np.concatenate([rng.integers(100, 100 + n_items, 40), unknown, unknown[:1]])
    users = s.fold_in(np.r_[rng.integers(0, 9, 40), 9, 9, 10, 10], movies, rng.integers(1, 11, 44) / 2)
    assert (users.n_used == 0).sum() >= 2
    exclude = [rng.choice(items.ids, rng.integers(0, 4), replace=False) for _ in range(len(users))]
    weights = (0.0, 0.1, 1.0, 1e3)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("streamrec.scorer.SCORE_CELLS", cells * n_items)  # `cells` users per chunk
        at_once = s.rank_rows_per_weight(users, 5, weights, exclude)
    for w, rows in zip(weights, at_once, strict=True):
        one = replace(s, blend=Blend((1,), (w,)))
        expected = one.rank_rows(users, 5, exclude)
        scores = _masked(one, users, exclude)
        assert ((rows >= 0) == (expected >= 0)).all()  # as many movies per list
        # the same k best scores, best first (movies of equal score, as the prior's ties, may swap)
        got, want = (np.take_along_axis(scores, np.maximum(r, 0), 1)[r >= 0] for r in (rows, expected))
        assert np.array_equal(got, want)
        assert (rows == expected).mean() > 0.8  # ties are rare: not merely some equal-scored set


def _masked(s: Scorer, users, exclude) -> np.ndarray:
    m = s.scores(users)
    for j, ids in enumerate(exclude):
        m[j, s.items.rows(ids)[0]] = -np.inf
    return m


def test_top_rows_orders_and_pads():
    s = np.array([[0.1, 0.9, -np.inf, 0.5], [-np.inf, -np.inf, -np.inf, 1.0]])
    assert top_rows(s, 3).tolist() == [[1, 3, 0], [3, -1, -1]]


def test_list_metrics_on_a_hand_computed_case():
    # user A: hits at ranks 1 and 3 of 3 relevant; user B: no hit.
    m = list_metrics([[1, 2, 3], [7, 8, 9]], [{1, 3, 5}, {4}], k=3)
    d = 1 / np.log2([2, 3, 4])
    assert m["precision_at_3"] == pytest.approx((2 / 3 + 0) / 2)
    assert m["recall_at_3"] == pytest.approx((2 / 3 + 0) / 2)
    assert m["ndcg_at_3"] == pytest.approx(((d[0] + d[2]) / d.sum()) / 2)
    assert m["map_at_3"] == pytest.approx(((1 + 2 / 3) / 3) / 2)
    assert ndcg_per_user(np.array([[1, 2, 3]]), [{1, 3, 5}], 3)[0] == pytest.approx((d[0] + d[2]) / d.sum())


def test_first_n_is_by_event_time_per_user():
    df = pd.DataFrame({"user_id": [1, 1, 1, 2], "movie_id": [5, 6, 7, 8], "timestamp": [30, 10, 20, 1]})
    head, rest = first_n(df, 2)
    assert head["movie_id"].tolist() == [6, 7] and rest["movie_id"].tolist() == [5]  # user 2 has only 1


def test_ratings_file_reads_and_names_the_bad_line(tmp_path):
    good = tmp_path / "r.csv"
    good.write_text("user_id,movie_id,rating,timestamp\n1,10,4.5,0\n1,10,3.0,0\n2,11,5,0\n")
    df = read_ratings_file(good)
    assert df.values.tolist() == [[1, 10, 3.0], [2, 11, 5.0]]  # later row wins
    cases = {
        "user_id,movie_id,rating\n1,10,4.5\n1,x,4\n": "r.csv:3: user_id and movie_id must be integers",
        "user_id,movie_id,rating\n1,10,4.7\n": "r.csv:2: rating 4.7 is outside",
        "user_id,movie_id,rating\n1,10\n": "r.csv:2: 2 fields, expected 3",
        "movie_id,rating\n1,4\n": "r.csv:1: header must name user_id,movie_id,rating",
        "": "empty file",
        "user_id,movie_id,rating\n0,10,4\n": "r.csv:2: ids must be in",
    }
    for text, message in cases.items():
        good.write_text(text)
        with pytest.raises(StreamrecError, match=message):
            read_ratings_file(good)


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 10_000))
def test_an_explanations_parts_add_up_to_the_scorers_own_score(seed):
    """prior + every contribution == the blended score `Scorer.scores` ranks by, for a user with
    likes, a "no" (below the threshold: in the system, not in the sum) and an unknown movie."""
    from streamrec.explain import explain

    rng = np.random.default_rng(seed)
    n_items = 15
    items = ItemFactors(np.arange(100, 100 + n_items), rng.normal(size=(n_items, 2)).astype(np.float32),
                        support=rng.integers(1, 50, n_items))  # fmt: skip
    ranking = ImplicitFactors(rng.normal(size=(n_items, 3)).astype(np.float32), 0.1, 1.5, 2.5)
    s = Scorer(items, ranking, 0.1, Blend((1, 3), (0.5, 0.1)))
    movies, ratings = np.array([100, 103, 107, 111, 999]), np.array([5.0, 4.0, 1.0, 4.5, 5.0])
    listed = np.array([101, 102, 104, 110])
    user = s.fold_in_one(movies, ratings)
    rows, _ = items.rows(listed)
    want = s.scores(user)[0, rows]
    parts = explain(s, movies, ratings, listed, top=2)
    got = [e.prior + e.rest + sum(c for _, c in e.because) for e in parts]
    assert np.allclose(got, want, rtol=1e-5, atol=1e-6)
    assert [e.score for e in explain(s, movies, ratings, listed)] == pytest.approx(want, rel=1e-5, abs=1e-6)

"""Training helpers that need no Spark."""

import numpy as np
import pandas as pd
import pytest

from batch.metrics import list_metrics, relevant_sets
from batch.train import Fitted, monotone, popularity_metrics, ranking_metrics
from streamrec.foldin import ItemFactors, top_k
from streamrec.scorer import top_rows


def test_the_blend_weight_never_grows_with_the_users_own_ratings():
    assert monotone([0.1, 0.1, 0.2, 0.2, 0.5, 1.0, 5.0]) == (0.1,) * 7
    assert monotone([0.5, 0.2, 0.05, 0.2, 0.0, 0.1]) == (0.5, 0.2, 0.05, 0.05, 0.0, 0.0)


@pytest.mark.parametrize("chunk_users", [1, 3, 1000])
def test_list_metrics_over_all_users_match_one_user_at_a_time(monkeypatch, chunk_users):
    rng = np.random.default_rng(chunk_users)
    n_items, n_users = 40, 25
    items = ItemFactors(np.arange(10, 10 + n_items), rng.normal(size=(n_items, 3)).astype(np.float32),
                        support=rng.integers(1, 9, n_items), min_support=3,  # some not servable
                        bias=rng.normal(size=n_items), mean=3.5)  # fmt: skip
    m = Fitted(items, np.arange(1, n_users + 1), rng.normal(size=(n_users, 3)).astype(np.float32),
               rng.normal(size=n_users), als_model=None)  # fmt: skip
    ratings = pd.DataFrame({"user_id": rng.integers(1, n_users + 4, 600),  # a few unknown users
                            "movie_id": rng.integers(10, 10 + n_items, 600),
                            "rating": rng.integers(1, 11, 600) / 2})  # fmt: skip
    ratings = ratings.drop_duplicates(["user_id", "movie_id"])
    train, test = ratings.iloc[::2], ratings.iloc[1::2]
    monkeypatch.setattr("streamrec.scorer.SCORE_CELLS", chunk_users * n_items)
    rel = relevant_sets(test)
    seen = {u: g.to_numpy() for u, g in train.groupby("user_id")["movie_id"]}
    known = [u for u in rel.index if u in set(m.user_ids)]
    lists = [top_k(items, m.user_factors[u - 1], 10, seen.get(u), m.user_bias[u - 1])[0] for u in known]
    expected = list_metrics(lists, [rel[u] for u in known], 10)
    got = ranking_metrics(m, train, test, 10)
    assert got.pop("ranking_users") == expected.pop("users") == len(known) > 5
    assert got == pytest.approx(expected)
    counts = train["movie_id"].value_counts().reindex(items.ids, fill_value=0).to_numpy(np.float64)
    popular = []
    for u in known:
        s = counts.copy()
        s[np.isin(items.ids, seen.get(u, []))] = -np.inf
        rows = top_rows(s[None, :], 10)[0]  # the loop this replaced: ties break the same way
        popular.append(items.ids[rows[rows >= 0]])
    assert popularity_metrics(items, np.array(known), train, test, 10) == pytest.approx(
        list_metrics(popular, [rel[u] for u in known], 10)
    )

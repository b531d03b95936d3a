"""Test helpers: what every sink table must equal, recomputed in pandas from the raw events."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from streaming.aggregates import WindowSpec
from streamrec.foldin import fold_in
from streamrec.history import latest_per_pair
from streamrec.sink import open_sink


def table(sink_url: str, sql: str, columns: list[str], params: dict | None = None) -> pd.DataFrame:
    """Rows of SQL text (`:name` parameters) as a DataFrame."""
    with open_sink(sink_url) as s:
        return pd.DataFrame([tuple(r) for r in s.query(sql, params)], columns=columns)


def assert_aggregates_exact(sink_url: str, events: pd.DataFrame, movies: pd.DataFrame, window: WindowSpec):
    """Every aggregate table equals pandas over `events` (history + stream): counts exactly,
    averages to 1e-9. Also checks there are no late events, so trending covers everything."""
    ev = events.assign(rating=events["rating"].astype(np.float64))
    info = movies.set_index("movie_id")

    m = ev.groupby("movie_id").agg(n=("rating", "size"), avg=("rating", "mean"), last=("timestamp", "max"))
    got = table(sink_url, "SELECT movie_id, title, n_ratings, avg_rating, last_event_ts FROM movie_stats",
                ["movie_id", "title", "n", "avg", "last"]).set_index("movie_id").sort_index()  # fmt: skip
    assert got.index.tolist() == m.index.tolist()
    assert got["n"].tolist() == m["n"].tolist()
    np.testing.assert_allclose(got["avg"], m["avg"], atol=1e-9, rtol=0)
    assert got["last"].tolist() == m["last"].tolist()
    assert got["title"].tolist() == [info["title"].get(i) for i in m.index]

    g = ev.merge(movies[["movie_id", "genres"]], on="movie_id").explode("genres")
    g = g.groupby("genres")["rating"].agg(["size", "mean"]).sort_index()
    got = table(sink_url, "SELECT genre, n_ratings, avg_rating FROM genre_stats ORDER BY genre",
                ["genre", "n", "avg"])  # fmt: skip
    assert got["genre"].tolist() == sorted(g.index.tolist())
    assert got["n"].tolist() == g.loc[got["genre"], "size"].tolist()
    np.testing.assert_allclose(got["avg"], g.loc[got["genre"], "mean"], atol=1e-9, rtol=0)

    u = ev.groupby("user_id").agg(n=("rating", "size"), avg=("rating", "mean"),
                                  first=("timestamp", "min"), last=("timestamp", "max"))  # fmt: skip
    got = table(sink_url, "SELECT user_id, n_ratings, avg_rating, first_event_ts, last_event_ts "
                "FROM user_activity ORDER BY user_id", ["user_id", "n", "avg", "first", "last"])  # fmt: skip
    assert got["user_id"].tolist() == u.index.tolist()
    assert got[["n", "first", "last"]].values.tolist() == u[["n", "first", "last"]].values.tolist()
    np.testing.assert_allclose(got["avg"], u["avg"], atol=1e-9, rtol=0)

    h = ev.groupby("rating").size()
    got = table(sink_url, "SELECT rating, n_ratings FROM rating_histogram ORDER BY rating", ["r", "n"])
    assert got["r"].tolist() == h.index.tolist() and got["n"].tolist() == h.tolist()

    late = table(sink_url, "SELECT COALESCE(SUM(late_events), 0) FROM stream_metrics", ["late"])
    assert int(late["late"].iloc[0]) == 0
    ws = ev["timestamp"] - ev["timestamp"] % window.size_s
    t = ev.assign(ws=ws).groupby(["ws", "movie_id"])["rating"].agg(["size", "mean"]).sort_index()
    got = table(sink_url, "SELECT window_start, window_end, movie_id, n_ratings, avg_rating FROM trending "
                "ORDER BY window_start, movie_id", ["ws", "we", "movie_id", "n", "avg"])  # fmt: skip
    assert list(zip(got["ws"], got["movie_id"], strict=True)) == list(t.index)
    assert got["n"].tolist() == t["size"].tolist()
    assert ((got["we"] - got["ws"]) == window.size_s).all()
    np.testing.assert_allclose(got["avg"], t["mean"], atol=1e-9, rtol=0)


def assert_vectors_match_fold_in(
    sink_url: str, model, events: pd.DataFrame, expect_users=None
) -> pd.DataFrame:
    """Streamed vectors (both models) of `model.version` equal a direct NumPy fold-in of each
    user's ratings; their lists are the scorer's top-k and never include a rated movie, nor one
    the model does not serve."""
    vecs = table(sink_url, "SELECT user_id, model_version, n_ratings, vector, bias FROM user_vectors",
                 ["user_id", "version", "n", "vector", "bias"])  # fmt: skip
    vecs = vecs[vecs["version"] == model.version]
    assert len(vecs) > 0
    if expect_users is not None:
        assert set(vecs["user_id"]) == set(expect_users)
    ratings = latest_per_pair(events)
    recs = table(sink_url, "SELECT user_id, rank, movie_id, model_version, predicted_rating "
                 "FROM user_recommendations ORDER BY user_id, rank",
                 ["user_id", "rank", "movie_id", "version", "predicted"])  # fmt: skip
    servable = model.items.ids if model.items.servable is None else model.items.ids[model.items.servable]
    items = table(sink_url, "SELECT movie_id FROM item_vectors WHERE model_version = :v AND n_ratings >= :n",
                  ["movie_id"], {"v": model.version, "n": model.items.min_support})  # fmt: skip
    streamed_servable = set(items["movie_id"])
    for row in vecs.itertuples():
        mine = ratings[ratings["user_id"] == row.user_id]
        assert row.n == len(mine)
        f = fold_in(model.items, mine["movie_id"].to_numpy(), mine["rating"].to_numpy(), model.reg)
        streamed = json.loads(row.vector)
        np.testing.assert_allclose(np.array(streamed["explicit"]), f.vector, atol=1e-5)
        assert abs(row.bias - f.bias) < 1e-9
        users = model.scorer.fold_in_one(mine["movie_id"].to_numpy(), mine["rating"].to_numpy())
        np.testing.assert_allclose(np.array(streamed["ranking"]), users.rank_vectors[0], atol=1e-5)
        user_recs = recs[recs["user_id"] == row.user_id]
        assert len(user_recs) > 0 and (user_recs["version"] == model.version).all()
        ids, _, predicted = model.scorer.top_k(users, len(user_recs), [mine["movie_id"].to_numpy()])[0]
        # Movies streamed in since the model may rank among the version's own (item fold-in);
        # the version's own servable movies keep their exact order and predicted ratings.
        from_base = user_recs["movie_id"].isin(servable).to_numpy()
        assert user_recs["movie_id"][from_base].tolist() == ids[: from_base.sum()].tolist()
        np.testing.assert_allclose(user_recs["predicted"][from_base], predicted[: from_base.sum()], atol=1e-6)
        assert set(user_recs["movie_id"][~from_base]) <= streamed_servable
        assert not set(user_recs["movie_id"]) & set(mine["movie_id"])
    return vecs


def fresh_postgres_db(server_url: str) -> str:
    """A new, empty database on the session's PostgreSQL server (tests never share tables)."""
    import uuid

    import psycopg

    name = f"t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return server_url.rsplit("/", 1)[0] + "/" + name


def assert_item_vectors_counted(
    sink_url: str, model, history: pd.DataFrame, live: pd.DataFrame
) -> pd.DataFrame:
    """Every movie the version does not serve from training and that a rater with a vector rated
    has its row of streamed vectors, counting each rater once: the live ones, plus the training
    ones of a known movie below --min-support (nothing lost or counted twice across restarts)."""
    rows = table(sink_url, "SELECT movie_id, model_version, n_ratings, source FROM item_vectors "
                 "WHERE source = 'stream'", ["movie_id", "version", "n", "source"])  # fmt: skip
    assert (rows["version"] == model.version).all()
    pos, known = model.items.rows(live["movie_id"].to_numpy())
    servable = known.copy()
    servable[known] = model.items.servable[pos[known]]
    streamed = set(live["movie_id"][~servable])
    raters = latest_per_pair(pd.concat([history, live], ignore_index=True))
    raters = raters[raters["movie_id"].isin(streamed)].groupby("movie_id").size()
    assert set(rows["movie_id"]) <= streamed
    got = rows.set_index("movie_id")["n"]
    assert (got == raters.reindex(got.index)).all(), (got - raters.reindex(got.index)).loc[lambda d: d != 0]
    return rows

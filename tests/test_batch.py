"""Batch layer against a real local Spark: training quality, fold-in property, recommendations,
similar movies, the model store's atomic publish, gate and rollback, and the OLAP report."""

from __future__ import annotations

import json
import shutil
import signal

import numpy as np
import pandas as pd
import pytest

from batch.report import run_queries
from serving.recommend import (
    parse_rated,
    read_ratings_file,
    recommend,
    recommend_many,
    similar_candidates,
    similar_exact,
    similar_lsh,
)
from streamrec.cli import main
from streamrec.errors import InvalidRequest, StreamrecError
from streamrec.foldin import fold_in, fold_in_many
from streamrec.history import latest_per_pair
from streamrec.model_store import ModelStore
from streamrec.movielens import load_movies, load_ratings, load_tags
from streamrec.ranking import implicit_fold_in, implicit_fold_in_many
from streamrec.settings import BUNDLED_DATA

pytestmark = pytest.mark.integration


def test_training_meets_the_rmse_target_and_records_everything(trained):
    res, model = trained
    m = res["metrics"]
    assert m["rmse"] <= 0.86, m
    assert 0 < m["mae"] < m["rmse"]
    assert m["cold_start_dropped"] > 0 and m["holdout_rows"] > 19_000
    for key in ("precision_at_10", "recall_at_10", "ndcg_at_10", "map_at_10"):
        assert 0 < m[key] < 1, key
        # the served lists (ranking model) beat the explicit model's own lists by far
        assert m[key] > 1.5 * m["explicit_lists"][key], key
    assert m["ndcg_at_10"] > 1.3 * m["popularity"]["ndcg_at_10"]  # loose floor: lists beat the top chart
    assert m["popularity"]["users"] == m["users"]  # the same users and candidates
    assert model.meta.ranking.rank == model.ranking.rank
    blend = model.meta.blend
    assert len(blend["n"]) == len(blend["weights"]) and blend["validation"]
    assert res["counts"] == {"rating_events": 100_836, "ratings": 100_836, "users": 610, "movies": 9724}
    assert res["newest_event_ts"] == 1_537_799_250
    assert model.meta.raw["params"]["rank"] == model.items.rank == 20
    assert len(model.user_ids) == 610 and len(model.items.ids) == 9724


@pytest.mark.parametrize("impl", ["reference", "vectorised"])
def test_fold_in_reproduces_every_trained_user_vector(trained, history, impl):
    _, model = trained
    if impl == "vectorised":
        users, vectors, biases, _ = fold_in_many(
            model.items, history.user_id, history.movie_id, history.rating, model.reg
        )
    else:
        users, vectors, biases = [], [], []
        for u, g in history.groupby("user_id"):
            f = fold_in(model.items, g.movie_id.to_numpy(), g.rating.to_numpy(), model.reg)
            users.append(u), vectors.append(f.vector), biases.append(f.bias)
        users, vectors, biases = np.array(users), np.stack(vectors), np.array(biases)
    assert np.array_equal(users, model.user_ids)
    assert np.max(np.abs(vectors - model.user_factors)) < 1e-4
    assert np.max(np.abs(biases - model.user_bias)) < 1e-9


@pytest.mark.parametrize("impl", ["reference", "vectorised"])
def test_ranking_fold_in_reproduces_every_trained_user_vector(trained, history, impl):
    """Spark's implicit objective with the item factors fixed gives back Spark's user factors."""
    _, model = trained
    pos, known = model.items.rows(history.movie_id.to_numpy())
    assert known.all()
    if impl == "vectorised":
        users, vectors, _ = implicit_fold_in_many(model.ranking, history.user_id, pos, history.rating)
    else:
        users, vectors = [], []
        for u, g in history.assign(pos=pos).groupby("user_id"):
            users.append(u), vectors.append(implicit_fold_in(model.ranking, g.pos.to_numpy(), g.rating)[0])
        users, vectors = np.array(users), np.stack(vectors)
    assert np.array_equal(users, model.user_ids)
    assert np.max(np.abs(vectors - model.rank_user_factors)) < 1e-4


def test_parquet_factors_match_the_numpy_copy(trained, spark):
    _, model = trained
    items = spark.read.parquet(str(model.path / "item_factors")).toPandas().sort_values("id")
    assert list(items.columns) == ["id", "features"]
    assert np.array_equal(items["id"].to_numpy(), model.items.ids)
    np.testing.assert_allclose(np.stack(items["features"]), model.items.factors, atol=0)


def test_recommendations_never_contain_rated_or_rarely_rated_movies(trained, history, movies):
    _, model = trained
    support = history.movie_id.value_counts()
    min_support = model.meta.min_support
    assert min_support == 10
    assert model.items.servable.sum() == (support >= min_support).sum()
    for user in history.user_id.drop_duplicates().sample(60, random_state=1):
        recs = recommend(model, int(user), history[history.user_id == user], movies, k=20)
        assert recs.source == "model" and len(recs.items) == 20
        rated = set(history.loc[history.user_id == user, "movie_id"])
        assert not rated & set(recs.items.movie_id)
        assert (support[recs.items.movie_id] >= min_support).all()
        assert recs.items.predicted_rating.between(0.5, 5.0).all()
        assert recs.items.score.is_monotonic_decreasing


def test_new_user_with_rated_movies_gets_personal_fold_in_recommendations(trained, history, movies):
    _, model = trained
    rated = parse_rated("260:5,1196:5,1210:4.5,2571:4")  # Star Wars fan
    recs = recommend(model, None, None, movies, k=10, rated=rated)
    assert recs.source == "fold-in"
    assert not {260, 1196, 1210, 2571} & set(recs.items.movie_id)
    pop = recommend(model, None, None, movies, k=10)
    assert pop.source == "popularity"
    assert list(recs.items.movie_id) != list(pop.items.movie_id)
    with pytest.raises(StreamrecError, match="outside 0.5..5.0"):
        parse_rated("1:7")


def test_a_user_with_ratings_newer_than_the_model_is_folded_in_on_the_spot(trained, history, movies):
    _, model = trained
    user = int(history.user_id.iloc[0])
    newer = pd.DataFrame({"user_id": [user], "movie_id": [1], "rating": [0.5],
                          "timestamp": [model.meta.newest_event_ts + 60]})  # fmt: skip
    grown = pd.concat([history[history.movie_id.ne(1) | history.user_id.ne(user)], newer])
    recs = recommend(model, user, grown[grown.user_id == user], movies, k=5)
    assert recs.source == "fold-in"
    mine = grown[grown.user_id == user]
    f = model.scorer.fold_in_one(mine.movie_id.to_numpy(), mine.rating.to_numpy())
    stored = model.stored_users(user)
    assert not np.allclose(f.rank_vectors, stored.rank_vectors, atol=1e-4)  # the new rating moved it
    assert 1 not in set(recs.items.movie_id)


def test_cold_start_is_the_most_popular_movies_with_genre_filter(trained, history, movies):
    _, model = trained
    recs = recommend(model, 10_000_000, None, movies, k=5, genres=["Horror"])
    assert recs.source == "popularity"
    horror = set(movies[movies.genres.map(lambda g: "Horror" in g)].movie_id)
    assert set(recs.items.movie_id) <= horror
    counts = history[history.movie_id.isin(horror)].movie_id.value_counts()
    assert counts[recs.items.movie_id].tolist() == counts.iloc[:5].tolist()  # ties may swap


def test_ratings_file_folds_in_every_user_like_recommend_does(trained, history, movies, tmp_path):
    _, model = trained
    f = tmp_path / "batch.csv"
    f.write_text(
        "user_id,movie_id,rating\n7,260,5\n7,1196,4.5\n99999999,1,4\n99999999,999999,3\n5,999999,5\n"
    )
    lists = recommend_many(model, read_ratings_file(f), k=5)
    assert recommend_many(model, read_ratings_file(f), k=5, chunk=1) == lists  # chunking changes nothing
    by_user = {r["user_id"]: r for r in lists}
    assert set(by_user) == {5, 7, 99999999}
    assert by_user[5]["source"] == "popularity"  # no movie known to the model
    one = recommend(model, None, None, movies, k=5, rated=parse_rated("260:5,1196:4.5"))
    assert [i["movie_id"] for i in by_user[7]["items"]] == list(one.items.movie_id)
    assert [i["predicted_rating"] for i in by_user[7]["items"]] == list(one.items.predicted_rating)


def test_similar_movies_agree_on_an_obvious_case(trained, spark):
    _, model = trained
    cos, _ = similar_exact(model, 260, 5, "cosine")  # Star Wars IV
    euc, dist = similar_exact(model, 260, 5, "euclidean")
    lsh, lsh_dist = similar_lsh(spark, model, 260, 5)
    sequels = {1196, 1210}  # The Empire Strikes Back, Return of the Jedi
    assert set(cos[:2]) == set(euc[:2]) == sequels and lsh[0] in sequels
    assert 260 not in set(cos) | set(euc) | set(lsh)
    assert np.all(np.diff(dist) >= 0) and np.all(np.diff(lsh_dist) >= 0)
    assert len(set(lsh) & set(euc)) >= 3  # LSH is approximate, but not far off here
    with pytest.raises(StreamrecError, match="unknown to model"):
        similar_exact(model, 999_999_999, 5, "cosine")


def test_similar_min_count_drops_rare_movies_and_keeps_the_exact_order(trained, spark, history):
    _, model = trained
    counts = history.movie_id.value_counts()
    assert np.array_equal(model.items.support, counts.reindex(model.items.ids).to_numpy())
    mask = similar_candidates(model)  # default: the model's servable set (>= 10 training ratings)
    assert np.array_equal(mask, model.items.support >= 10)
    assert similar_candidates(model, 20).sum() == (counts >= 20).sum()
    everything, _ = similar_exact(model, 1, len(model.items.ids), "cosine")
    kept, _ = similar_exact(model, 1, 10, "cosine", mask)
    assert list(kept) == [m for m in everything if counts[m] >= 10][:10]
    lsh, _ = similar_lsh(spark, model, 1, 10, candidates=mask)
    assert len(lsh) > 0 and (counts[lsh] >= 10).all() and 1 not in set(lsh)
    none, _ = similar_exact(model, 1, 10, "euclidean", np.zeros(len(model.items.ids), bool))
    assert len(none) == 0


def test_report_figures_equal_a_pandas_recomputation(spark):
    res = run_queries(spark, BUNDLED_DATA, min_count=50, top=10)
    ratings, _ = load_ratings(BUNDLED_DATA)
    movies = load_movies(BUNDLED_DATA)
    tags = load_tags(BUNDLED_DATA)
    o = res["overview"].iloc[0]
    assert (o.users, o.movies, o.rated_movies, o.never_rated_movies) == (610, 9742, 9724, 18)
    assert o.ratings == len(ratings) and o.tags == len(tags)
    genres = movies.explode("genres").genres.value_counts()
    assert len(res["movies_per_genre"]) == 20 and "(no genres listed)" in set(genres.index)
    assert dict(zip(res["movies_per_genre"].genre, res["movies_per_genre"].movies, strict=True)) == (
        genres.to_dict()
    )
    dist = ratings.rating.value_counts().sort_index()
    assert res["rating_distribution"].n_ratings.tolist() == dist.tolist()
    top = ratings.movie_id.value_counts().head(10)
    assert res["most_rated_movies"].n_ratings.tolist() == top.tolist()
    joined = ratings.merge(movies, on="movie_id").explode("genres")
    g = joined.groupby("genres").rating.mean()
    for row in res["genre_ratings"].itertuples():
        assert row.avg_rating == pytest.approx(g[row.genre], abs=1e-4)
    per_user = ratings.groupby("user_id").size()
    pct = res["user_activity_percentiles"].iloc[0]
    assert pct["min"] == per_user.min() and pct["max"] == per_user.max()
    assert pct["p50"] == pytest.approx(per_user.quantile(0.5))
    years = pd.to_datetime(ratings.timestamp, unit="s").dt.year.value_counts().sort_index()
    assert res["ratings_per_year"].n_ratings.tolist() == years.tolist()
    mu = ratings.rating.mean()
    s = ratings.groupby("movie_id").rating.agg(["sum", "count"])
    s = s[s["count"] >= 50]
    bayes = ((50 * mu + s["sum"]) / (50 + s["count"])).sort_values(ascending=False)
    assert res["best_movies_bayesian"].movie_id.iloc[0] == bayes.index[0]
    assert res["most_tagged_movies"].n_tags.iloc[0] == tags.movie_id.value_counts().iloc[0]


# -- model store ---------------------------------------------------------------------------------


@pytest.fixture
def store_copy(trained, tmp_path, monkeypatch):
    """A private STREAMREC_HOME whose store holds a copy of the trained model as CURRENT."""
    _, model = trained
    monkeypatch.setenv("STREAMREC_HOME", str(tmp_path))
    store = ModelStore()
    store.root.mkdir(parents=True)
    shutil.copytree(model.path, store.root / model.version)
    store.set_current(model.version)
    return store, model.version


def _meta_of(store: ModelStore, version: str) -> dict:
    return {
        k: v for k, v in store.metadata(version).to_dict().items() if k not in ("version", "files", "format")
    }


def test_crash_before_rename_or_before_switch_leaves_current_usable(store_copy):
    store, v1 = store_copy
    staged = store.staging_dir()  # a crash here leaves only a hidden temp directory
    (staged / "factors.npz").write_bytes(b"partial")
    assert store.versions() == [v1] and store.current_version() == v1
    shutil.copy(store.root / v1 / "factors.npz", staged / "factors.npz")
    v2 = store.publish(staged, _meta_of(store, v1), make_current=False)  # crash before CURRENT
    assert store.current_version() == v1 and store.load().version == v1
    assert store.check(v2) is None
    store.rollback(v2)
    assert store.load().version == v2


def test_incomplete_or_corrupt_versions_are_never_selected(store_copy, capsys):
    store, v1 = store_copy
    bad = store.root / "v0099"
    shutil.copytree(store.root / v1, bad)
    with open(bad / "factors.npz", "ab") as f:
        f.write(b"garbage")
    assert "corrupt version" in store.check("v0099")
    with pytest.raises(StreamrecError, match="corrupt"):
        store.rollback("v0099")
    (store.root / "v0100").mkdir()
    assert "incomplete" in store.check("v0100")
    assert store.current_version() == v1
    assert main(["model", "list"]) == 0
    out = capsys.readouterr().out
    assert "v0099  UNUSABLE" in out and f"* {v1}" in out
    assert main(["model", "rollback", "v0100"]) == 1
    assert "incomplete" in capsys.readouterr().err


def test_quality_gate_refuses_a_worse_model_and_force_overrides(store_copy, capsys):
    store, v1 = store_copy
    worse = ["train", "--no-bias", "--rank", "2", "--iters", "1", "--reg", "0.01", "--json"]
    assert main(worse) == 3
    assert "not published" in capsys.readouterr().err
    assert store.current_version() == v1 and store.versions() == [v1]
    assert main([*worse, "--force"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["gate"]["passed"] is False and res["metrics"]["rmse"] > 0.9
    assert store.current_version() == res["version"] != v1
    assert main(["model", "rollback", v1]) == 0
    assert store.current_version() == v1


def test_quality_gate_refuses_worse_lists_even_with_a_good_rmse(store_copy, capsys):
    store, v1 = store_copy
    assert main(["train", "--ranking-rank", "1", "--ranking-iters", "2", "--json"]) == 3
    err = capsys.readouterr().err
    assert "not published: holdout NDCG@10" in err and f"worse than {v1}" in err
    assert store.current_version() == v1 and store.versions() == [v1]


def test_prune_keeps_the_newest_versions_and_current(store_copy):
    store, v1 = store_copy
    for _ in range(4):
        staged = store.staging_dir()
        shutil.copy(store.root / v1 / "factors.npz", staged / "factors.npz")
        store.publish(staged, _meta_of(store, v1), make_current=False)
    before = store.versions()
    assert len(before) == 5 and before[0] == v1
    removed = store.prune(keep=2)
    assert removed == before[1:3]  # the oldest, except CURRENT
    assert store.versions() == [v1, *before[-2:]]


def test_time_split_holds_out_the_newest_ratings():
    from batch.train import split

    ratings = load_ratings(BUNDLED_DATA)[0]
    train, test = split(ratings, "time", 0.2, 42)
    assert len(test) == len(ratings) - int(0.8 * len(ratings))
    assert train.timestamp.max() <= test.timestamp.min()
    with pytest.raises(InvalidRequest, match="random or time"):
        split(ratings, "weekly", 0.2, 42)


def test_tuning_scores_every_candidate_and_picks_the_best(spark):
    from batch.train import Params, tune

    ratings = latest_per_pair(load_ratings(BUNDLED_DATA)[0]).sample(20_000, random_state=3)
    grid = {"rank": [4], "reg": [0.01, 0.3], "iters": [4]}
    best, rows = tune(spark, ratings, grid, Params(), folds=0, seed=42)
    assert [(r["rank"], r["reg"], r["iters"]) for r in rows] == [(4, 0.01, 4), (4, 0.3, 4)]
    assert best.reg == min(rows, key=lambda r: r["rmse"])["reg"]
    assert all(np.isfinite(r["rmse"]) for r in rows)


def test_retrain_failure_leaves_current_in_place(store_copy, capsys, caplog):
    store, v1 = store_copy
    worse = ["retrain", "--once", "--no-bias", "--rank", "2", "--iters", "1", "--reg", "0.01"]
    handlers = [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)]
    assert main(worse) == 1
    assert [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)] == handlers  # its own ones are gone
    # progress goes through logging (pytest's capture here; stderr under the CLI), the summary to stdout
    assert "failed, CURRENT unchanged" in caplog.text and "0 published" in capsys.readouterr().out
    assert store.current_version() == v1 and store.versions() == [v1]


def test_report_writes_csv_and_charts(spark, tmp_path):
    from batch.report import charts

    res = run_queries(spark, BUNDLED_DATA)
    pngs = charts(res, tmp_path)
    assert len(pngs) == 4
    for png in pngs:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_a_trained_version_maps_content_to_the_ranking_model_for_unrated_movies(trained, movies):
    res, model = trained
    content = model.content
    assert content is not None and content.rank == model.ranking.rank
    assert res["content"]["movies_fitted"] == len(model.items.ids) and res["content"]["validation"]["r2"] > 0
    assert content.spec.genres and content.spec.tags  # the bundled layout has tags.csv
    unrated = movies[~movies["movie_id"].isin(model.items.ids)]  # in movies.csv, never rated
    ids, vectors = content.vectors(unrated, load_tags(BUNDLED_DATA))
    assert len(ids) == len(unrated) > 0 and vectors.shape == (len(ids), model.ranking.rank)
    assert np.isfinite(vectors).all() and (np.abs(vectors).sum(1) > 0).all()

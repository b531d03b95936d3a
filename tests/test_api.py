"""The HTTP API with FastAPI's TestClient: a real trained model, a real SQLite sink filled by the
stream's own writers; every endpoint, its errors (4xx with a JSON reason) and the hot swap."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from serving.api import create_app
from serving.service import ServeConfig
from streamrec.events import validate
from streamrec.kafka_local import free_port_pair
from streamrec.model_store import ModelStore
from tests.serving_support import fill_sink, model_store_copy, store_stream_list

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def api(trained, history, movies, tmp_path_factory):
    """A server over a copy of the trained model's store (so a hot swap here touches no other test)
    and a sink holding the whole history's aggregates; no broker (a closed port)."""
    _, model = trained
    home = tmp_path_factory.mktemp("api-home")
    model_store_copy(home, model)
    url = f"sqlite:///{home / 'sink.db'}"
    fill_sink(url, history, movies)
    cfg = ServeConfig.at_home(home, url, bootstrap=f"127.0.0.1:{free_port_pair()}")
    with TestClient(create_app(cfg)) as client:
        client.cfg = cfg
        yield client


def test_known_user_gets_a_personal_list_without_their_rated_movies(api, history, trained):
    _, model = trained
    user = int(history.user_id.iloc[0])
    r = api.get(f"/recommendations/{user}", params={"k": 7})
    assert r.status_code == 200
    body = r.json()
    assert body["source"] == "model" and body["model_version"] == model.version and body["user_id"] == user
    ids = [i["movie_id"] for i in body["items"]]
    assert len(ids) == 7 and not set(ids) & set(history.loc[history.user_id == user, "movie_id"])
    scores = [i["score"] for i in body["items"]]
    assert scores == sorted(scores, reverse=True)
    first = body["items"][0]
    assert first["title"] and first["genres"] and 0.5 <= first["predicted_rating"] <= 5.0
    # the same list as the scorer's top-k over the stored vectors
    stored = model.stored_users(user)
    expected, _, _ = model.scorer.top_k(
        stored, 7, [history.loc[history.user_id == user, "movie_id"].to_numpy()]
    )[0]
    assert ids == expected.tolist()


def test_the_streams_list_is_served_when_fresh_for_current_and_ignored_when_stale(api, trained):
    _, model = trained
    store_stream_list(api.cfg.sink_url, model, 777_001, [1, 2, 3, 4, 5])
    body = api.get("/recommendations/777001", params={"k": 3}).json()
    assert body["source"] == "stream" and [i["movie_id"] for i in body["items"]] == [1, 2, 3]
    assert body["items"][0]["title"] == "Toy Story (1995)"
    # more than the stream kept, or a genre filter: computed now instead
    assert api.get("/recommendations/777001", params={"k": 8}).json()["source"] != "stream"
    # a list from an older model version is not served after a swap
    store_stream_list(api.cfg.sink_url, model, 777_002, [1, 2, 3], version="v0000")
    assert api.get("/recommendations/777002", params={"k": 3}).json()["source"] == "popularity"


def test_never_seen_user_gets_the_cold_start_list_and_genres_filter_it(api, history, movies):
    body = api.get("/recommendations/2000000000", params={"k": 5, "genres": "Horror"}).json()
    assert body["source"] == "popularity" and len(body["items"]) == 5
    assert all("Horror" in i["genres"] for i in body["items"])
    horror = set(movies[movies.genres.map(lambda g: "Horror" in g)].movie_id)
    counts = history[history.movie_id.isin(horror)].movie_id.value_counts()
    assert [counts[i["movie_id"]] for i in body["items"]] == counts.iloc[:5].tolist()


@pytest.mark.parametrize(
    "path",
    ["/recommendations/0", "/recommendations/-5", "/recommendations/2147483648", "/recommendations/abc",
     "/recommendations/1?k=0", "/recommendations/1?k=1001", "/recommendations/1?genres=Nope",
     "/movies/260/similar?metric=manhattan", "/stats/movies?order=title", "/stats/trending?window=soon",
     "/movies?q=", "/stats/stream?batches=0"],
)  # fmt: skip
def test_malformed_requests_get_a_4xx_with_a_json_reason(api, path):
    r = api.get(path)
    assert 400 <= r.status_code < 500, (path, r.status_code)
    assert r.headers["content-type"].startswith("application/json") and r.json()["detail"]


def test_anonymous_fold_in_ranks_the_sequels_and_stores_nothing(api):
    payload = {"ratings": [{"movie_id": 260, "rating": 5}, {"movie_id": 1196, "rating": 5}], "k": 10}
    body = api.post("/recommendations", json=payload).json()
    assert body["source"] == "anonymous" and body["user_id"] is None
    ids = [i["movie_id"] for i in body["items"]]
    assert 1210 in ids and not {260, 1196} & set(ids)  # Return of the Jedi, not the rated two
    empty = api.post("/recommendations", json={"ratings": [], "k": 3}).json()
    assert empty["source"] == "popularity"
    bad = api.post("/recommendations", json={"ratings": [{"movie_id": 1, "rating": 7}]})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][-1] == "rating"
    off_step = api.post("/recommendations", json={"ratings": [{"movie_id": 1, "rating": 3.7}]})
    assert off_step.status_code == 422 and "multiple of 0.5" in off_step.json()["detail"][0]["msg"]
    assert api.post("/recommendations", content=b"{not json").status_code == 422


def test_similar_movies_by_each_metric(api):
    for metric in ("cosine", "euclidean", "lsh"):
        body = api.get("/movies/260/similar", params={"metric": metric, "k": 5}).json()
        ids = [i["movie_id"] for i in body["items"]]
        assert body["metric"] == metric and len(ids) == 5 and 260 not in ids
        assert {1196, 1210} & set(ids), metric
        key = "similarity" if metric == "cosine" else "distance"
        values = [i[key] for i in body["items"]]
        assert values == sorted(values, reverse=key == "similarity")
    exact = [i["movie_id"] for i in api.get("/movies/260/similar?metric=euclidean&k=10").json()["items"]]
    approx = [i["movie_id"] for i in api.get("/movies/260/similar?metric=lsh&k=10").json()["items"]]
    assert len(set(exact) & set(approx)) >= 8  # LSH recall on this catalogue
    assert api.get("/movies/999999/similar").status_code == 404


def test_movies_search_detail_and_users(api, history):
    hits = api.get("/movies", params={"q": "star wars", "limit": 3}).json()
    assert [h["movie_id"] for h in hits][:2] == [260, 1196]  # most rated first
    m = api.get("/movies/260").json()
    assert m["title"].startswith("Star Wars") and m["stats"]["n_ratings"] == int(
        (history.movie_id == 260).sum()
    )
    assert api.get("/movies/999999").status_code == 404
    u = api.get("/users/1").json()
    assert u["rated_movies"] == int((history.user_id == 1).sum()) == u["activity"]["n_ratings"]
    r = api.get("/users/1999999999")
    assert r.status_code == 404 and "unknown" in r.json()["detail"]


def test_live_stats_equal_the_aggregates(api, history, movies):
    hist = api.get("/stats/histogram").json()
    assert sum(h["n_ratings"] for h in hist) == len(history)
    assert [h["rating"] for h in hist] == sorted(history.rating.unique().tolist())
    top = api.get("/stats/movies", params={"limit": 3}).json()
    counts = history.movie_id.value_counts()
    assert [t["n_ratings"] for t in top] == counts.iloc[:3].tolist()
    best = api.get("/stats/movies", params={"order": "avg_rating", "min_count": 100, "limit": 5}).json()
    assert all(b["n_ratings"] >= 100 for b in best)
    assert [b["avg_rating"] for b in best] == sorted((b["avg_rating"] for b in best), reverse=True)
    genres = api.get("/stats/genres").json()
    rated = history.merge(movies, on="movie_id").explode("genres")
    assert {g["genre"]: g["n_ratings"] for g in genres} == rated.genres.value_counts().to_dict()
    trending = api.get("/stats/trending", params={"limit": 4}).json()
    start = trending["window_start"]
    week = history[history.timestamp - history.timestamp % (7 * 86400) == start]
    assert (
        start
        and [t["n_ratings"] for t in trending["items"]] == week.movie_id.value_counts().iloc[:4].tolist()
    )
    same = api.get("/stats/trending", params={"window": str(start), "limit": 4}).json()
    assert same["items"] == trending["items"] and same["window_end"] == start + 7 * 86400


def test_stream_stats_and_dead_letters(api):
    s = api.get("/stats/stream", params={"batches": 2}).json()
    assert set(s["queries"]) == {"aggregates", "foldin"} and s["dead_letters"] == 2
    agg = s["queries"]["aggregates"]
    assert agg["last_batch"] == 2 and agg["batches"] == 2 and agg["input_rows"] == 500
    assert agg["latency_p50_ms"] == pytest.approx(301.5) and 901 <= agg["latency_p95_ms"] <= 902
    assert agg["events_per_s"] == pytest.approx(300.0, rel=1e-6)  # 300 rows one second after the last batch
    dead = api.get("/stats/dead-letters").json()
    assert [d["reason"] for d in dead] == ["not a JSON object", "not JSON"]


def test_models_list_and_detail(api, trained):
    _, model = trained
    models = api.get("/models").json()
    assert [m["version"] for m in models if m["current"]] == [model.version]
    assert models[0]["ndcg_at_10"] == pytest.approx(model.meta.metrics["ndcg_at_10"])
    detail = api.get(f"/models/{model.version}").json()
    assert detail["params"]["ranking"]["rank"] == model.ranking.rank and "files" not in detail
    assert api.get("/models/v9999").status_code == 404
    assert api.get("/models/.tmp-1").status_code == 404  # a staging directory is no version


def test_events_are_checked_by_the_streams_rules_and_need_a_broker(api):
    corpus = [
        {"user_id": 1, "movie_id": 2, "rating": 9.5, "timestamp": 1500000000},
        {"user_id": "x", "movie_id": 2, "rating": 4.0, "timestamp": 1500000000},
        {"user_id": 1, "movie_id": 2, "rating": 3.0, "timestamp": 5},
        {"user_id": 1, "movie_id": 0, "rating": 3.0, "timestamp": 1500000000},
        {"user_id": True, "movie_id": 2, "rating": 3.0, "timestamp": 1500000000},
        {"movie_id": 2, "rating": 3.0},
        [1, 2],
        "text",
    ]
    for event in corpus:
        r = api.post("/events", json=[event])
        _, reason = validate(json.dumps(event))
        assert r.status_code == 422 and r.json()["detail"] == f"event 0: {reason}", event
    assert api.post("/events", json=[]).status_code == 422
    good = {"user_id": 5, "movie_id": 1, "rating": 4.5}  # no timestamp: the time of the request
    r = api.post("/events", json=good)
    assert r.status_code == 503 and "Kafka" in r.json()["detail"]  # no broker at that port


def test_health_readiness_and_metrics(api, trained):
    _, model = trained
    assert api.get("/healthz").json()["ok"] is True
    r = api.get("/readyz")
    assert r.status_code == 503
    checks = r.json()["checks"]
    assert checks["model"] == {"ok": True, "version": model.version} and checks["sink"]["ok"]
    assert checks["broker"]["ok"] is False
    api.get("/movies/260")
    assert api.get("/recommendations/1", params={"k": 3}).status_code == 200  # loads the ratings index
    text = api.get("/metrics").text
    assert 'streamrec_http_requests_total{method="GET",route="/movies/{movie_id}",status="200"}' in text
    assert f'streamrec_model_info{{version="{model.version}"}} 1.0' in text
    assert 'streamrec_stream_latency_p95_seconds{query="aggregates"} 0.902' in text
    assert "streamrec_dead_letters 2.0" in text
    index = api.app.state.service.lists.ratings_index()
    assert len(index) > 0 and f"streamrec_ratings_index_rows {float(len(index))}" in text
    assert f"streamrec_ratings_index_files {float(index.files)}" in text


def test_dashboard_and_its_vendored_chart_library_are_served(api):
    page = api.get("/")
    assert page.status_code == 200 and '<canvas id="chart-throughput"' in page.text
    js = api.get("/static/vendor/chart.umd.min.js")
    assert js.status_code == 200 and "Chart.js v4" in js.text[:200]
    assert api.get("/static/app.js").status_code == 200
    assert api.get("/openapi.json").json()["paths"]["/recommendations/{user_id}"]


def test_a_new_current_version_is_served_without_a_restart(api, trained):
    _, model = trained
    root = api.cfg.model_root
    store = ModelStore(root)
    meta = json.loads((root / model.version / "metadata.json").read_text())
    staged = store.staging_dir()
    for f in (model.path).iterdir():
        if f.name != "metadata.json":
            (shutil.copytree if f.is_dir() else shutil.copy2)(f, staged / f.name)
    lists = api.app.state.service.lists
    before = lists.current()
    new = store.publish(staged, {k: v for k, v in meta.items() if k not in ("version", "files")})
    try:
        body = api.get("/recommendations/1", params={"k": 3}).json()
        assert body["model_version"] == new != model.version
        assert [m["version"] for m in api.get("/models").json() if m["current"]] == [new]
        # Same data: the swap kept the titles and the ratings index (rebuilding it read all the
        # history while requests waited); a version on other data would rebuild them.
        after = lists.current()
        assert after.base.version == new and after.ratings is before.ratings and after.movies is before.movies
    finally:
        store.set_current(model.version)


def test_lsh_finds_most_exact_neighbours_on_random_factors():
    from serving.lsh import RandomProjectionLSH

    rng = np.random.default_rng(3)
    factors = rng.standard_normal((2000, 16)).astype(np.float32)
    lsh = RandomProjectionLSH(factors, bucket_length=2.0, tables=5, seed=1)
    recalls = []
    for row in rng.choice(2000, 20, replace=False):
        rows, dist = lsh.query(int(row), 10)
        exact = np.argsort(np.linalg.norm(factors - factors[row], axis=1))[1:11]
        assert row not in rows and np.all(np.diff(dist) >= 0)
        np.testing.assert_allclose(dist, np.linalg.norm(factors[rows] - factors[row], axis=1), rtol=1e-5)
        recalls.append(len(set(rows) & set(exact)) / 10)
    assert 0.5 <= np.mean(recalls) <= 1.0
    mask = np.zeros(2000, bool)
    mask[:50] = True
    rows, _ = lsh.query(100, 10, mask)
    assert set(rows) <= set(range(50))
    assert pd.Series(rows).is_unique


def test_the_cli_serves_a_known_user_exactly_as_the_api(api, trained, monkeypatch, capsys):
    from streamrec.cli import main

    _, model = trained
    monkeypatch.setenv("STREAMREC_HOME", str(api.cfg.model_root.parent))
    store_stream_list(api.cfg.sink_url, model, 777_101, [318, 296, 593])
    for user, k, source in ((777_101, 3, "stream"), (1, 5, "model")):
        assert (
            main(["recommend", "--user", str(user), "-k", str(k), "--sink", api.cfg.sink_url, "--json"]) == 0
        )
        cli = json.loads(capsys.readouterr().out)
        http = api.get(f"/recommendations/{user}", params={"k": k}).json()
        assert cli["source"] == http["source"] == source and cli["model_version"] == http["model_version"]
        assert [i["movie_id"] for i in cli["items"]] == [i["movie_id"] for i in http["items"]]


def test_status_shows_the_streams_latency_now(api, monkeypatch, capsys):
    from streamrec.cli import main

    monkeypatch.setenv("STREAMREC_HOME", str(api.cfg.model_root.parent))
    assert main(["status", "--sink", api.cfg.sink_url, "--bootstrap-servers", "localhost:1"]) == 0
    out = capsys.readouterr().out
    # fill_sink wrote batches 0..2 with p50 300..302 ms and p95 900..902 ms per query
    assert (
        "aggregates: last batch 2, 600 rows, latency over the last 3 batches p50 301 ms / p95 902 ms" in out
    )


def test_the_cli_lsh_runs_in_numpy_and_answers_like_the_api(api, monkeypatch, capsys):
    from streamrec.cli import main

    monkeypatch.setenv("STREAMREC_HOME", str(api.cfg.model_root.parent))
    assert main(["similar", "--movie", "260", "--metric", "lsh", "-k", "10", "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)
    http = api.get("/movies/260/similar", params={"metric": "lsh", "k": 10}).json()
    assert [i["movie_id"] for i in cli["items"]] == [i["movie_id"] for i in http["items"]]
    assert 0.5 <= cli["recall_vs_exact"] <= 1.0


def test_every_listed_movie_says_why_and_the_parts_add_up_to_its_score(api, history):
    user = int(history.user_id.iloc[0])
    mine = set(history.loc[history.user_id == user, "movie_id"])
    body = api.get(f"/recommendations/{user}", params={"k": 5, "explain": "true"}).json()
    assert len(body["items"]) == 5
    for item in body["items"]:
        e = item["explanation"]
        total = e["prior"] + sum(b["contribution"] for b in e["because"]) + e["rest"]
        assert total == pytest.approx(item["score"], abs=1e-3)  # scores are rounded to 4 decimals
        assert 1 <= len(e["because"]) <= 3 and {b["movie_id"] for b in e["because"]} <= mine
        assert all(b["title"] for b in e["because"])
    plain = api.get(f"/recommendations/{user}", params={"k": 5}).json()["items"][0]
    assert plain.get("explanation") is None  # only when asked
    payload = {
        "ratings": [{"movie_id": 260, "rating": 5}, {"movie_id": 1196, "rating": 5}],
        "k": 5,
        "explain": True,
    }
    anon = api.post("/recommendations", json=payload).json()
    jedi = next(i for i in anon["items"] if i["movie_id"] == 1210)
    assert {b["movie_id"] for b in jedi["explanation"]["because"]} <= {260, 1196}
    cold = api.post("/recommendations", json={"ratings": [], "k": 3, "explain": True}).json()
    assert all(not i["explanation"]["because"] and i["explanation"]["rest"] == 0 for i in cold["items"])


def test_live_eval_is_served_per_version_and_source_and_counted_in_metrics(api, trained):
    from streamrec.sink import live_eval, open_sink

    _, model = trained
    with open_sink(api.cfg.sink_url) as s:
        s.create_schema()
    with open_sink(api.cfg.sink_url) as s, s.transaction():
        s.upsert(live_eval, [
            {"model_version": model.version, "source": "stream", "bucket": 60 * m, "events": 10, "hits": h,
             "rank_sum": 3 * h, "pop_hits": 1, "only_this": 0, "only_ref": 0} for m, h in ((1, 2), (2, 4))
        ], None)  # fmt: skip
    rows = api.get("/stats/live-eval").json()
    want = {"model_version": model.version, "source": "stream", "events": 20, "hits": 6, "popularity_hits": 2,
            "hit_rate": 0.3, "popularity_hit_rate": 0.1, "mean_hit_rank": 3.0}  # fmt: skip
    assert rows == [want]
    minutes = api.get("/stats/live-eval", params={"by": "minute"}).json()
    assert [(r["minute"], r["hits"]) for r in minutes] == [(60, 2), (120, 4)]
    text = api.get("/metrics").text
    assert f'streamrec_live_eval_hits_total{{model_version="{model.version}",source="stream"}} 6.0' in text
    listed = {m["version"]: m for m in api.get("/models").json()}
    assert listed[model.version]["live_hit_rate"] == pytest.approx(0.3)


def test_the_data_key_changes_with_the_cut_and_with_a_file_rewritten_in_place(tmp_path):
    import os

    from serving.lists import data_key
    from streamrec.history import HistorySpec

    (tmp_path / "movies.csv").write_text("movieId,title,genres\n")
    spec = HistorySpec(str(tmp_path), split_at=0.8)
    key = data_key(spec)
    assert (
        data_key(HistorySpec(str(tmp_path), split_at=0.8, event_log_version=7)) == key
    )  # the log's snapshot
    assert data_key(HistorySpec(str(tmp_path), split_at=0.9)) != key
    st = (tmp_path / "movies.csv").stat()
    os.utime(tmp_path / "movies.csv", ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert data_key(spec) != key
    missing = HistorySpec(str(tmp_path / "gone"))  # no error here: loading the titles says what is wrong
    assert data_key(missing)[-1] == ()

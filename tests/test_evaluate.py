"""`streamrec evaluate` against a real Spark: the protocols run, and the served lists beat
popularity on the bundled data (a loose floor; the targets are measured in bench/)."""

from __future__ import annotations

import json

import pytest

from batch.evaluate import EvalOptions, run_evaluation
from batch.train import Params, RankingParams
from streamrec.cli import main
from streamrec.movielens import load_ratings
from streamrec.settings import BUNDLED_DATA

pytestmark = pytest.mark.integration
SERVED, POP = "ranking model (served)", "popularity"
SMALL = dict(params=Params(rank=10, iters=6), ranking=RankingParams(rank=16, iters=6))


def test_served_lists_beat_popularity_for_warm_and_new_users(spark):
    ratings, _ = load_ratings(BUNDLED_DATA)
    opts = EvalOptions(protocols=("warm", "new_users"), ns=(1, 5, 20), ease_max_items=1000, **SMALL)
    res = run_evaluation(spark, ratings, opts)
    warm = res["warm"]["methods"]
    assert warm[SERVED]["ndcg_at_10"] > 1.3 * warm[POP]["ndcg_at_10"]
    assert warm[SERVED]["precision_at_10"] > 2 * warm["explicit model"]["precision_at_10"]
    assert "EASE" not in warm and res["ease"].startswith("skipped: 9,724 movies > 1,000")
    assert res["warm"]["rmse"] < 0.9
    for n, methods in res["new_users"]["by_n"].items():
        assert methods[SERVED]["users"] > 100, n
        assert methods[SERVED]["ndcg_at_10"] >= 0.9 * methods[POP]["ndcg_at_10"], n


def test_evaluate_command_runs_every_protocol_with_ease_and_a_chart(tmp_path, capsys):
    # A small MovieLens folder: 60 users keep EASE and the prequential replay quick.
    ratings, _ = load_ratings(BUNDLED_DATA)
    users = sorted(ratings.user_id.unique())[:60]
    small = ratings[ratings.user_id.isin(users)]
    data = tmp_path / "ml-small"
    data.mkdir()
    small.rename(columns={"user_id": "userId", "movie_id": "movieId"}).to_csv(
        data / "ratings.csv", index=False
    )
    (data / "movies.csv").write_bytes((BUNDLED_DATA / "movies.csv").read_bytes())
    chart = tmp_path / "new_users.png"
    code = main(["evaluate", "--data", str(data), "--n", "1,3", "--rank", "8", "--ranking-rank", "8",
                 "--chart", str(chart), "--json"])  # fmt: skip
    assert code == 0
    res = json.loads(capsys.readouterr().out)
    assert res["ease"] == "computed" and res["users"] == 60
    assert set(res["warm"]["methods"]) == {SERVED, "ranking model, no blend", "explicit model", POP, "EASE"}
    for protocol in ("warm", "strong"):
        for name, m in res[protocol]["methods"].items():
            assert 0 <= m["precision_at_10"] <= 1 and 0 <= m["ndcg_at_10"] <= 1, (protocol, name)
    p = res["prequential"]
    variants = {"static model (no fold-in)", "stream fold-in", "users + items fold-in"}
    variants |= {"users + items + content", "popularity (running counts)", "fold-in + one retrain halfway"}
    assert p["scored_events"] > 0 and set(p["hit_rate"]) == set(p["servable_share"]) == variants
    assert all(0 <= h <= 1 for h in p["hit_rate"].values())
    share = p["servable_share"]  # streaming the catalogue can only make more movies servable
    assert share["users + items fold-in"] >= share["stream fold-in"] == share["static model (no fold-in)"]
    assert chart.stat().st_size > 10_000 and chart.read_bytes()[:4] == b"\x89PNG"
    live = small.sort_values("timestamp", kind="stable").iloc[int(0.8 * len(small)) :]
    assert p["events"] == len(live)  # the same cut as `--split-at 0.8` after de-duplication

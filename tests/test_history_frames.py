"""The history read by Spark (streamrec.history_frames, batch.frames) is the pandas history:
the same window, snapshot and latest rating per pair, with a bounded share on the driver."""

from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import pytest

from batch.frames import as_frame, pick, rows_of, split_frame, without
from streamrec.errors import DataError
from streamrec.event_log import write_batch
from streamrec.history import HistorySpec, latest_per_pair, load_history
from streamrec.history_frames import first_rows, history_frame, ratings_image
from streamrec.history_frames import latest_per_pair as latest_frame
from streamrec.settings import BUNDLED_DATA

KEY = ["user_id", "movie_id"]


def _sorted(df: pd.DataFrame) -> pd.DataFrame:
    cols = ["user_id", "movie_id", "rating", "timestamp"]
    return (
        df[cols]
        .astype({"user_id": "int64", "movie_id": "int64", "rating": "float64"})
        .sort_values(KEY, ignore_index=True)
    )


def _log_events(rows: list[tuple[int, int, float, int]], first_offset: int) -> pd.DataFrame:
    u, m, r, t = zip(*rows, strict=True)
    n = len(rows)
    return pd.DataFrame({"user_id": u, "movie_id": m, "rating": r, "timestamp": t, "topic": "ratings",
                         "partition": 0, "offset": range(first_offset, first_offset + n),
                         "kafka_ts": 1.7e9 + np.arange(first_offset, first_offset + n),
                         "reason": None})  # fmt: skip


def test_the_spark_history_is_the_pandas_history_split_cut_log_snapshot_and_ties(
    spark, tmp_path, monkeypatch
):
    monkeypatch.setenv("STREAMREC_HOME", str(tmp_path))
    monkeypatch.delenv("STREAMREC_SPARK_STORAGE", raising=False)
    log = tmp_path / "eventlog"
    base = load_history(HistorySpec(str(BUNDLED_DATA), split_at=0.8))
    u, m, t = (int(base[c].iloc[0]) for c in ("user_id", "movie_id", "timestamp"))
    # A re-rating at the same event time as the history's (the log wins the tie), a later one,
    # an earlier one (the history keeps it), and a new user rating twice at one time (the later
    # arrival wins).
    write_batch(log, 0, _log_events([(u, m, 0.5, t), (1, 1, 5.0, 2_000_000_000), (99999, 1, 2.0, 10)], 0))
    write_batch(log, 1, _log_events([(99999, 1, 3.5, 10), (2, 3, 1.0, 1)], 3))
    spec = HistorySpec(str(BUNDLED_DATA), split_at=0.8, event_log=str(log), event_log_version=1)
    write_batch(log, 2, _log_events([(5, 5, 4.0, 3)], 5))  # after the snapshot: pinned reads skip it
    for pinned in (True, False):
        expected = load_history(spec, pinned=pinned)
        events = history_frame(spark, spec, pinned=pinned)
        assert events.count() == len(expected)
        got = _sorted(latest_frame(events).toPandas())
        pd.testing.assert_frame_equal(got, _sorted(latest_per_pair(expected)))
    row = got[(got.user_id == u) & (got.movie_id == m)]
    assert row["rating"].item() == 0.5
    assert got[(got.user_id == 99999)]["rating"].item() == 3.5
    # --until on top of the split, as train's spec can have both
    spec = HistorySpec(str(BUNDLED_DATA), until=int(base["timestamp"].median()), split_at=0.5)
    assert history_frame(spark, spec).count() == len(load_history(spec))


def test_first_rows_cuts_exactly_where_a_stable_sort_does(spark):
    rng = np.random.default_rng(3)
    n = 5000
    df = pd.DataFrame({"timestamp": rng.integers(0, 40, n) * 10**7, "seq": rng.permutation(n)})  # many ties
    frame = spark.createDataFrame(df, "timestamp long, seq long")
    order = df.sort_values(["timestamp", "seq"], ignore_index=True)
    for k in (0, 1, 777, 2500, n - 1, n, n + 3):
        got = frame.where(first_rows(frame, k, ("timestamp", "seq"))).toPandas()
        assert len(got) == min(k, n)
        assert set(got["seq"]) == set(order["seq"].iloc[:k])


def test_the_image_is_written_once_and_a_bad_file_gives_its_line(tmp_path, monkeypatch):
    monkeypatch.setenv("STREAMREC_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("STREAMREC_SPARK_STORAGE", raising=False)
    data = tmp_path / "data"
    data.mkdir()
    (data / "movies.csv").write_text("movieId,title,genres\n1,A (2000),Drama\n")
    (data / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,4.0,10\n2,1,3.5,5\n")
    first = ratings_image(data)
    assert pd.read_parquet(first)["seq"].tolist() == [0, 1]
    assert ratings_image(data) == first and first.stat().st_mtime_ns == ratings_image(data).stat().st_mtime_ns
    (data / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,4.0,10\n2,1,9.0,5\n")
    with pytest.raises(DataError, match="ratings.csv:3"):
        ratings_image(data)


def test_splits_and_samples_are_seeded_and_bounded(spark):
    ratings = latest_per_pair(load_history(HistorySpec(str(BUNDLED_DATA))))
    frame = as_frame(spark, ratings)
    train, test = split_frame(frame, "random", 0.2, 42)
    everyone = np.unique(ratings.user_id)
    a, b = rows_of(test, everyone), rows_of(split_frame(frame, "random", 0.2, 42)[1], everyone)
    assert len(a) == len(b) and 0.18 < len(a) / len(ratings) < 0.22  # the same rows on every run
    assert train.count() + len(a) == len(ratings)
    users = pick(np.unique(ratings.user_id), 50, 7)
    assert len(users) == 50 and set(rows_of(frame, users).user_id) == set(users)
    assert without(frame, users).count() == (~ratings.user_id.isin(users)).sum()
    old, new = split_frame(frame, "time", 0.25, 42)
    newest = rows_of(new, everyone)
    assert len(newest) == len(ratings) - int(np.floor(0.75 * len(ratings)))
    assert newest.timestamp.min() >= old.agg({"timestamp": "max"}).first()[0]


def test_the_holdout_judges_are_drawn_apart_from_the_validation_users():
    """Two seeded samples of the same users with the same seed must be independent: at ml-25m's
    162,541 users, 10,000 judges and a validation fifth share about a fifth, not all (a shared
    permutation made the judges a subset of the validation users: no warm user was scored)."""
    from batch.metrics import holdout_of

    for n in (6_500, 32_500, 162_541):
        ids = np.arange(1, n + 1)
        judges, val = pick(ids, 10_000, 42), holdout_of(ids, 0.2, 42)
        outside = len(np.setdiff1d(judges, val)) / len(judges)
        assert 0.77 < outside < 0.83, (n, outside)


def test_training_brings_a_sample_of_stated_size_to_the_driver(spark, tmp_path, monkeypatch):
    """With the samples capped below the data's users, the metrics are scored on exactly that many
    users and the blend on at most that many validation users; the model still covers everyone
    (its factors come from Spark, not from the sample)."""
    from batch.publish import TrainOptions, default_spec, run_training
    from streamrec.model_store import ModelStore

    monkeypatch.setenv("STREAMREC_HOME", str(tmp_path))
    monkeypatch.delenv("STREAMREC_SPARK_STORAGE", raising=False)
    monkeypatch.setattr("batch.frames.EVAL_USERS_MAX", 120)
    monkeypatch.setattr("batch.frames.CALIBRATION_USERS_MAX", 40)
    store = ModelStore(tmp_path / "models")
    res = run_training(spark, TrainOptions(default_spec(BUNDLED_DATA), refit_full=False), store)
    assert res["evaluation"]["holdout_users"] == 120
    assert res["evaluation"]["validation_users"] > 40  # a fifth of 610 users left out of the fit
    assert max(row["users"] for row in res["blend"]["validation"]) <= 40
    # The warm metrics score the judges outside the blend's validation fifth: about 96 of the 120
    # (fewer: a few have no relevant holdout rating), not a handful left by a nested sample.
    assert 60 <= res["metrics"]["users"] <= 120 and res["metrics"]["popularity"]["users"] <= 120
    assert len(store.load(res["version"]).user_ids) > 400  # every training user has vectors
    checkpoints = Path(urlparse(spark.sparkContext.getCheckpointDir()).path)
    assert checkpoints.is_dir() and not list(checkpoints.glob("rdd-*"))  # ALS's checkpoints: deleted


def test_above_the_limit_the_evaluation_fits_a_user_sample_the_served_model_all(spark, tmp_path, monkeypatch):
    """The holdout's fits run on whole users of a seeded sample of about the stated size; the
    published model is refit on every user; the gate compares like with like: a sampled
    evaluation with CURRENT's recorded sampled one, never with a full one (nor scored beside a
    CURRENT that learned from five times the data)."""
    from batch.publish import TrainOptions, default_spec, run_training
    from streamrec.model_store import ModelStore

    monkeypatch.setenv("STREAMREC_HOME", str(tmp_path))
    monkeypatch.delenv("STREAMREC_SPARK_STORAGE", raising=False)
    store = ModelStore(tmp_path / "models")
    spec = default_spec(BUNDLED_DATA)
    full = run_training(spark, TrainOptions(spec, force=True), store)
    assert full["evaluation"]["sample"] is None  # 100,836 ratings are below the default limit
    everyone = len(store.load(full["version"]).user_ids)

    sampled = run_training(spark, TrainOptions(spec, eval_sample_ratings=40_000), store)
    s = sampled["evaluation"]["sample"]
    assert s["limit"] == 40_000 and s["of_ratings"] == full["counts"]["ratings"]
    assert abs(s["user_fraction"] - 40_000 / s["of_ratings"]) < 1e-6
    assert 0.25 * everyone < sampled["evaluation"]["holdout_users"] < 0.6 * everyone  # whole users, ~40 %
    assert len(store.load(sampled["version"]).user_ids) == everyone  # served: refit on all users
    assert sampled["gate"]["comparison"] is None  # CURRENT's evaluation was on all: not comparable

    again = run_training(spark, TrainOptions(spec, eval_sample_ratings=40_000), store)
    c = again["gate"]["comparison"]
    assert c["basis"].startswith(f"{sampled['version']}'s recorded holdout (a user sample")
    assert c["current_rmse"] == sampled["metrics"]["rmse"] and c["rmse"] == again["metrics"]["rmse"]
    assert again["evaluation"]["holdout_users"] == sampled["evaluation"]["holdout_users"]  # seeded


def test_the_streams_seed_leaves_out_trending_windows_retention_would_delete(spark, tmp_path):
    """The first start's aggregates come from Spark: all-time tables over every history event, and
    only the trending windows `--keep-trending` keeps (decades of weeks x movies otherwise)."""
    from streaming.aggregates import WindowSpec
    from streaming.job import Context, StreamConfig, bootstrap_aggregates
    from streaming.retention import DAY, Retention
    from streamrec.movielens import load_movies
    from streamrec.sink import Sink
    from tests.streamcheck import table

    spec = HistorySpec(str(BUNDLED_DATA), split_at=0.8)
    events = load_history(spec)
    movies = load_movies(BUNDLED_DATA).set_index("movie_id")
    ctx = Context(spec, movies["title"], movies["genres"])
    url = f"sqlite:///{tmp_path / 'sink.db'}"
    cfg = StreamConfig(bootstrap="-", sink_url=url, state_dir=tmp_path, event_log_dir=tmp_path / "log",
                       model_root=tmp_path / "models", data=BUNDLED_DATA,
                       retention=Retention(trending_s=60 * DAY))  # fmt: skip
    sink = Sink(url)
    sink.create_schema()
    assert bootstrap_aggregates(sink, ctx, cfg, history_frame(spark, spec)) == len(events)
    assert bootstrap_aggregates(sink, ctx, cfg, history_frame(spark, spec)) is None  # once
    sink.close()
    counts = table(url, "SELECT movie_id, n_ratings FROM movie_stats", ["movie_id", "n"])
    assert (
        counts.set_index("movie_id")["n"].sort_index().tolist()
        == events.movie_id.value_counts().sort_index().tolist()
    )
    size = WindowSpec().size_s
    ends = table(url, "SELECT DISTINCT window_end FROM trending", ["end"])["end"]
    newest = int(events.timestamp.max())
    kept = {
        s + size for s in events.timestamp - events.timestamp % size if s + size >= newest - 60 * DAY - size
    }
    assert set(ends) == kept and 8 <= len(kept) <= 11  # the last ~60 days of weekly windows, no older

"""The sink's schema upgrade on a real SQLite file (PostgreSQL runs the same path in the stream tests)."""

import sqlite3

from streamrec.sink import open_sink


def test_a_sink_from_before_the_ranking_model_gains_the_column_and_keeps_its_rows(tmp_path):
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as conn:
        conn.execute(
            "CREATE TABLE user_recommendations (user_id BIGINT NOT NULL, rank INTEGER NOT NULL, "
            "movie_id BIGINT NOT NULL, score DOUBLE PRECISION, model_version TEXT, source TEXT, "
            "PRIMARY KEY (user_id, rank))"
        )
        conn.execute("INSERT INTO user_recommendations VALUES (7, 1, 260, 4.5, 'v0001', 'fold-in')")
    with open_sink(f"sqlite:///{db}") as sink:
        sink.create_schema()
        assert "predicted_rating" in sink.columns("user_recommendations")
        sink.create_schema()  # idempotent
        rows = sink.query("SELECT user_id, movie_id, predicted_rating FROM user_recommendations")
    assert rows == [(7, 260, None)]


def test_aggregate_upserts_add_counts_and_sums_and_recompute_the_average(tmp_path):
    import pandas as pd

    from streaming.aggregates import WindowSpec, apply_deltas, compute_deltas

    events = pd.DataFrame({"user_id": [1, 2, 1], "movie_id": [10, 10, 20], "rating": [4.0, 2.0, 5.0],
                           "timestamp": [100, 300, 200]})  # fmt: skip
    genres, titles = pd.Series({10: ["Drama"], 20: ["Drama", "War"]}), pd.Series({10: "A", 20: "B"})
    with open_sink(f"sqlite:///{tmp_path / 's.db'}") as sink:
        sink.create_schema()
        for half in (events.iloc[:2], events.iloc[2:]):  # two batches: the second one updates
            with sink.transaction():
                apply_deltas(sink, compute_deltas(half, genres, None, WindowSpec()), titles)
        movies = sink.query("SELECT movie_id, title, n_ratings, avg_rating, last_event_ts FROM movie_stats "
                            "ORDER BY movie_id")  # fmt: skip
        users = sink.query("SELECT user_id, n_ratings, avg_rating, first_event_ts, last_event_ts "
                           "FROM user_activity ORDER BY user_id")  # fmt: skip
        genre = dict(sink.query("SELECT genre, n_ratings FROM genre_stats"))
    assert [tuple(r) for r in movies] == [(10, "A", 2, 3.0, 300), (20, "B", 1, 5.0, 200)]
    assert [tuple(r) for r in users] == [(1, 2, 4.5, 100, 200), (2, 1, 2.0, 300, 300)]
    assert genre == {"Drama": 3, "War": 1}


def test_a_failed_transaction_writes_nothing_and_a_batch_is_recorded_once(tmp_path):
    import pytest
    import sqlalchemy as sa

    with open_sink(f"sqlite:///{tmp_path / 's.db'}") as sink:
        sink.create_schema()
        with pytest.raises(RuntimeError), sink.transaction():
            sink.mark_batch("aggregates", 1, 0.0)
            sink.set_state("watermark", "5")
            raise RuntimeError("the batch failed half way")
        assert not sink.batch_applied("aggregates", 1) and sink.get_state("watermark") is None
        with sink.transaction():
            sink.mark_batch("aggregates", 1, 0.0)
        assert sink.batch_applied("aggregates", 1)
        with pytest.raises(sa.exc.IntegrityError), sink.transaction():
            sink.mark_batch("aggregates", 1, 0.0)  # the ledger's primary key refuses a replay
        assert sink.count("stream_batches") == 1

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

"""serving.ratings_index over a real Delta event log (its own writer and compaction): what it
holds follows the log, and compactions, which rewrite the log's files with the same rows, add
neither rows nor tracked files (until 2026-12-03 each one kept every compacted row once more)."""

import pandas as pd

from serving.ratings_index import RatingsIndex
from streamrec.event_log import committed_files, write_batch
from streamrec.event_log_maint import compact
from streamrec.history import HistorySpec, latest_per_pair, window
from streamrec.movielens import load_ratings
from streamrec.settings import BUNDLED_DATA

SPLIT = 0.8


def _batch(batch_id: int, users: range, movie: int, rating: float, ts: int) -> pd.DataFrame:
    n = len(users)
    return pd.DataFrame({
        "user_id": list(users), "movie_id": movie, "rating": rating, "timestamp": ts, "topic": "ratings",
        "partition": 0, "offset": range(1000 * batch_id, 1000 * batch_id + n), "kafka_ts": 1.7e9 + batch_id,
    })  # fmt: skip


def test_the_index_follows_the_log_and_compactions_add_nothing(tmp_path):
    log = tmp_path / "eventlog"
    history = window(load_ratings(BUNDLED_DATA)[0], split_at=SPLIT, part="before")
    user = int(history["user_id"].iloc[0])
    rated = history[history["user_id"] == user]
    movie, ts = int(rated["movie_id"].iloc[0]), int(rated["timestamp"].iloc[0])
    write_batch(log, 0, _batch(0, range(900_001, 900_041), 1, 4.0, 1_600_000_000))
    spec = HistorySpec(str(BUNDLED_DATA), split_at=SPLIT)
    index = RatingsIndex(spec, log, min_interval_s=0, topic="ratings")
    assert len(index) == len(latest_per_pair(history)) + 40
    assert index.next_offsets == {0: 40}

    batches = [
        _batch(1, range(900_001, 900_011), 1, 2.0, 1_600_000_000),  # same time, arrived later: wins
        _batch(2, range(user, user + 1), movie, 0.5, ts),  # a tie with the history: the log wins
        _batch(3, range(900_041, 900_061), 2, 3.0, 1_600_000_100),
    ]
    for b, events in enumerate(batches, start=1):
        write_batch(log, b, events)
        assert index.refresh(force=True)
        compact(log)  # the same rows in new files
        assert index.refresh(force=True)  # read again ...
        assert index.files == len(committed_files(log))  # ... and the replaced files forgotten
    assert index.files == 1  # everything compacted into one file
    assert len(index) == len(latest_per_pair(history)) + 60  # nothing held twice
    assert index.user(900_001)["rating"].tolist() == [2.0]
    assert index.user(900_011)["rating"].tolist() == [4.0]
    mine = index.user(user).set_index("movie_id")["rating"]
    assert mine[movie] == 0.5 and len(mine) == len(rated)
    assert index.next_offsets == {0: 3020}

"""The event contract and event-time windows: pure logic, no broker."""

import json

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamrec.errors import InvalidRequest
from streamrec.events import encode, validate
from streamrec.history import parse_time, split_index, window


@given(
    st.integers(1, 2**31 - 1),
    st.integers(1, 2**31 - 1),
    st.integers(1, 10).map(lambda k: k / 2),
    st.integers(631_152_000, 4_102_444_800),
)
def test_encoded_events_are_valid_json_with_the_contract_fields(u, m, r, ts):
    key, value = encode(u, m, r, ts)
    assert key == str(u).encode()
    assert json.loads(value) == {"user_id": u, "movie_id": m, "rating": r, "timestamp": ts}
    assert validate(value) == ({"user_id": u, "movie_id": m, "rating": r, "timestamp": ts}, None)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"user_id": 1, "movie_id": 2, "rating": 4.0}', "missing field timestamp"),
        (b'{"user_id": "1", "movie_id": 2, "rating": 4.0, "timestamp": 9e8}', "user_id is not"),
        (b'{"user_id": 1, "movie_id": 2, "rating": 4.2, "timestamp": 900000000}', "rating outside"),
        (b'{"user_id": 1, "movie_id": 2, "rating": 7, "timestamp": 900000000}', "rating outside"),
        (b'{"user_id": -1, "movie_id": 2, "rating": 4, "timestamp": 900000000}', "id out of range"),
        (b'{"user_id": 1, "movie_id": 2, "rating": 4, "timestamp": 12}', "timestamp out of range"),
        (None, "empty value"),
    ],
)
def test_bad_events_are_rejected_with_a_reason(raw, reason):
    event, why = validate(raw)
    assert event is None and why.startswith(reason)


def test_parse_time_accepts_dates_and_epoch_seconds():
    assert parse_time("1700000000") == 1_700_000_000
    assert parse_time("2018-09-24") == 1_537_747_200
    with pytest.raises(ValueError, match="neither a date"):
        parse_time("yesterday")


def _ratings(ts):
    return pd.DataFrame({"user_id": range(len(ts)), "movie_id": 1, "rating": 4.0, "timestamp": ts})


def test_split_at_partitions_history_and_live_without_overlap():
    r = _ratings([50, 10, 40, 20, 30, 60, 70, 80, 90, 100])
    before = window(r, split_at=0.8, part="before")
    after = window(r, split_at=0.8)
    assert before["timestamp"].tolist() == [10, 20, 30, 40, 50, 60, 70, 80]
    assert after["timestamp"].tolist() == [90, 100]
    assert split_index(10, 0.0) == 0 and split_index(10, 1.0) == 10
    with pytest.raises(InvalidRequest, match="split_at must be between 0 and 1"):
        split_index(10, 1.5)


def test_since_until_limit_and_stable_ties():
    r = _ratings([30, 10, 20, 20, 40])
    w = window(r, since=20, until=40)
    assert w["timestamp"].tolist() == [20, 20, 30]
    assert w["user_id"].tolist() == [2, 3, 0]  # ties keep file order
    assert window(r, limit=2)["timestamp"].tolist() == [10, 20]

"""The executors' per-key deltas (streaming.spark_aggregates) equal the pandas reference exactly."""

import numpy as np
import pandas as pd
import pytest

from streaming.aggregates import DAY, WindowSpec, compute_deltas
from streaming.metrics import latency_ms
from streaming.parse import COLUMNS
from streaming.spark_aggregates import batch_deltas, genres_frame

pytestmark = pytest.mark.integration

SPEC = WindowSpec(size_s=7 * DAY, delay_s=DAY)
GENRES = pd.Series({1: ["Comedy", "Drama"], 2: ["Drama"], 3: ["(no genres listed)"], 4: []})


def batch(rng, n: int, n_bad: int) -> pd.DataFrame:
    ts = rng.integers(10 * DAY, 60 * DAY, n)
    good = pd.DataFrame({
        "user_id": rng.integers(1, 30, n), "movie_id": rng.integers(1, 7, n),  # 5, 6: unknown movies
        "rating": rng.integers(1, 11, n) / 2, "timestamp": ts, "reason": None, "value": "{}",
        "topic": "ratings", "partition": rng.integers(0, 3, n), "offset": np.arange(n),
        "kafka_ts": 1_700_000_000 + rng.random(n) * 3, "raw_base64": None,
    })  # fmt: skip
    bad = pd.DataFrame({
        "user_id": None, "movie_id": None, "rating": None, "timestamp": None, "reason": "not JSON",
        "value": [f"junk {i}" for i in range(n_bad)], "topic": "ratings", "partition": 1,
        "offset": np.arange(n, n + n_bad), "kafka_ts": 1_700_000_000.0, "raw_base64": "anVuaw==",
    })  # fmt: skip
    cols = [*COLUMNS, "raw_base64"]
    return (
        pd.concat([good[cols].astype(object), bad[cols].astype(object)], ignore_index=True)
        if n_bad and n
        else (good if n else bad)[cols]
    )


def frame(spark, pdf: pd.DataFrame):
    schema = ("user_id int, movie_id int, rating float, timestamp long, reason string, value string, "
              "topic string, partition int, offset long, kafka_ts double, raw_base64 string")  # fmt: skip
    return spark.createDataFrame(pdf.astype(object).where(pdf.notna(), None), schema)


def keyed(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    return (
        df.astype({c: np.float64 for c in df.columns if c not in keys and c != "genre"})
        .set_index(keys)
        .sort_index()
    )


@pytest.mark.parametrize("shuffle", [False, True], ids=["partials", "groupBy"])
@pytest.mark.parametrize("watermark", [None, 30 * DAY])
def test_spark_deltas_equal_the_pandas_reference(spark, watermark, shuffle):
    rng = np.random.default_rng(7)
    pdf = batch(rng, 2_000, 5)
    df = frame(spark, pdf).repartition(3)  # partials from several partitions are merged
    res = batch_deltas(df, genres_frame(spark, GENRES), watermark, SPEC, shuffle)
    good = pdf[pdf["reason"].isna()].astype({"user_id": int, "movie_id": int, "timestamp": int})
    ref = compute_deltas(good, GENRES, watermark, SPEC)
    got = res.deltas
    for name, keys in [("movie", ["movie_id"]), ("user", ["user_id"]), ("histogram", ["rating"]),
                       ("genre", ["genre"]), ("trending", ["window_start", "movie_id"])]:  # fmt: skip
        a, b = keyed(getattr(got, name), keys), keyed(getattr(ref, name), keys)
        pd.testing.assert_frame_equal(a[b.columns], b, check_names=False, check_index_type=False)
    assert got.late_events == ref.late_events and got.watermark == ref.watermark
    assert (watermark is None) == (ref.late_events == 0)
    assert sorted(res.dead["offset"]) == list(range(2_000, 2_005))
    assert set(res.dead["reason"]) == {"not JSON"} and set(res.dead["raw_base64"]) == {"anVuaw=="}
    assert res.kafka_times["n"].sum() == 2_000
    # Latency from 10 ms buckets is within one bucket of the per-record figure.
    now = 1_700_000_010.0
    exact = latency_ms(good["kafka_ts"].to_numpy(), now)
    coarse = latency_ms(res.kafka_times["t"].to_numpy(), now, res.kafka_times["n"].to_numpy())
    for q in ("latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "latency_max_ms"):
        assert abs(exact[q] - coarse[q]) <= 10.0 + 1e-6


def test_a_batch_of_only_bad_records_has_no_deltas(spark):
    pdf = batch(np.random.default_rng(1), 0, 3)
    res = batch_deltas(frame(spark, pdf), genres_frame(spark, GENRES), None, SPEC)
    assert res.deltas is None and len(res.dead) == 3 and res.kafka_times.empty


def test_latency_percentiles_are_weighted_by_counts():
    lat = latency_ms(np.array([9.9, 9.0]), 10.0, np.array([99, 1]))
    assert lat["latency_p50_ms"] == pytest.approx(100.0) and lat["latency_max_ms"] == pytest.approx(1000.0)
    assert latency_ms(np.array([9.9, 9.0]), 10.0)["latency_p95_ms"] == pytest.approx(1000.0)

"""One contract, one verdict: the Python validator and the stream's Spark parse give every record
of a shared corpus (tests/bad_records.py) the same verdict and the same reason."""

from collections import Counter

import pytest

from streamrec.events import validate
from tests.bad_records import BAD_KINDS, KINDS, corpus, reason_matches


def test_the_corpus_has_at_least_25_kinds_of_bad_record():
    assert len(BAD_KINDS) >= 25 and len({k.name for k in KINDS}) == len(KINDS)


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_the_python_validator_gives_each_kind_its_reason(kind):
    import random

    rng = random.Random(kind.name)
    for _ in range(20):
        raw = kind.make(rng)
        event, reason = validate(raw)
        assert reason_matches(kind.reason, reason), (raw[:120], reason)
        assert (event is None) == (kind.reason is not None)


def test_lenient_json_that_spark_alone_would_accept_is_refused():
    good = b'{"user_id": 1, "movie_id": 2, "rating": 4.0, "timestamp": 1500000000}'
    assert validate(good)[1] is None
    assert validate(good.replace(b'"', b"'"))[1] == "not JSON"
    assert validate(good + b" garbage")[1] == "not JSON"
    assert validate(good + good)[1] == "not JSON"
    assert validate(good[:-1] + b', "user_id": "x"}')[1] == "duplicate key"
    assert validate(good.replace(b"4.0", b"NaN"))[1] == "not JSON"
    assert validate(good.replace(b"2,", b"9223372036854775808,"))[1] == "id out of range"
    assert validate(good[:-1] + b', "n": "\x01"}')[1] == "not JSON"


@pytest.mark.integration
def test_spark_and_python_agree_on_every_record_of_the_corpus(spark):
    from streaming.parse import parse

    records = list(corpus(len(KINDS) * 12, seed=11))
    raws = [raw for _, raw, _ in records] + [None]  # and a Kafka tombstone
    kafka_like = spark.createDataFrame(
        [(raw, "t", 0, i, None) for i, raw in enumerate(raws)],
        "value binary, topic string, partition int, offset long, timestamp timestamp",
    )
    got = parse(kafka_like).orderBy("offset").toPandas()
    assert len(got) == len(raws)
    wrong = Counter()
    for raw, row in zip(raws, got.itertuples(), strict=True):
        event, reason = validate(raw)
        if row.reason != reason or (event and (row.user_id, row.movie_id, row.rating, row.timestamp)
                                    != tuple(event.values())):  # fmt: skip
            wrong[(raw[:60] if raw else raw, row.reason, reason)] += 1
    assert not wrong, wrong.most_common(5)
    for (name, _, expected), row in zip(records, got.itertuples(), strict=False):
        assert reason_matches(expected, row.reason), name
    assert got["reason"].iloc[-1] == "empty value"
    assert got["raw_base64"].notna().sum() == sum(r is not None for _, _, r in records)

"""Kafka source and validation of the `ratings` contract.

A record gets `reason` = NULL when valid, else the first rule of `streamrec.events.validate`
it breaks: the same function decides in the stream and in Python (tests check they agree).
"""

from __future__ import annotations

from streamrec.events import FIELDS, MAX_ID, MAX_RATING, MAX_TS, MIN_RATING, MIN_TS

SCHEMA = "user_id long, movie_id long, rating double, timestamp long"
COLUMNS = (
    "user_id",
    "movie_id",
    "rating",
    "timestamp",
    "reason",
    "value",
    "topic",
    "partition",
    "offset",
    "kafka_ts",
)


def kafka_stream(spark, bootstrap: str, topic: str, max_offsets: int | None = None):
    """The raw Kafka stream; earliest offsets for a new checkpoint, then the checkpoint's."""
    reader = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", bootstrap)
        .option("subscribe", topic)
        .option("startingOffsets", "earliest")
        .option("failOnDataLoss", "true")
        # A live micro-batch reads to the end of the log, where the broker would otherwise hold
        # each fetch for the default 500 ms waiting for more data: that wait was on every batch.
        .option("kafka.fetch.max.wait.ms", "50")
    )
    if max_offsets:
        reader = reader.option("maxOffsetsPerTrigger", str(max_offsets))
    return reader.load()


# The fast path: a record that is exactly one flat JSON object of four key/number pairs, each
# key one of the contract's fields, can be judged by Spark's own JSON reader. With all four
# fields found, the four pairs are the four distinct fields: no duplicate key, nothing else.
# (Integers of at most 19 digits: longer ones overflow Spark's long and take the slow path.)
_WS = "[ \t\n\r]*"  # JSON's whitespace (Java's \\s would also take \\f and \\v)
_INT = "-?(?:0|[1-9][0-9]{0,18})"
_NUM = "-?(?:0|[1-9][0-9]*)(?:[.][0-9]+)?(?:[eE][+-]?[0-9]+)?"
_PAIR = f'(?:"(?:user_id|movie_id|timestamp)"{_WS}:{_WS}{_INT}|"rating"{_WS}:{_WS}{_NUM})'
CANONICAL = f"^{_WS}[{{]{_WS}{_PAIR}{_WS}(?:,{_WS}{_PAIR}{_WS}){{3}}[}}]{_WS}$"
RESULT = "user_id long, movie_id long, rating double, timestamp long, reason string"


def fast_valid(text: str = "text", p: str = "parsed"):
    """True when Spark alone proves the record valid: canonical shape, typed fields, in range.
    (A Column, so that the regex reaches Java as written, not through SQL string escapes.)"""
    from pyspark.sql.functions import col, expr

    typed = " AND ".join([
        *(f"{p}.{f} IS NOT NULL" for f in FIELDS),
        f"{p}.rating BETWEEN {MIN_RATING} AND {MAX_RATING} AND {p}.rating * 2 = floor({p}.rating * 2)",
        f"{p}.user_id BETWEEN 1 AND {MAX_ID} AND {p}.movie_id BETWEEN 1 AND {MAX_ID}",
        f"{p}.timestamp BETWEEN {MIN_TS} AND {MAX_TS}",
    ])  # fmt: skip
    return col(text).rlike(CANONICAL) & expr(typed)


def _check_records(values):
    """The reference validator on every record the fast path did not prove valid (NULL input:
    nothing to do). It never raises: whatever the bytes, each row gets a verdict."""
    import pandas as pd

    from streamrec.events import validate

    n = len(values)
    cols: dict[str, list] = {name: [None] * n for name in (*FIELDS, "reason")}
    for i in values.index[values.notna()]:  # usually few: only records off the fast path
        event, reason = validate(values[i])
        if event is None:
            cols["reason"][i] = reason
        else:
            for f in FIELDS:
                cols[f][i] = event[f]
    return pd.DataFrame(cols)


def _checker():
    from pyspark.sql.functions import pandas_udf

    return pandas_udf(_check_records, RESULT)


def parse(raw):
    """Kafka rows -> (user_id, movie_id, rating, timestamp, reason, value, raw_base64, Kafka metadata).

    One set of rules, `streamrec.events.validate`: Spark's JSON reader decides only the records
    whose shape leaves nothing to interpret (`fast_valid`); every other record goes through
    the validator itself in a pandas UDF, so Spark and Python cannot disagree (a shared corpus
    in the tests checks it). What leaves Spark is safe for Arrow and for every sink whatever the
    bytes were: `value` is the text with invalid UTF-8 and NUL replaced by U+FFFD (PostgreSQL
    text cannot hold NUL; Arrow refuses invalid UTF-8, which once failed the whole batch, and
    every restart with it), and a bad record keeps its exact bytes in `raw_base64`.
    """
    from pyspark.sql.functions import coalesce, expr, lit

    return (
        raw.selectExpr(
            "CAST(value AS STRING) AS text",
            "value AS bytes",
            "topic",
            "partition",
            "offset",
            "CAST(timestamp AS DOUBLE) AS kafka_ts",
        )  # fmt: skip
        .selectExpr("*", f"from_json(text, '{SCHEMA}') AS parsed")
        .withColumn("fast", coalesce(fast_valid(), lit(False)))
        .withColumn("checked", _checker()(expr("CASE WHEN fast THEN NULL ELSE bytes END")))
        .selectExpr(
            "CAST(CASE WHEN fast THEN parsed.user_id ELSE checked.user_id END AS INT) AS user_id",
            "CAST(CASE WHEN fast THEN parsed.movie_id ELSE checked.movie_id END AS INT) AS movie_id",
            "CAST(CASE WHEN fast THEN parsed.rating ELSE checked.rating END AS FLOAT) AS rating",
            "CASE WHEN fast THEN parsed.timestamp ELSE checked.timestamp END AS timestamp",
            "CASE WHEN fast THEN NULL WHEN bytes IS NULL THEN 'empty value' ELSE checked.reason END"
            " AS reason",
            "replace(make_valid_utf8(text), char(0), '\\uFFFD') AS value",
            "bytes",
            "topic",
            "partition",
            "offset",
            "kafka_ts",
        )  # fmt: skip
        .selectExpr(*COLUMNS, "CASE WHEN reason IS NOT NULL THEN base64(bytes) END AS raw_base64")
    )


def valid(parsed):
    return parsed.where("reason IS NULL")

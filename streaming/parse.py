"""Kafka source and validation of the `ratings` contract, as Spark SQL expressions.

Same rules as the reference validator `streamrec.events.validate` (tests check they agree):
a record gets `reason` = NULL when valid, else the first rule it breaks.
"""

from __future__ import annotations

from streamrec.events import FIELDS, MAX_ID, MAX_RATING, MAX_TS, MIN_RATING, MIN_TS

SCHEMA = "user_id long, movie_id long, rating double, timestamp long"
# C0 control characters other than tab, LF and CR, as a Java regex inside a SQL string literal.
CONTROL_CHARS = "[\\\\x00-\\\\x08\\\\x0b\\\\x0c\\\\x0e-\\\\x1f]"
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


def reason_sql(value: str = "value") -> str:
    """A CASE expression naming the first broken rule of a JSON string column (NULL if valid)."""
    p = "parsed"
    checks = [
        (f"{value} IS NULL", "empty value"),
        (f"NOT is_valid_utf8({value})", "not UTF-8"),
        # Raw control characters are never JSON (RFC 8259: escaped inside strings, and not
        # whitespace outside them); Spark's reader half-accepts them and misnamed the reason.
        (f"{value} RLIKE '{CONTROL_CHARS}'", "not JSON"),
        (f"get_json_object({value}, '$') IS NULL", "not JSON"),
        (f"json_object_keys({value}) IS NULL", "not a JSON object"),
    ]
    checks += [(f"get_json_object({value}, '$.{f}') IS NULL", f"missing field {f}") for f in FIELDS]
    checks += [(f"{p}.{f} IS NULL", f"{f} is not an integer") for f in ("user_id", "movie_id", "timestamp")]
    checks += [
        (f"{p}.rating IS NULL", "rating is not a number"),
        (f"{p}.rating < {MIN_RATING} OR {p}.rating > {MAX_RATING} "
         f"OR {p}.rating * 2 != floor({p}.rating * 2)", "rating outside 0.5..5.0 in steps of 0.5"),
        (f"{p}.user_id <= 0 OR {p}.user_id > {MAX_ID} OR {p}.movie_id <= 0 "
         f"OR {p}.movie_id > {MAX_ID}", "id out of range"),
        (f"{p}.timestamp < {MIN_TS} OR {p}.timestamp > {MAX_TS}", "timestamp out of range"),
    ]  # fmt: skip
    # Fast path first: a record whose typed fields all parsed and are in range is valid after a
    # single JSON parse; only bad records pay for the get_json_object checks that name the reason.
    # (A raw control character needs no test here: Spark's JSON reader then fails the parse.)
    ok = " AND ".join([f"is_valid_utf8({value})"] + [f"{p}.{f} IS NOT NULL" for f in FIELDS]
                      + [f"NOT ({cond})" for cond, _ in checks[-3:]])  # fmt: skip
    whens = " ".join(f"WHEN {cond} THEN '{reason}'" for cond, reason in checks)
    return f"CASE WHEN {ok} THEN NULL {whens} ELSE NULL END"


def parse(raw):
    """Kafka rows -> (user_id, movie_id, rating, timestamp, reason, value, raw_base64, Kafka metadata).

    Rules run on the record's own bytes read as UTF-8 (`text`). What leaves Spark is safe for
    Arrow and for every sink whatever the bytes were: `value` is the text with invalid UTF-8
    and NUL replaced by U+FFFD (PostgreSQL text cannot hold NUL; Arrow refuses invalid UTF-8,
    which once failed the whole batch, and every restart with it), and a bad record keeps its
    exact bytes in `raw_base64`.
    """
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
        .selectExpr(
            "try_cast(parsed.user_id AS INT) AS user_id",
            "try_cast(parsed.movie_id AS INT) AS movie_id",
            "try_cast(parsed.rating AS FLOAT) AS rating",
            "parsed.timestamp AS timestamp",
            f"{reason_sql('text')} AS reason",
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

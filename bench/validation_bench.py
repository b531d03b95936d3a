"""What strict validation costs the stream: 400,000 valid records through Spark's JSON reader alone
(the previous fast path's parse) and through `streaming.parse.parse` (the producer-shape regex plus
the validator UDF for the rest), same session, two rounds: `.venv/bin/python -m bench.validation_bench`."""

from __future__ import annotations

import time

from pyspark.sql.functions import sum as fsum

from streaming.parse import SCHEMA, parse
from streamrec.events import encode
from streamrec.spark import get_spark


def run(n: int = 400_000) -> dict:
    spark = get_spark("streamrec-validation-bench")
    rows = [(encode(u % 600 + 1, u % 9000 + 1, 0.5 * (1 + u % 10), 1_500_000_000 + u)[1], "t", 0, u, None)
            for u in range(n)]  # fmt: skip
    df = spark.createDataFrame(
        rows, "value binary, topic string, partition int, offset long, timestamp timestamp"
    )
    df = df.cache()
    df.count()
    reader = df.selectExpr(f"from_json(CAST(value AS STRING), '{SCHEMA}').user_id AS user_id")
    strict = parse(df).where("reason IS NULL")
    times: dict[str, list[float]] = {"from_json only": [], "strict parse + validate": []}
    for _ in range(2):
        for name, frame in (("from_json only", reader), ("strict parse + validate", strict)):
            t0 = time.perf_counter()
            frame.agg(fsum("user_id")).collect()
            times[name].append(time.perf_counter() - t0)
    return {name: min(t) for name, t in times.items()}


if __name__ == "__main__":
    for name, s in run().items():
        print(f"{name}: {s:.2f} s for 400,000 valid records (best of 2)")

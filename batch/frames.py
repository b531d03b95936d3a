"""Training data as Spark DataFrames, and the bounded samples of it that reach the driver.

`train` reads the history with Spark (streamrec.history_frames) and fits on the executors; the
driver gets per-key results (factors, biases, counts: O(movies + users)) and, for evaluation and
the blend, the ratings of a seeded sample of users of stated size (EVAL_USERS_MAX,
CALIBRATION_USERS_MAX), never O(history). Pandas input (the offline tools, tests) is handed to
Spark once and follows the same path.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from streamrec.errors import InvalidRequest
from streamrec.history_frames import to_pandas
from streamrec.movielens import RATING_DTYPES

# Users whose ratings reach the driver to score the holdout (RMSE, lists, popularity, the gate's
# comparison with CURRENT): all of them up to this many, else a seeded sample. 10,000 users give
# a holdout NDCG@10 within about +-0.003 (ml-latest-small has 610: all of them).
EVAL_USERS_MAX = 10_000
# Validation users whose histories reach the driver to calibrate the cold-start blend (it then
# scores at most batch.train.BLEND_USERS_MAX of them per bucket).
CALIBRATION_USERS_MAX = 10_000
EVAL_SAMPLE_SALT = 3  # the sample's hash stream, apart from the split's (seed) and the folds' (seed + 7)
_SPLIT_BUCKETS = 1_000_000  # resolution of the hash that assigns a rating to a split or a fold


def as_frame(spark, ratings, columns: tuple[str, ...] = ("user_id", "movie_id", "rating", "timestamp")):
    """A Spark DataFrame of ratings; pandas input is handed to Spark once (the offline tools)."""
    if not isinstance(ratings, pd.DataFrame):
        return ratings
    spark_type = {"int32": "int", "float32": "float", "int64": "long"}
    cols = [c for c in columns if c in ratings.columns]
    frame = ratings[cols].astype({c: RATING_DTYPES[c] for c in cols})
    return spark.createDataFrame(frame, ", ".join(f"{c} {spark_type[RATING_DTYPES[c]]}" for c in cols))


PICK_STREAM = 1  # pick's stream of a seed, apart from holdout_of's (the seed itself)


def distinct_users(df) -> np.ndarray:
    """Sorted user ids (O(users) on the driver)."""
    ids = df.select("user_id").distinct().toPandas()["user_id"].to_numpy(np.int64)
    return np.sort(ids)


def pick(ids: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """All of `ids` when there are at most `limit`, else a seeded sample of `limit` (sorted).

    Drawn from its own stream of `seed`: a sample without replacement is a prefix of one seeded
    permutation, so with `seed` itself the holdout's judges (this) and the blend's validation
    users (batch.metrics.holdout_of, same ids and seed) were prefixes of the same permutation,
    nested instead of independent; at 162,541 users every judge was a validation user, and the
    warm list metrics had no user left (the 25M scale run, 2026-12-02)."""
    ids = np.asarray(ids)
    if len(ids) <= limit:
        return np.sort(ids)
    return np.sort(np.random.default_rng([seed, PICK_STREAM]).choice(ids, limit, replace=False))


def _users_frame(spark, users: np.ndarray):
    from pyspark.sql import functions as F

    frame = pd.DataFrame({"user_id": np.asarray(users, np.int64).astype("int32")})
    return F.broadcast(spark.createDataFrame(frame, "user_id int"))


def rows_of(df, users: np.ndarray) -> pd.DataFrame:
    """The ratings of `users` (a bounded list), collected to the driver."""
    return to_pandas(df.join(_users_frame(df.sparkSession, users), "user_id", "left_semi"))


def without(df, users: np.ndarray):
    """`df` minus the ratings of `users` (stays in Spark)."""
    return df.join(_users_frame(df.sparkSession, users), "user_id", "left_anti")


def counts_by(df, key: str) -> pd.Series:
    """Ratings per `key` (user_id or movie_id): O(keys) on the driver."""
    c = df.groupBy(key).count().toPandas()
    return pd.Series(c["count"].to_numpy(np.int64), index=c[key].to_numpy(np.int64))


def hash_fraction(seed: int, *cols: str):
    """A column in [0, 1) from a seeded hash of `cols`: the same row gets the same value on every
    run and partitioning, which a per-row random number does not."""
    from pyspark.sql import functions as F

    return F.pmod(F.xxhash64(*[F.col(c) for c in cols], F.lit(seed)), F.lit(_SPLIT_BUCKETS)) / _SPLIT_BUCKETS


def evaluation_sample(df, n: int, limit: int, seed: int) -> tuple[object, dict | None]:
    """(`df`, None) when its `n` ratings are at most `limit` (0: no limit); else the ratings of a
    seeded hash sample of users holding about `limit` of them (whole users: their histories stay
    whole for the holdout and the blend), and what the sample was."""
    if limit <= 0 or n <= limit:
        return df, None
    fraction = limit / n
    sample = df.where(hash_fraction(seed + EVAL_SAMPLE_SALT, "user_id") < fraction)
    return sample, {"limit": int(limit), "user_fraction": round(fraction, 6), "of_ratings": int(n)}


def split_frame(df, how: str, test_fraction: float, seed: int):
    """(train, test) in Spark: each (user, movie) by a seeded hash ("random"), or the newest
    `test_fraction` by event time, ties by user and movie ("time")."""
    from streamrec.history_frames import first_rows

    if not 0 < test_fraction < 1:
        raise InvalidRequest(f"test_fraction must be between 0 and 1, got {test_fraction}")
    if how == "random":
        test = hash_fraction(seed, "user_id", "movie_id") < test_fraction
    elif how == "time":
        n = df.count()
        test = ~first_rows(df, int(np.floor((1 - test_fraction) * n)), ("timestamp", "user_id", "movie_id"))
    else:
        raise InvalidRequest(f"split must be random or time, got {how!r}")
    return df.where(~test), df.where(test)


def folds_frame(df, folds: int, seed: int) -> list:
    """k (train, validation) pairs by a seeded hash of (user, movie)."""
    from pyspark.sql import functions as F

    fold = F.floor(hash_fraction(seed + 7, "user_id", "movie_id") * folds)
    return [(df.where(fold != f), df.where(fold == f)) for f in range(folds)]

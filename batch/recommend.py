"""Top-k recommendations for a user, with cold start, and similar movies by three metrics.

Pure NumPy over the published model's compact factors; only LSH needs Spark.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from streamrec.errors import StreamrecError
from streamrec.foldin import fold_in, top_k
from streamrec.model_store import Model

MIN_RATING, MAX_RATING = 0.5, 5.0


@dataclass
class Recommendations:
    user_id: int | None
    source: str  # "model", "stream", "fold-in", "popularity"
    model_version: str | None
    items: pd.DataFrame  # rank, movie_id, title, score, genres
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "user_id": self.user_id,
            "source": self.source,
            "model_version": self.model_version,
            "notes": self.notes,
            "items": self.items.to_dict("records"),
        }


def parse_rated(text: str) -> pd.DataFrame:
    """'1:5,260:4.5' -> (movie_id, rating) rows, validated against the rating domain."""
    rows = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            movie, rating = part.split(":")
            m, r = int(movie), float(rating)
        except ValueError:
            raise StreamrecError(f"--rated: {part!r} is not MOVIE:RATING (e.g. 1:5,260:4.5)") from None
        if not (MIN_RATING <= r <= MAX_RATING) or r * 2 != int(r * 2):
            raise StreamrecError(f"--rated: rating {r} for movie {m} is outside 0.5..5.0 in steps of 0.5")
        rows.append((m, r))
    if not rows:
        raise StreamrecError("--rated is empty")
    return pd.DataFrame(rows, columns=["movie_id", "rating"]).drop_duplicates("movie_id", keep="last")


def popularity(
    ratings: pd.DataFrame, movies: pd.DataFrame | None, min_count: int, genres: list[str] | None = None
) -> pd.DataFrame:
    """Bayesian-average rating: (C*mu + sum r) / (C + n), only movies with n >= min_count."""
    mu = float(ratings["rating"].mean())
    g = ratings.groupby("movie_id")["rating"].agg(["sum", "count"])
    g = g[g["count"] >= min_count]
    score = (min_count * mu + g["sum"]) / (min_count + g["count"])
    out = pd.DataFrame({"movie_id": g.index.astype(np.int64), "score": score.to_numpy(), "n": g["count"]})
    if genres and movies is not None:
        out = out[out["movie_id"].isin(_genre_ids(movies, genres))]
    return out.sort_values(["score", "n"], ascending=False, kind="stable").reset_index(drop=True)


def _table(ids, scores, movies: pd.DataFrame) -> pd.DataFrame:
    info = movies.set_index("movie_id")
    ids = np.asarray(ids, dtype=np.int64)
    return pd.DataFrame(
        {
            "rank": np.arange(1, len(ids) + 1),
            "movie_id": ids,
            "title": [info["title"].get(i, f"movie {i}") for i in ids],
            "score": np.round(np.clip(np.asarray(scores, float), MIN_RATING, MAX_RATING), 3),
            "genres": ["|".join(info["genres"].get(i, [])) for i in ids],
        }
    )


def recommend(
    model: Model,
    user_id: int | None,
    history: pd.DataFrame,
    movies: pd.DataFrame,
    k: int = 10,
    rated: pd.DataFrame | None = None,
    genres: list[str] | None = None,
    min_count: int = 20,
    streamed: tuple[np.ndarray, float] | None = None,
) -> Recommendations:
    """Top-k unrated movies for a user.

    Order of preference: `rated` given -> fold in the user's history plus those ratings;
    a streamed vector for CURRENT -> use it; a user the model trained on with no newer ratings
    -> the model's vector; a user with ratings -> fold them in now; else popularity.
    """
    if k < 1:
        raise StreamrecError(f"-k must be >= 1, got {k}")
    mine = history[history["user_id"] == user_id] if user_id is not None else None
    # The model's stored vector is current only if the model saw all of this user's ratings.
    newest = model.meta.get("newest_event_ts")
    model_is_fresh = mine is None or newest is None or bool((mine["timestamp"] <= newest).all())
    mine = mine[["movie_id", "rating"]] if mine is not None else None
    if rated is not None:
        mine = pd.concat([mine, rated]) if mine is not None else rated
        mine = mine.drop_duplicates("movie_id", keep="last")
    seen = mine["movie_id"].to_numpy() if mine is not None else np.empty(0, np.int64)
    notes: list[str] = []

    vector, bias, source = None, 0.0, None
    stored = model.user_vector(user_id) if user_id is not None else None
    if rated is None and streamed is not None:
        (vector, bias), source = streamed, "stream"
    elif rated is None and model_is_fresh and stored is not None:
        (vector, bias), source = stored, "model"
    elif mine is not None and len(mine):
        f = fold_in(model.items, mine["movie_id"].to_numpy(), mine["rating"].to_numpy(), model.reg)
        if f.n_unknown:
            notes.append(f"{f.n_unknown} rated movie(s) unknown to model {model.version} ignored")
        if f.vector is not None:
            vector, bias, source = f.vector, f.bias, "fold-in"
    if vector is not None:
        if genres:
            allowed = _genre_ids(movies, genres)
            exclude = np.union1d(seen, np.setdiff1d(model.items.ids, allowed))
        else:
            exclude = seen
        ids, scores = top_k(model.items, vector, k, exclude=exclude, bias=bias)
        return Recommendations(user_id, source, model.version, _table(ids, scores, movies), notes)

    notes.append("cold start: no usable ratings, recommending by popularity (Bayesian average)")
    pop = popularity(history, movies, min_count, genres)
    pop = pop[~pop["movie_id"].isin(seen)].head(k)
    return Recommendations(
        user_id, "popularity", model.version, _table(pop["movie_id"], pop["score"], movies), notes
    )


def _genre_ids(movies: pd.DataFrame, genres: list[str]) -> np.ndarray:
    """Sorted ids of the movies in any of `genres` (case-insensitive)."""
    wanted = {g.lower() for g in genres}
    mask = movies["genres"].map(lambda gs: bool(wanted & {g.lower() for g in gs}))
    return np.sort(movies.loc[mask, "movie_id"].to_numpy(np.int64))


# -- similar movies ------------------------------------------------------------------------------


def similar_candidates(model: Model, min_count: int | None = None) -> np.ndarray | None:
    """Movies `similar` may return: the model's servable set, or those with >= `min_count`
    training ratings. Why: a rarely rated movie's factors are mostly the prior (short, noisy
    vectors), and under cosine such vectors crowd out well-known neighbours."""
    if min_count is None:
        return model.items.servable
    if model.items.support is None:
        raise StreamrecError(
            f"model {model.version} has no per-movie rating counts: retrain it to use --min-count"
        )
    return model.items.support >= min_count


def _query_row(model: Model, movie_id: int) -> int:
    pos, known = model.items.rows(np.array([movie_id]))
    if not known[0]:
        raise StreamrecError(f"movie {movie_id} is unknown to model {model.version}")
    return int(pos[0])


def similar_exact(
    model: Model, movie_id: int, k: int, metric: str, candidates: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Exact neighbours over all factor dimensions: cosine similarity or Euclidean distance.

    `candidates` (a mask over the model's items) limits which movies may be returned.
    """
    row = _query_row(model, movie_id)
    v = model.items.factors.astype(np.float64)
    q = v[row]
    if metric == "cosine":
        norms = np.linalg.norm(v, axis=1) * np.linalg.norm(q)
        score = np.divide(v @ q, norms, out=np.zeros(len(v)), where=norms > 0)
        order_key = -score
    elif metric == "euclidean":
        score = np.linalg.norm(v - q, axis=1)
        order_key = score
    else:
        raise StreamrecError(f"unknown metric {metric!r}")
    if candidates is not None:
        order_key[~candidates] = np.inf
    order_key[row] = np.inf
    k = min(k, int(np.isfinite(order_key).sum()))
    if k == 0:
        return model.items.ids[:0], score[:0]
    best = np.argpartition(order_key, k - 1)[:k]
    best = best[np.argsort(order_key[best], kind="stable")]
    return model.items.ids[best], score[best]


def similar_lsh(
    spark,
    model: Model,
    movie_id: int,
    k: int,
    bucket_length: float = 2.0,
    tables: int = 5,
    seed: int = 42,
    candidates: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Approximate Euclidean neighbours with Spark's BucketedRandomProjectionLSH."""
    from pyspark.ml.feature import BucketedRandomProjectionLSH
    from pyspark.ml.linalg import Vectors

    row = _query_row(model, movie_id)
    keep = np.ones(len(model.items.ids), bool) if candidates is None else candidates.copy()
    keep[row] = False
    ids, factors = model.items.ids[keep], model.items.factors[keep]
    rows = [(int(i), Vectors.dense(f.tolist())) for i, f in zip(ids, factors, strict=True)]
    if not rows:
        return model.items.ids[:0], np.zeros(0)
    df = spark.createDataFrame(rows, ["id", "features"])
    lsh = BucketedRandomProjectionLSH(
        inputCol="features", outputCol="hashes", bucketLength=bucket_length, numHashTables=tables, seed=seed
    ).fit(df)
    key = Vectors.dense(model.items.factors[row].tolist())
    found = lsh.approxNearestNeighbors(df, key, k, distCol="distance").toPandas()
    return found["id"].to_numpy(np.int64), found["distance"].to_numpy()


def recall(approx: np.ndarray, exact: np.ndarray) -> float:
    return len(set(approx.tolist()) & set(exact.tolist())) / max(len(exact), 1)

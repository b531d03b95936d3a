"""Top-k recommendations (one user, or every user of a ratings file) and similar movies.

Lists are ranked by the model version's ranking model through its `Scorer` (cold-start blend
included) and show the explicit model's predicted rating; similar movies compare the ranking
model's item factors. Pure NumPy over the published model's compact factors; only LSH needs Spark.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from streamrec.errors import StreamrecError
from streamrec.events import MAX_ID, valid_rating
from streamrec.model_store import Model

from .catalog import Catalog


@dataclass
class Recommendations:
    user_id: int | None
    source: str  # "model", "stream", "fold-in", "popularity"
    model_version: str | None
    items: pd.DataFrame  # rank, movie_id, title, score, predicted_rating, genres
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
        if not valid_rating(r):
            raise StreamrecError(f"--rated: rating {r} for movie {m} is outside 0.5..5.0 in steps of 0.5")
        rows.append((m, r))
    if not rows:
        raise StreamrecError("--rated is empty")
    return pd.DataFrame(rows, columns=["movie_id", "rating"]).drop_duplicates("movie_id", keep="last")


def _table(ids, scores, predicted, catalog: Catalog) -> pd.DataFrame:
    ids = np.asarray(ids, dtype=np.int64)
    return pd.DataFrame(
        {
            "rank": np.arange(1, len(ids) + 1),
            "movie_id": ids,
            "title": [catalog.title(i) for i in ids],
            "score": np.round(np.asarray(scores, float), 4),
            "predicted_rating": np.round(np.asarray(predicted, float), 2),
            "genres": ["|".join(catalog.genres_of(i)) for i in ids],
        }
    )


def recommend(
    model: Model,
    user_id: int | None,
    mine: pd.DataFrame | None,
    movies: pd.DataFrame | Catalog,
    k: int = 10,
    rated: pd.DataFrame | None = None,
    genres: list[str] | None = None,
    explain: bool = False,
    fold_in: bool = False,
) -> Recommendations:
    """Top-k unrated movies for a user, ranked by the ranking model with the cold-start blend.

    `mine` is the user's known ratings (movie_id, rating, timestamp; latest per movie), None for
    a user with no identity. Order of preference: `rated` given -> fold in `mine` plus those ratings;
    a user the model trained on with no newer ratings -> the model's vectors; a user with ratings
    -> fold them in now; else the most popular movies. `fold_in`: fold `mine` in even when the
    model's vector looks current (the caller holds ratings the model never saw, whatever their
    event time: the read-your-writes buffer). (The stream's lists are served by
    `serving.lists.Lists`, which falls back to this.) Every list shows the explicit model's
    predicted rating per movie.
    """
    if k < 1:
        raise StreamrecError(f"-k must be >= 1, got {k}")
    catalog = movies if isinstance(movies, Catalog) else Catalog.of(movies)
    scorer = model.scorer
    # The model's stored vector is current only if the model saw all of this user's ratings.
    newest = model.meta.newest_event_ts
    model_is_fresh = mine is None or newest is None or bool((mine["timestamp"] <= newest).all())
    mine = mine[["movie_id", "rating"]] if mine is not None else None
    if rated is not None:
        mine = pd.concat([mine, rated]) if mine is not None else rated
        mine = mine.drop_duplicates("movie_id", keep="last")
    seen = mine["movie_id"].to_numpy() if mine is not None else np.empty(0, np.int64)
    notes: list[str] = []

    stored = model.stored_users(user_id) if user_id is not None else None
    if rated is None and not fold_in and model_is_fresh and stored is not None:
        users, source = stored, "model"
    else:
        users = scorer.fold_in_one(mine["movie_id"].to_numpy() if mine is not None else [],
                                   mine["rating"].to_numpy() if mine is not None else [])  # fmt: skip
        source = "fold-in"
        if users.n_unknown.sum():
            notes.append(
                f"{int(users.n_unknown.sum())} rated movie(s) unknown to model {model.version} ignored"
            )
    if users.n_used[0] == 0:
        source = "popularity"
        notes.append("cold start: no usable ratings, recommending the most popular movies")
    elif (w := float(scorer.blend.weight(users.n_used)[0])) > 0:
        notes.append(
            f"cold-start blend: {int(users.n_used[0])} known rating(s), popularity prior weight {w:g}"
        )
    allowed = np.isin(model.items.ids, catalog.ids_in(genres), assume_unique=True) if genres else None
    ids, scores, predicted = scorer.top_k(users, k, [seen], allowed)[0]
    table = _table(ids, scores, predicted, catalog)
    if explain:
        table["explanation"] = explanations(scorer, mine, ids, catalog)
    return Recommendations(user_id, source, model.version, table, notes)


def explanations(scorer, mine: pd.DataFrame | None, ids, catalog: Catalog) -> list[dict]:
    """Per listed movie: the popularity prior, the 3 rated movies that contribute most and the
    rest (streamrec.explain); they add up to the movie's score. No ratings: popularity."""
    from streamrec.explain import explain

    movies = mine["movie_id"].to_numpy() if mine is not None else np.empty(0, np.int64)
    ratings = mine["rating"].to_numpy() if mine is not None else np.empty(0)
    return [e.to_dict(catalog.title) for e in explain(scorer, movies, ratings, ids)]


def read_ratings_file(path: Path) -> pd.DataFrame:
    """`user_id,movie_id,rating[,timestamp]` rows with a header; one-line `file:line` errors.

    Rows are checked against the event contract's domain (ids 1..2^31-1, ratings 0.5..5.0 in
    steps of 0.5); a later row for the same (user, movie) replaces an earlier one.
    """
    import csv

    try:
        fh = open(path, newline="", encoding="utf-8")
    except OSError as exc:
        raise StreamrecError(f"{path}: cannot read ({exc.strerror})") from None
    rows = []
    with fh:
        reader = csv.reader(fh)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise StreamrecError(f"{path}: empty file (expected a user_id,movie_id,rating header)") from None
        except (csv.Error, UnicodeDecodeError) as exc:
            raise StreamrecError(f"{path}:1: unreadable header ({exc})") from None
        missing = [c for c in ("user_id", "movie_id", "rating") if c not in header]
        if missing or len(set(header)) != len(header):
            raise StreamrecError(
                f"{path}:1: header must name user_id,movie_id,rating (optional timestamp), "
                f"got {','.join(header)}"
            )
        cols = [header.index(c) for c in ("user_id", "movie_id", "rating")]
        try:
            for line, row in enumerate(reader, 2):
                if not row or not "".join(row).strip():
                    continue
                if len(row) != len(header):
                    raise StreamrecError(f"{path}:{line}: {len(row)} fields, expected {len(header)}")
                rows.append(_check_row(path, line, *(row[c].strip() for c in cols)))
        except (csv.Error, UnicodeDecodeError) as exc:
            raise StreamrecError(f"{path}:{reader.line_num}: unreadable ({exc})") from None
    df = pd.DataFrame(rows, columns=["user_id", "movie_id", "rating"])
    return df.drop_duplicates(["user_id", "movie_id"], keep="last").reset_index(drop=True)


def _check_row(path: Path, line: int, user: str, movie: str, rating: str) -> tuple[int, int, float]:
    try:
        u, m = int(user), int(movie)
    except ValueError:
        raise StreamrecError(
            f"{path}:{line}: user_id and movie_id must be integers, got {user!r}, {movie!r}"
        ) from None
    try:
        r = float(rating)
    except ValueError:
        raise StreamrecError(f"{path}:{line}: rating {rating!r} is not a number") from None
    if not (0 < u <= MAX_ID and 0 < m <= MAX_ID):
        raise StreamrecError(f"{path}:{line}: ids must be in 1..{MAX_ID}")
    if not valid_rating(r):
        raise StreamrecError(f"{path}:{line}: rating {rating} is outside 0.5..5.0 in steps of 0.5")
    return u, m, r


def recommend_many(model: Model, ratings: pd.DataFrame, k: int = 10, chunk: int = 2000) -> list[dict]:
    """Each user of `ratings` folded in from exactly those rows (known to the model or not):
    one vectorised fold-in for all users, then a top-k of the movies not in their rows."""
    if k < 1:
        raise StreamrecError(f"-k must be >= 1, got {k}")
    out: list[dict] = []
    ids = np.unique(ratings["user_id"].to_numpy())
    for lo in range(0, len(ids), chunk):  # bounded memory: a score matrix per chunk of users
        part = ratings[ratings["user_id"].isin(ids[lo : lo + chunk])]
        out.extend(_recommend_chunk(model, part, k))
    return out


def _recommend_chunk(model: Model, ratings: pd.DataFrame, k: int) -> list[dict]:
    scorer = model.scorer
    users = scorer.fold_in(ratings["user_id"], ratings["movie_id"], ratings["rating"])
    seen = [g.to_numpy() for _, g in ratings.groupby("user_id")["movie_id"]]  # sorted like users.ids
    out = []
    for u, n, (ids, scores, pred) in zip(users.ids, users.n_used, scorer.top_k(users, k, seen), strict=True):
        out.append({
            "user_id": int(u),
            "source": "fold-in" if n else "popularity",
            "model_version": model.version,
            "items": [{"movie_id": int(i), "score": round(float(s), 4),
                       "predicted_rating": round(float(p), 2)}
                      for i, s, p in zip(ids, scores, pred, strict=True)],
        })  # fmt: skip
    return out


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
    v = model.ranking.factors.astype(np.float64)
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
    ids, factors = model.items.ids[keep], model.ranking.factors[keep]
    rows = [(int(i), Vectors.dense(f.tolist())) for i, f in zip(ids, factors, strict=True)]
    if not rows:
        return model.items.ids[:0], np.zeros(0)
    df = spark.createDataFrame(rows, ["id", "features"])
    lsh = BucketedRandomProjectionLSH(
        inputCol="features", outputCol="hashes", bucketLength=bucket_length, numHashTables=tables, seed=seed
    ).fit(df)
    key = Vectors.dense(model.ranking.factors[row].tolist())
    found = lsh.approxNearestNeighbors(df, key, k, distCol="distance").toPandas()
    return found["id"].to_numpy(np.int64), found["distance"].to_numpy()


def recall(approx: np.ndarray, exact: np.ndarray) -> float:
    return len(set(approx.tolist()) & set(exact.tolist())) / max(len(exact), 1)

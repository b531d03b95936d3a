"""Content vectors: a movie with no ratings placed in the ranking model's item-factor space.

A movie known only from movies.csv (or from an event) has no ALS vector. Its content (genres,
the bundled tags where the layout has them, the release year in its title) is mapped into the
ranking model's item-factor space by a ridge regression fitted at train time on the movies that
do have vectors:

    F = features(movies)          multi-hot genres | year features | tag words | intercept
    W = (F'DF + lam P)^-1 F'DY    Y = ranking item factors, D = reliability weights
    y_content = F W

The feature vocabulary (genres, tag words, the year's mean and spread) is chosen at fit time and
stored with W, so the same movie gets the same features in every process. Pure NumPy/pandas:
train, the stream and serving share it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

# "Toy Story (1995)", "Babylon 5 (1994-1998)", "Jim & Andy (2017– )"; a year in parentheses at the
# end of the title (trailing spaces allowed), parentheses elsewhere in the title are ignored.
_YEAR = re.compile(r"\((\d{4})(?:\s*[-–]\s*\d{0,4}\s*)?\)\s*$")
YEAR_RANGE = (1870, 2100)  # a 4-digit number outside this is not a release year
# Decade bins (left edges) for the year's one-hot part; the standardized year carries the trend.
YEAR_EDGES = (1950, 1960, 1970, 1980, 1990, 2000, 2010)
NO_GENRE = "(no genres listed)"
LAMBDAS = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0)
TAG_VOCAB = 200  # tag words kept: the most widely used, by number of distinct movies
TAG_MIN_MOVIES = 2  # a tag on one movie only cannot generalise to another
VALIDATION = 0.2  # share of fitted movies held out of the ridge fit to choose lambda
MIN_VALIDATION = 10  # movies on each side of that split, at least, to choose by it


def parse_year(title: object) -> int | None:
    """The release year at the end of a MovieLens title, None when there is none."""
    if not isinstance(title, str):
        return None
    m = _YEAR.search(title)
    if not m:
        return None
    year = int(m.group(1))
    return year if YEAR_RANGE[0] <= year <= YEAR_RANGE[1] else None


def load_tags(data_folder: Path) -> pd.DataFrame:
    """The layout's tags as (movie_id, tag); an empty frame with those columns when it has none."""
    from .movielens import load_tags as load_all

    tags = load_all(Path(data_folder))
    if tags.empty:
        return empty_tags()
    return pd.DataFrame({"movie_id": tags["movie_id"].astype(np.int64), "tag": tags["tag"].astype(str)})


def empty_tags() -> pd.DataFrame:
    return pd.DataFrame({"movie_id": pd.Series(dtype=np.int64), "tag": pd.Series(dtype=object)})


def genres_of(value: object) -> list[str]:
    """A movie's genres from a list (load_movies) or a "A|B" string; none for missing values."""
    if isinstance(value, str):
        value = value.split("|")
    if isinstance(value, list | tuple | np.ndarray):
        return [g for g in (str(x).strip() for x in value) if g and g != NO_GENRE]
    return []


def _movie_table(movies: pd.DataFrame) -> pd.DataFrame:
    """One row per movie id, sorted: movie_id int64, year float (NaN unknown), genres list."""
    df = movies.drop_duplicates("movie_id", keep="first").sort_values("movie_id", kind="stable")
    ids = df["movie_id"].to_numpy(np.int64)
    if "year" in df.columns:
        year = pd.to_numeric(df["year"], errors="coerce").astype(np.float64).to_numpy()
    else:
        year = np.full(len(df), np.nan)
    if "title" in df.columns:  # the title's year when the frame has none
        parsed = np.array([np.nan if (y := parse_year(t)) is None else y for t in df["title"]], np.float64)
        year = np.where(np.isnan(year), parsed, year)
    year[(year < YEAR_RANGE[0]) | (year > YEAR_RANGE[1])] = np.nan
    genres = df["genres"].map(genres_of) if "genres" in df.columns else pd.Series([[]] * len(df))
    return pd.DataFrame({"movie_id": ids, "year": year, "genres": list(genres)})


def _clean_tags(tags: pd.DataFrame | None) -> pd.DataFrame:
    """Distinct (movie_id, tag) pairs, tags lower-cased with whitespace collapsed."""
    if tags is None or len(tags) == 0:
        return empty_tags()
    tag = tags["tag"].astype(str).str.lower().str.replace(r"\s+", " ", regex=True).str.strip()
    out = pd.DataFrame({"movie_id": pd.to_numeric(tags["movie_id"], errors="coerce"), "tag": tag})
    out = out[(out["tag"] != "") & out["movie_id"].notna()]
    return out.astype({"movie_id": np.int64}).drop_duplicates(ignore_index=True)


@dataclass(frozen=True)
class FeatureSpec:
    """What a movie's feature vector is made of; chosen at fit time, stored with the weights."""

    genres: tuple[str, ...]
    tags: tuple[str, ...]
    year_mean: float
    year_std: float
    year_edges: tuple[int, ...] = YEAR_EDGES

    @classmethod
    def fit(cls, movies: pd.DataFrame, tags: pd.DataFrame | None, n_tags: int = TAG_VOCAB) -> FeatureSpec:
        """Vocabulary from these movies: every genre seen, the `n_tags` tags on most distinct
        movies (at least TAG_MIN_MOVIES; ties by name), the known years' mean and spread."""
        table = _movie_table(movies)
        genres = tuple(sorted({g for gs in table["genres"] for g in gs}))
        t = _clean_tags(tags)
        t = t[t["movie_id"].isin(table["movie_id"])]
        per_tag = t.groupby("tag")["movie_id"].nunique()
        per_tag = per_tag[per_tag >= TAG_MIN_MOVIES].reset_index(name="n")
        top = per_tag.sort_values(["n", "tag"], ascending=[False, True], kind="stable").head(n_tags)
        years = table["year"].dropna().to_numpy()
        mean = float(years.mean()) if len(years) else 2000.0
        std = float(years.std()) if len(years) > 1 and years.std() > 0 else 1.0
        return cls(genres, tuple(sorted(top["tag"])), mean, std)

    @property
    def names(self) -> list[str]:
        """Feature names, column order of `matrix`."""
        bins = [f"year<{self.year_edges[0]}"] + [f"year>={e}" for e in self.year_edges]
        return (["intercept", "year_unknown", "year_z", "year_z2", *bins]
                + [f"genre:{g}" for g in self.genres] + [f"tag:{t}" for t in self.tags])  # fmt: skip

    @property
    def n_features(self) -> int:
        return 4 + len(self.year_edges) + 1 + len(self.genres) + len(self.tags)

    def matrix(self, movies: pd.DataFrame, tags: pd.DataFrame | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(movie ids sorted, F float64 (n, n_features)). Unknown genres and tags are ignored."""
        table = _movie_table(movies)
        ids = table["movie_id"].to_numpy(np.int64)
        f = np.zeros((len(ids), self.n_features))
        f[:, 0] = 1.0
        year = table["year"].to_numpy(np.float64)
        known = ~np.isnan(year)
        f[~known, 1] = 1.0
        z = np.clip((year[known] - self.year_mean) / self.year_std, -4.0, 4.0)
        f[known, 2], f[known, 3] = z, z**2
        bins = np.searchsorted(np.asarray(self.year_edges), year[known], side="right")
        f[np.flatnonzero(known), 4 + bins] = 1.0
        col = 4 + len(self.year_edges) + 1
        genre_col = {g: col + j for j, g in enumerate(self.genres)}
        for r, gs in enumerate(table["genres"]):
            for g in gs:
                if g in genre_col:
                    f[r, genre_col[g]] = 1.0
        col += len(self.genres)
        if self.tags:
            t = _clean_tags(tags)
            tag_col = pd.Series(np.arange(len(self.tags)) + col, index=list(self.tags))
            t = t[t["tag"].isin(tag_col.index) & t["movie_id"].isin(ids)]
            f[np.searchsorted(ids, t["movie_id"].to_numpy()), tag_col[t["tag"]].to_numpy()] = 1.0
        return ids, f


def ridge(f: np.ndarray, y: np.ndarray, lam: float, weights: np.ndarray | None = None) -> np.ndarray:
    """W = (F'DF + lam P)^-1 F'DY with P the identity except 0 for column 0 (the intercept is not
    shrunk: the mean item vector is not something to pull toward zero)."""
    d = np.ones(len(f)) if weights is None else np.asarray(weights, np.float64)
    fd = f.T * d
    penalty = np.full(f.shape[1], float(lam))
    penalty[0] = 0.0
    a = fd @ f + np.diag(penalty)
    return np.linalg.lstsq(a, fd @ y, rcond=None)[0] if lam == 0 else np.linalg.solve(a, fd @ y)


def support_weights(support: np.ndarray, half: float) -> np.ndarray:
    """n / (n + half): how much a movie's trained vector is to be trusted as a regression target.

    A movie rated once has a vector that is mostly its one rater's direction (noise around the
    content's answer), one with hundreds of ratings a well-determined one. Dropping rare movies
    instead (n >= min_support) would fit only popular movies, whose vectors are longer in implicit
    ALS, and say nothing about the rare ones a cold movie resembles more; weighting keeps them at
    a discount (half weight at n = half)."""
    n = np.asarray(support, np.float64)
    return n / (n + half)


def _quality(pred: np.ndarray, y: np.ndarray, w: np.ndarray, mean: np.ndarray) -> dict:
    """Weighted R^2 against the weighted mean vector, and the weighted mean cosine."""
    sse = float((w * ((pred - y) ** 2).sum(1)).sum())
    sst = float((w * ((y - mean) ** 2).sum(1)).sum())
    cos = (pred * y).sum(1) / np.maximum(np.linalg.norm(pred, axis=1) * np.linalg.norm(y, axis=1), 1e-12)
    return {"r2": 1 - sse / sst if sst > 0 else 0.0, "cosine": float((w * cos).sum() / w.sum())}


@dataclass(frozen=True)
class ContentMap:
    """Feature spec + ridge weights W (n_features, rank): content -> ranking item factors."""

    spec: FeatureSpec
    weights: np.ndarray  # float64 (n_features, rank)
    lam: float
    summary: dict = field(default_factory=dict, compare=False)  # fit figures, for metadata.json

    @property
    def rank(self) -> int:
        return int(self.weights.shape[1])

    def vectors(self, movies: pd.DataFrame, tags: pd.DataFrame | None) -> tuple[np.ndarray, np.ndarray]:
        """(movie ids int64 sorted, factors float32 (n, rank)) for every movie of `movies`."""
        ids, f = self.spec.matrix(movies, tags)
        return ids, (f @ self.weights).astype(np.float32)

    def to_npz_dict(self) -> dict[str, np.ndarray]:
        s = self.spec
        return {
            "content_genres": np.array(s.genres, dtype=str),
            "content_tags": np.array(s.tags, dtype=str),
            "content_year": np.array([s.year_mean, s.year_std], np.float64),
            "content_year_edges": np.array(s.year_edges, np.int64),
            "content_weights": np.asarray(self.weights, np.float64),
            "content_lambda": np.array(self.lam, np.float64),
        }

    @classmethod
    def from_npz(cls, z: Mapping[str, np.ndarray]) -> ContentMap:
        """From `np.load(...)` of a file written with `to_npz_dict` (or that dict itself)."""
        year = np.asarray(z["content_year"], np.float64)
        genres, tags = tuple(str(g) for g in z["content_genres"]), tuple(str(t) for t in z["content_tags"])
        edges = tuple(int(e) for e in z["content_year_edges"])
        spec = FeatureSpec(genres, tags, float(year[0]), float(year[1]), edges)
        weights = np.asarray(z["content_weights"], np.float64)
        if weights.shape[0] != spec.n_features:
            raise ValueError(f"content weights have {weights.shape[0]} rows for {spec.n_features} features")
        return cls(spec, weights, float(z["content_lambda"]))

    def save(self, path: Path) -> None:
        np.savez(path, **self.to_npz_dict())

    @classmethod
    def load(cls, path: Path) -> ContentMap:
        with np.load(path, allow_pickle=False) as z:
            return cls.from_npz(z)


def fit_content_map(
    movies: pd.DataFrame,
    tags: pd.DataFrame | None,
    item_ids: np.ndarray,
    item_factors: np.ndarray,
    support: np.ndarray,
    *,
    half_weight: float = 10.0,
    n_tags: int = TAG_VOCAB,
    lambdas: tuple[float, ...] = LAMBDAS,
    seed: int = 42,
) -> ContentMap:
    """Fit the map on the movies that have a trained vector (support > 0).

    Lambda is chosen on a seeded VALIDATION share of those movies (weighted squared error of
    their predicted vectors), then the map is refit on all of them with it. Movies missing from
    `movies` still get a row (intercept and "year unknown" only)."""
    item_ids = np.asarray(item_ids, np.int64)
    keep = np.asarray(support) > 0
    ids, y, n = item_ids[keep], np.asarray(item_factors, np.float64)[keep], np.asarray(support)[keep]
    order = np.argsort(ids, kind="stable")
    ids, y, n = ids[order], y[order], n[order]
    known = pd.DataFrame({"movie_id": ids})
    table = known.merge(movies.drop_duplicates("movie_id"), on="movie_id", how="left")
    spec = FeatureSpec.fit(table, tags, n_tags)
    fid, f = spec.matrix(table, tags)
    assert np.array_equal(fid, ids)
    if len(ids) == 0:
        raise ValueError("no movie has ratings: nothing to fit a content map on")
    w = support_weights(n, half_weight)
    val = np.random.default_rng(seed).random(len(ids)) < VALIDATION
    grid = []
    if val.sum() >= MIN_VALIDATION and (~val).sum() >= MIN_VALIDATION:
        for lam in lambdas:
            wt = ridge(f[~val], y[~val], lam, w[~val])
            mean = np.average(y[~val], axis=0, weights=w[~val])
            grid.append({"lambda": lam, **_quality(f[val] @ wt, y[val], w[val], mean)})
    # too few movies to validate on (a toy catalogue): a middling lambda, and no figures
    best = (
        max(grid, key=lambda g: g["r2"])
        if grid
        else {"lambda": 1.0, "r2": float("nan"), "cosine": float("nan")}
    )
    weights = ridge(f, y, best["lambda"], w)
    summary = {
        "features": {
            "genres": len(spec.genres),
            "tags": len(spec.tags),
            "year": 4 + len(spec.year_edges),
            "total": spec.n_features,
        },  # fmt: skip
        "lambda": best["lambda"],
        "movies_fitted": int(len(ids)),
        "movies_with_tags": int(f[:, 4 + len(spec.year_edges) + 1 + len(spec.genres) :].any(1).sum()),
        "weighting": f"support n / (n + {half_weight:g})",
        "validation": {
            "what": f"{int(val.sum())} of the fitted movies ({VALIDATION:.0%}, seed {seed}) left out of the "
            "ridge fit; their predicted vectors against their trained ones (weighted R^2, cosine)",
            "r2": round(best["r2"], 4) if grid else None,
            "cosine": round(best["cosine"], 4) if grid else None,
            "grid": [{k: round(v, 4) for k, v in g.items()} for g in grid],
        },
    }
    return ContentMap(spec, weights, best["lambda"], summary)

"""Movies a model version does not serve yet, laid over it: streamed and content item vectors.

CURRENT's catalogue is frozen at training time. The stream folds in movies it does not know (and
known movies below `--min-support`, from all of their ratings) against the user factors
(streamrec.item_foldin); a movie with no rating at all gets a vector from its content
(streamrec.content). `ItemOverlay` holds those vectors for one model version and `overlay_scorer`
merges them into that version's scorer, so every list path (the stream's lists, `recommend`,
`--ratings-file`, the API, `similar`) ranks old and new movies alike. A movie is servable once
its rating count, live ones included, reaches the version's `--min-support`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .foldin import ItemFactors
from .ids import rows as row_index
from .item_foldin import ItemSide, prior_weight
from .scorer import Scorer

SOURCES = ("stream", "content")


@dataclass(frozen=True)
class ItemOverlay:
    """Item vectors for one model version, ids sorted; `support` counts each movie's ratings."""

    version: str
    ids: np.ndarray  # int64 sorted
    rank_factors: np.ndarray  # float32 (n, ranking rank)
    factors: np.ndarray  # float32 (n, explicit rank)
    bias: np.ndarray  # float64 (n,) explicit item bias
    support: np.ndarray  # int64 (n,) ratings (training + live); 0 for content vectors
    source: np.ndarray  # str (n,): "stream" | "content"

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def empty(cls, version: str, rank: int, explicit_rank: int) -> ItemOverlay:
        return cls(version, np.empty(0, np.int64), np.empty((0, rank), np.float32),
                   np.empty((0, explicit_rank), np.float32), np.empty(0), np.empty(0, np.int64),
                   np.empty(0, dtype="<U7"))  # fmt: skip

    @classmethod
    def of_rows(cls, version: str, rows: list[dict], rank: int, explicit_rank: int) -> ItemOverlay:
        """From `item_vectors` rows (movie_id, n_ratings, source, vector JSON, bias) of `version`."""
        rows = sorted((r for r in rows if r["model_version"] == version), key=lambda r: r["movie_id"])
        if not rows:
            return cls.empty(version, rank, explicit_rank)
        vec = [json.loads(r["vector"]) for r in rows]
        return cls(
            version,
            np.array([r["movie_id"] for r in rows], np.int64),
            np.array([v["ranking"] for v in vec], np.float32).reshape(len(rows), rank),
            np.array([v.get("explicit") or [0.0] * explicit_rank for v in vec], np.float32),
            np.array([r["bias"] or 0.0 for r in rows], np.float64),
            np.array([r["n_ratings"] for r in rows], np.int64),
            np.array([r["source"] for r in rows]),
        )

    def merged(self, other: ItemOverlay) -> ItemOverlay:
        """`other`'s movies replace this one's (a streamed vector replaces a content one)."""
        keep = ~np.isin(self.ids, other.ids)
        order = np.argsort(np.concatenate([self.ids[keep], other.ids]), kind="stable")

        def cat(a, b):
            return np.concatenate([a[keep], b])[order]

        return ItemOverlay(self.version, cat(self.ids, other.ids), cat(self.rank_factors, other.rank_factors),
                           cat(self.factors, other.factors), cat(self.bias, other.bias),
                           cat(self.support, other.support), cat(self.source, other.source))  # fmt: skip

    # -- shipping to executors: one small npz, written aside and renamed ------------------

    def save(self, path: Path) -> None:
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "wb") as f:
            np.savez(f, version=np.array(self.version), ids=self.ids, rank_factors=self.rank_factors,
                     factors=self.factors, bias=self.bias, support=self.support,
                     source=self.source.astype("<U7"))  # fmt: skip
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> ItemOverlay:
        with np.load(path) as z:
            return cls(str(z["version"]), z["ids"], z["rank_factors"], z["factors"], z["bias"], z["support"],
                       z["source"])  # fmt: skip


def overlay_scorer(scorer: Scorer, overlay: ItemOverlay | None) -> Scorer:
    """`scorer`'s catalogue with the overlay's movies added (or, for known movies, replaced).

    Y'Y stays the trained items' (`ImplicitFactors.fixed_gram`): the user objective is the
    version's own, so a trained user still folds in to their stored vector. A replaced known movie
    (below --min-support in training) takes its streamed vector and its total rating count.
    """
    if overlay is None or len(overlay) == 0:
        return scorer
    items, ranking = scorer.items, scorer.ranking
    pos, known = row_index(items.ids, overlay.ids)
    new = ~known
    ids = np.concatenate([items.ids, overlay.ids[new]])
    order = np.argsort(ids, kind="stable")
    support = items.support if items.support is not None else np.full(len(items.ids), items.min_support)

    def merge(base: np.ndarray, extra: np.ndarray) -> np.ndarray:
        out = np.concatenate([base, extra[new]])
        out[pos[known]] = extra[known]
        return out[order]

    bias = items.bias if items.bias is not None else np.zeros(len(items.ids))
    merged_items = ItemFactors(
        ids[order],
        merge(items.factors, overlay.factors.astype(items.factors.dtype)),
        merge(bias, overlay.bias) if items.bias is not None else None,
        items.mean,
        items.user_bias_reg,
        merge(np.asarray(support, np.int64), overlay.support),
        items.min_support,
    )
    merged_ranking = replace(
        ranking,
        factors=merge(ranking.factors, overlay.rank_factors.astype(ranking.factors.dtype)),
        fixed_gram=ranking.gram,
    )
    return replace(
        scorer,
        items=merged_items,
        ranking=merged_ranking,
        prior_scale=scorer.prior_max,
        fold_base=scorer.fold_base or scorer,
    )


def item_side_of(model) -> ItemSide:
    """The item solve's inputs for a loaded model version (X'X once per version), with the pull
    towards a movie's content vector scaled to this version's X'X (streamrec.item_foldin)."""
    baseline = model.meta.baseline
    side = ItemSide.of(
        model.rank_user_factors, model.ranking.reg, model.ranking.alpha, model.ranking.threshold,
        model.reg, baseline.mean if baseline else 0.0,
        (baseline.item_reg if baseline else None),
    )  # fmt: skip
    return replace(side, prior_weight=prior_weight(side.gram))


def rater_vectors(model, user_ids: np.ndarray, rank_vectors: np.ndarray | None = None,
                  vectors: np.ndarray | None = None, biases: np.ndarray | None = None,
                  fresh: np.ndarray | None = None,
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Each rater's current vectors under `model`: the stream's (rows where `fresh`, folded in
    against this version) else the version's trained ones; (ranking, explicit, bias, usable)."""
    user_ids = np.asarray(user_ids, np.int64)
    m = len(user_ids)
    pos, known = row_index(model.user_ids, user_ids)
    fresh = np.zeros(m, bool) if fresh is None else np.asarray(fresh, bool)
    x = np.zeros((m, model.ranking.rank), np.float32)
    u = np.zeros((m, model.items.rank), np.float32)
    b = np.zeros(m)
    trained = known & ~fresh
    x[trained], u[trained] = model.rank_user_factors[pos[trained]], model.user_factors[pos[trained]]
    b[trained] = model.user_bias[pos[trained]]
    if fresh.any():
        x[fresh], u[fresh], b[fresh] = rank_vectors[fresh], vectors[fresh], biases[fresh]
    return x, u, b, trained | fresh


OVERLAY_PREFIX = "overlay-"


def write_overlay(directory: Path, overlay: ItemOverlay, keep: int = 3) -> Path:
    """The driver's side: a new overlay file (written aside, renamed), the newest `keep` kept.

    Executors read the newest for their version (`newest_overlay`); a name ends in a
    nanosecond counter so a later write always sorts last."""
    import time

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{OVERLAY_PREFIX}{overlay.version}-{time.time_ns()}.npz"
    overlay.save(path)
    for old in sorted(directory.glob(f"{OVERLAY_PREFIX}*.npz"), key=_stamp)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def newest_overlay(directory: str | Path, version: str) -> Path | None:
    """The newest overlay file written for `version` (None before any)."""
    files = list(Path(directory).glob(f"{OVERLAY_PREFIX}{version}-*.npz"))
    return max(files, key=_stamp) if files else None


def _stamp(path: Path) -> int:
    tail = path.stem.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else -1


def content_overlay(model, movies, tags=None) -> ItemOverlay | None:
    """Content vectors (streamrec.content) of the catalogue's movies the version does not know:
    no rating yet, so no support; None when the version has no content map."""
    content = getattr(model, "content", None)
    if content is None or movies is None or len(movies) == 0:
        return None
    _, known = model.items.rows(movies["movie_id"].to_numpy())
    todo = movies[~known]
    if todo.empty:
        return None
    ids, factors = content.vectors(todo, tags)
    n = len(ids)
    return ItemOverlay(model.version, np.asarray(ids, np.int64), np.asarray(factors, np.float32),
                       np.zeros((n, model.items.rank), np.float32), np.zeros(n), np.zeros(n, np.int64),
                       np.full(n, "content", dtype="<U7"))  # fmt: skip


def laid_overlay(model, rows: list[dict], movies=None, tags=None) -> ItemOverlay:
    """What serving lays over `model`: content vectors, replaced by the `item_vectors` rows of
    its version (streamed vectors, or the stream's own content rows)."""
    base = content_overlay(model, movies, tags)
    stored = ItemOverlay.of_rows(model.version, rows, model.ranking.rank, model.items.rank)
    return stored if base is None else base.merged(stored)


def with_overlay(model, overlay: ItemOverlay | None):
    """A `Model` whose items, ranking factors and scorer include the overlay's movies."""
    if overlay is None or len(overlay) == 0:
        return model
    scorer = overlay_scorer(model.scorer, overlay)
    laid = replace(model, items=scorer.items, ranking=scorer.ranking)
    laid.__dict__["scorer"] = scorer  # the cached property: the merged scorer (prior scale, fold base)
    return laid


PRIORS_PREFIX = "priors-"


def write_priors(directory: Path, version: str, ids: np.ndarray, vectors: np.ndarray) -> Path:
    """The content vectors the item solve is pulled towards (one file per version, written aside)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{PRIORS_PREFIX}{version}.npz"
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, ids=np.asarray(ids, np.int64), vectors=np.asarray(vectors, np.float32))
    tmp.replace(path)
    return path


def prune_priors(directory: Path, keep: set[str]) -> list[str]:
    """Delete the priors of versions not in `keep` (those the model store no longer holds): one
    file per published version would otherwise pile up for as long as the stream runs."""
    gone = []
    for path in Path(directory).glob(f"{PRIORS_PREFIX}*.npz"):
        version = path.name.removeprefix(PRIORS_PREFIX).removesuffix(".npz")
        if version not in keep:
            path.unlink(missing_ok=True)
            gone.append(version)
    return sorted(gone)


def load_priors(directory: str | Path, version: str) -> dict[int, np.ndarray]:
    """movie id -> content vector for `version` (empty when the version has no content map)."""
    path = Path(directory) / f"{PRIORS_PREFIX}{version}.npz"
    if not path.exists():
        return {}
    with np.load(path) as z:
        return dict(zip(z["ids"].tolist(), z["vectors"], strict=True))

"""Prequential replay of the live part: before each event, was its movie in the list that user
was being served? (hit rate@k), simulated offline with the stream's own code: the same Scorer,
history.merge_ratings, and for the item side the same item solve and overlay
(streamrec.item_foldin, streamrec.item_overlay), refreshed after every event (the stream refreshes
after every micro-batch).

Variants, all on the same events:
- static model (no fold-in): the base model's stored vectors, popularity for users it never saw;
- stream fold-in: users folded in, the catalogue frozen at training time (users only);
- users + items fold-in: movies the base does not serve get vectors from their live raters;
- users + items + content: also content vectors for movies with no rating (they reach lists only
  once servable, i.e. rated --min-support times, when a streamed vector replaces them);
- popularity (running counts): every movie seen so far, ranked by its rating count;
- fold-in + one retrain halfway: users + items fold-in with one `retrain` mid-replay (the system
  as it runs).
Each also reports the share of positive live events (rating >= 4) whose movie was servable in
that variant when it was rated.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from streamrec.history import latest_per_pair, merge_ratings, window
from streamrec.item_foldin import ItemSide, fold_in_item, prior_weight
from streamrec.item_overlay import ItemOverlay, content_overlay, overlay_scorer
from streamrec.scorer import Scorer, Users

from .train import log

STATIC, USERS, ITEMS, CONTENT, POPULARITY, RETRAIN = (
    "static model (no fold-in)", "stream fold-in", "users + items fold-in", "users + items + content",
    "popularity (running counts)", "fold-in + one retrain halfway",
)  # fmt: skip
VARIANTS = (STATIC, USERS, ITEMS, CONTENT, POPULARITY, RETRAIN)
POSITIVE = 4.0


@dataclass
class ItemStream:
    """The stream's item side over one model version: per movie the base does not serve, its
    raters (rating, ranking vector as of their rating) and its solved vector."""

    models: object  # evaluate.Models of the version
    base_overlay: ItemOverlay | None = None  # content vectors of unrated movies (or None)
    priors: dict[int, np.ndarray] = field(default_factory=dict)  # what each solve is pulled towards
    raters: dict[int, dict[int, tuple[float, np.ndarray | None]]] = field(default_factory=dict)
    solved: dict[int, tuple[np.ndarray, int]] = field(default_factory=dict)  # movie -> (vector, n)
    _scorer: Scorer | None = None

    def __post_init__(self) -> None:
        m = self.models
        x = m.rank_user_factors.astype(np.float64)
        r = m.scorer.ranking
        gram = x.T @ x
        weight = prior_weight(gram) if self.priors else 0.0
        self.side = ItemSide(gram, r.reg, r.alpha, r.threshold, m.scorer.explicit_reg, prior_weight=weight)
        self.stored = {int(u): i for i, u in enumerate(m.explicit.user_ids)}

    def streams(self, movie: int) -> bool:
        items = self.models.scorer.items
        pos, known = items.rows(np.array([movie]))
        return not (known[0] and (items.servable is None or items.servable[pos[0]]))

    def seed(self, history: pd.DataFrame) -> None:
        """Training raters of known movies below --min-support (trained vectors)."""
        items = self.models.scorer.items
        if items.servable is None:
            return
        pos, known = items.rows(history["movie_id"].to_numpy())
        for u, mv, r in history[known & ~items.servable[pos]][["user_id", "movie_id", "rating"]].itertuples(
            index=False
        ):
            self.raters.setdefault(int(mv), {})[int(u)] = (float(r), None)

    def rate(self, user: int, movie: int, rating: float, vector: np.ndarray | None) -> None:
        self.raters.setdefault(movie, {})[user] = (rating, vector)
        self._solve(movie)

    def _solve(self, movie: int) -> None:
        raters = self.raters[movie]
        xs, rs = [], []
        for u, (r, x) in raters.items():
            if x is None and u in self.stored:
                x = self.models.rank_user_factors[self.stored[u]]
            if x is not None:
                xs.append(x), rs.append(r)
        if not xs:
            return
        zeros = np.zeros((len(xs), 1))
        out = fold_in_item(
            self.side, np.array(rs), np.array(xs), zeros, np.zeros(len(xs)), self.priors.get(movie)
        )
        self.solved[movie] = (out.rank_vector, len(raters))
        self._scorer = None

    def scorer(self) -> Scorer:
        if self._scorer is None:
            base = self.models.scorer
            ids = np.array(sorted(self.solved), np.int64)
            k = base.ranking.rank
            vec = np.array([self.solved[i][0] for i in ids], np.float32).reshape(len(ids), k)
            n = len(ids)
            streamed = ItemOverlay("v", ids, vec, np.zeros((n, base.items.rank), np.float32), np.zeros(n),
                                   np.array([self.solved[i][1] for i in ids], np.int64),
                                   np.full(n, "stream", dtype="<U7"))  # fmt: skip
            overlay = streamed if self.base_overlay is None else self.base_overlay.merged(streamed)
            self._scorer = overlay_scorer(base, overlay)
        return self._scorer


def _list(scorer: Scorer, users: Users, k: int, rated: np.ndarray) -> set[int]:
    rows = scorer.rank_rows(users, k, [rated])
    return set(scorer.items.ids[rows[0][rows[0] >= 0]].tolist())


def _servable(scorer: Scorer, movie: int) -> bool:
    pos, known = scorer.items.rows(np.array([movie]))
    return bool(known[0] and (scorer.items.servable is None or scorer.items.servable[pos[0]]))


def prequential(spark, ratings: pd.DataFrame, opts, fit_models, movies=None, tags=None) -> dict:
    """Hit rate@k of each event's movie in the list served to its user just before it."""
    events = ratings.sort_values("timestamp", kind="stable", ignore_index=True)
    history = window(events, split_at=opts.split_at, part="before")
    live = window(events, split_at=opts.split_at, part="after")
    seen = latest_per_pair(history)
    base = fit_models(spark, seen, opts, with_ease=False)
    items = ItemStream(base)
    items.seed(seen)
    with_content = _with_content(base, seen, movies, tags)
    retrain: ItemStream | None = None
    half = len(live) // 2
    state = {u: (g["movie_id"].to_numpy(np.int32), g["rating"].to_numpy(np.float32),
                 g["timestamp"].to_numpy(np.int64)) for u, g in seen.groupby("user_id")}  # fmt: skip
    counts = seen["movie_id"].value_counts().to_dict()
    hits, servable = dict.fromkeys(VARIANTS, 0), dict.fromkeys(VARIANTS, 0)
    n_events = n_positive = 0
    t0 = time.monotonic()
    for j, ev in enumerate(live.itertuples(index=False)):
        if j == half:  # the retrain a `retrain --every` would do mid-replay: history + live so far
            log(f"  prequential: retraining on history + {half:,} live events")
            so_far = latest_per_pair(pd.concat([history, live.iloc[:half]]))
            retrain = _with_content(fit_models(spark, so_far, opts, with_ease=False), so_far, movies, tags)
            _replay_items(retrain, live.iloc[:half], state)
        mine = state.get(ev.user_id)
        rated = mine[0] if mine is not None else np.empty(0, np.int32)
        rates = mine[1] if mine is not None else np.empty(0, np.float32)
        user, movie = int(ev.user_id), int(ev.movie_id)
        rated_set = set(rated.tolist())
        if movie not in rated_set:  # re-ratings are no prediction target
            n_events += 1
            positive = ev.rating >= POSITIVE
            n_positive += positive
            scorers = {USERS: base.scorer, ITEMS: items.scorer(), CONTENT: with_content.scorer(),
                       RETRAIN: (retrain or items).scorer()}  # fmt: skip
            for name, s in scorers.items():
                folded = s.fold_in_one(rated, rates, explicit=False)
                hits[name] += movie in _list(s, folded, opts.k, rated)
                servable[name] += positive and _servable(s, movie)
            s = base.scorer
            stored_user = (
                _stored(base, items.stored.get(user)) if user in items.stored else s.fold_in_one([], [])
            )
            hits[STATIC] += movie in _list(s, stored_user, opts.k, rated)
            servable[STATIC] += positive and _servable(s, movie)
            top = sorted(counts, key=counts.__getitem__, reverse=True)[: opts.k + len(rated_set)]
            hits[POPULARITY] += movie in [m for m in top if m not in rated_set][: opts.k]
            servable[POPULARITY] += positive and movie in counts
        new = {"movie_id": [ev.movie_id], "rating": [ev.rating], "timestamp": [ev.timestamp]}
        state[ev.user_id] = merge_ratings(mine, new)
        counts[movie] = counts.get(movie, 0) + 1
        for stream in filter(None, (items, with_content, retrain)):
            _rate(stream, user, movie, float(ev.rating), state[ev.user_id])
        if (j + 1) % 5000 == 0:
            log(f"  prequential: {j + 1:,}/{len(live):,} events ({(j + 1) / (time.monotonic() - t0):,.0f}/s)")
    return {
        "events": int(len(live)),
        "scored_events": n_events,
        "positive_events": n_positive,
        "users": int(live["user_id"].nunique()),
        "new_users": int((~live["user_id"].drop_duplicates().isin(list(items.stored))).sum()),
        "new_movies": int((~live["movie_id"].drop_duplicates().isin(base.scorer.items.ids)).sum()),
        "hit_rate": {name: h / max(n_events, 1) for name, h in hits.items()},
        "servable_share": {name: s / max(n_positive, 1) for name, s in servable.items()},
    }


def _stored(base, i: int) -> Users:
    """The base model's stored vectors of a user it trained on (serving without the stream)."""
    s = slice(i, i + 1)
    m = base.explicit
    return Users(
        m.user_ids[s], base.rank_user_factors[s], base.user_counts[s], m.user_factors[s], m.user_bias[s]
    )


def _rate(stream: ItemStream, user: int, movie: int, rating: float, mine: tuple) -> None:
    """After the event: the user's vector as the stream folds it in, then the movie re-solved."""
    if not stream.streams(movie):
        return
    folded = stream.models.scorer.fold_in_one(mine[0], mine[1], explicit=False)
    stream.rate(user, movie, rating, folded.rank_vectors[0] if folded.n_used[0] else None)


def _replay_items(stream: ItemStream, live: pd.DataFrame, state: dict) -> None:
    """A retrained version's item side: the live events so far, with the raters' current ratings."""
    for ev in live.itertuples(index=False):
        if stream.streams(int(ev.movie_id)):
            _rate(stream, int(ev.user_id), int(ev.movie_id), float(ev.rating), state[ev.user_id])


def _with_content(models, seen: pd.DataFrame, movies: pd.DataFrame | None, tags) -> ItemStream:
    """The item side as the stream runs it when the version has a content map (as `train` fits
    it): content vectors for unrated movies, and every streamed movie's solve pulled towards its
    content vector. Without a catalogue: the plain item fold-in."""
    if movies is None:
        stream = ItemStream(models)
    else:
        from types import SimpleNamespace

        from streamrec.content import fit_content_map

        items = models.scorer.items
        support = np.asarray(items.support if items.support is not None else models.counts)
        content = fit_content_map(movies, tags, items.ids, models.scorer.ranking.factors, support)
        overlay = content_overlay(SimpleNamespace(content=content, items=items, version="v"), movies, tags)
        pos, known = items.rows(movies["movie_id"].to_numpy())
        streamed = ~known | (items.servable is not None and ~items.servable[pos])
        ids, vectors = content.vectors(movies[streamed], tags)
        stream = ItemStream(models, overlay, dict(zip(ids.tolist(), vectors, strict=True)))
    stream.seed(seen)
    return stream

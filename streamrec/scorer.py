"""The scorer every served list goes through: fold-in, scoring, top-k of one model version.

A model version holds two models (README, "The models"):
- the ranking model (implicit ALS) orders every list;
- the explicit model (baseline + ALS) predicts the rating shown next to each item.
The ranking score is blended with a popularity prior whose weight falls with the number of
ratings the user has (`Blend`, chosen on validation users at train time): a user with one rating
gets mostly the top chart, a user with fifty a personal list. `recommend`, the stream's fold-in,
the HTTP-free batch path (`--ratings-file`) and `evaluate` all call this one class, so what is
measured is what is served.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property, partial

import numpy as np

from .foldin import ItemFactors, fold_in_many
from .ids import rows_of_known
from .ranking import ImplicitFactors, implicit_fold_in_many

SCORE_CELLS = 1 << 22  # users x movies scored at once: 32 MB of float64 per chunk
# `top_rows_two_pass` keeps this many candidates beyond k from its float32 pass: a true top-k movie
# is lost only if float32 rounding (~1e-7 relative) moves it this many places down.
TOP_SLACK = 8


@dataclass(frozen=True)
class Blend:
    """Cold-start policy: score = personal + weight(n) * prior, n = the user's known ratings.

    `n` are ascending bucket starts (the first is 1); a user with n ratings takes the weight of
    the last bucket start <= n. n = 0 means no personal signal: the prior alone.
    """

    n: tuple[int, ...] = (1,)
    weights: tuple[float, ...] = (0.0,)

    def weight(self, n: np.ndarray) -> np.ndarray:
        idx = np.searchsorted(np.asarray(self.n), np.asarray(n), side="right") - 1
        return np.asarray(self.weights, dtype=np.float64)[np.clip(idx, 0, None)]

    def to_dict(self) -> dict:
        return {"n": list(self.n), "weights": list(self.weights)}

    @classmethod
    def from_dict(cls, d: dict | None) -> Blend:
        return cls() if not d else cls(tuple(int(x) for x in d["n"]), tuple(float(w) for w in d["weights"]))


def popularity_prior(support: np.ndarray, scale: float | None = None) -> np.ndarray:
    """Training ratings per item scaled to [0, 1] by the most rated (or `scale`): the top chart."""
    support = np.asarray(support, dtype=np.float64)
    return support / max(scale if scale is not None else float(support.max(initial=0.0)), 1.0)


@dataclass
class Users:
    """Fitted users, row-aligned: ranking vectors, explicit vectors and biases, known ratings."""

    ids: np.ndarray
    rank_vectors: np.ndarray  # (m, ranking rank) float32
    n_used: np.ndarray  # known rated movies per user (the blend's n)
    vectors: np.ndarray  # (m, explicit rank) float32
    biases: np.ndarray  # (m,) explicit user bias
    n_unknown: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, which: np.ndarray | slice) -> Users:
        """The users selected by a boolean mask, an index array or a slice (rows stay aligned)."""
        return Users(self.ids[which], self.rank_vectors[which], self.n_used[which], self.vectors[which],
                     self.biases[which])  # fmt: skip


@dataclass
class Scorer:
    items: ItemFactors
    ranking: ImplicitFactors
    explicit_reg: float
    blend: Blend = field(default_factory=Blend)
    # The prior's scale when items were added to a version (streamrec.item_overlay): its own
    # most-rated movie's count, so the old movies' prior does not move.
    prior_scale: float | None = None
    # Set when movies were laid over a version (streamrec.item_overlay): users are still solved
    # against the version's trained movies only, so a user's vector is exact and never depends
    # on what the stream has learned of other movies so far; lists rank every movie.
    fold_base: Scorer | None = None

    @cached_property
    def prior(self) -> np.ndarray:
        if self.items.support is None:
            return np.zeros(len(self.items.ids))
        return popularity_prior(self.items.support, self.prior_scale)

    @property
    def prior_max(self) -> float:
        """The count that scales the prior to [0, 1]."""
        if self.prior_scale is not None or self.items.support is None:
            return self.prior_scale or 1.0
        return float(np.max(self.items.support, initial=0.0))

    # -- fold-in ------------------------------------------------------------------------------

    def fold_in(self, user_ids, movie_ids, ratings, explicit: bool = True) -> Users:
        """Both models' fold-in for many users at once (one row per distinct user id).

        Ratings of movies the model does not know are ignored and counted in `n_unknown`.
        `explicit=False` skips the explicit model (zero vectors): for ranking-only evaluation.
        """
        if self.fold_base is not None:
            return self.fold_base.fold_in(user_ids, movie_ids, ratings, explicit)
        user_ids = np.asarray(user_ids, dtype=np.int64)
        pos, known = self.items.rows(np.asarray(movie_ids))
        ratings = np.asarray(ratings, dtype=np.float64)
        all_users, total = np.unique(user_ids, return_counts=True)
        ids, rank_vectors, _ = implicit_fold_in_many(
            self.ranking, user_ids[known], pos[known], ratings[known]
        )
        if explicit:
            e_users, vectors, biases, used = fold_in_many(
                self.items, user_ids[known], np.asarray(movie_ids)[known], ratings[known], self.explicit_reg
            )
        else:
            e_users, used = np.unique(user_ids[known], return_counts=True)
            vectors, biases = np.zeros((len(e_users), self.items.rank), np.float32), np.zeros(len(e_users))
        # Users whose every movie is unknown have no personal signal: zero vectors, n = 0.
        out = Users(
            all_users,
            np.zeros((len(all_users), self.ranking.rank), np.float32),
            np.zeros(len(all_users), np.int64),
            np.zeros((len(all_users), self.items.rank), np.float32),
            np.zeros(len(all_users)),
        )
        slot = rows_of_known(all_users, ids)
        out.rank_vectors[slot] = rank_vectors
        slot = rows_of_known(all_users, e_users)
        out.vectors[slot], out.biases[slot], out.n_used[slot] = vectors, biases, used
        out.n_unknown = total - out.n_used
        return out

    def fold_in_one(self, movie_ids, ratings, user_id: int = 0, explicit: bool = True) -> Users:
        """One user's fold-in; no ratings at all gives a user with no personal signal (n = 0)."""
        if len(movie_ids) == 0:
            return Users(
                np.array([user_id]),
                np.zeros((1, self.ranking.rank), np.float32),
                np.zeros(1, np.int64),
                np.zeros((1, self.items.rank), np.float32),
                np.zeros(1),
                np.zeros(1, np.int64),
            )
        return self.fold_in(np.full(len(movie_ids), user_id), movie_ids, ratings, explicit)

    # -- scoring ------------------------------------------------------------------------------

    def scores(self, users: Users) -> np.ndarray:
        """(m, n_items) blended ranking scores; movies that may not be served are -inf."""
        s = users.rank_vectors.astype(np.float64) @ self.ranking.factors64.T
        s += self.blend.weight(users.n_used)[:, None] * self.prior[None, :]
        no_signal = users.n_used == 0  # nothing personal: the prior alone
        s[no_signal] = self.prior
        if self.items.servable is not None:
            s[:, ~self.items.servable] = -np.inf
        return s

    def predicted(self, users: Users, rows: np.ndarray) -> np.ndarray:
        """Explicit model's predicted ratings, (m, len(rows)) for item rows (one set per user)."""
        rows = np.atleast_2d(rows)
        v = self.items.factors[rows].astype(np.float64)  # (m, r, k)
        dot = np.einsum("mrk,mk->mr", v, users.vectors.astype(np.float64))
        pred = self.items.mean + self.items.item_bias(rows.ravel()).reshape(rows.shape) + dot
        return np.clip(pred + users.biases[:, None], 0.5, 5.0)

    def rank_rows(
        self, users: Users, k: int, exclude: list[np.ndarray] | None = None, allowed: np.ndarray | None = None
    ) -> np.ndarray:
        """(m, k) item rows of each user's best k servable movies, best first (-1 pads).

        `exclude[j]` are movie ids user j must not get (their own); `allowed` a mask over items.
        """
        return self._ranked(users, k, exclude, allowed)[0]

    def rank_rows_per_weight(
        self, users: Users, k: int, weights: Sequence[float], exclude: list[np.ndarray] | None = None
    ) -> list[np.ndarray]:
        """`rank_rows` under each constant blend weight w (`Blend((1,), (w,))`), all at once.

        The blend calibration ranks the same users under every candidate weight; one call per
        weight recomputed the personal scores and the masks each time, and partitioned float64
        rows: 16 s a bucket at 59k movies, 200 s of a 25M retrain. Here the personal scores and
        masks are computed once per chunk of users, and each weight's top k is found by
        `top_rows_two_pass`."""
        m, n = len(users), len(self.items.ids)
        out = [np.full((m, k), -1) for _ in weights]
        if n == 0:
            return out
        for a, b in user_chunks(m, n):
            chunk = users.subset(slice(a, b))
            personal = chunk.rank_vectors.astype(np.float64) @ self.ranking.factors64.T
            mask_unservable(personal, self.items, self.items.servable, (exclude or [])[a:b])
            blocked = np.isneginf(personal)  # the personal scores are finite: -inf is the mask
            alone = chunk.n_used == 0  # nothing personal: the prior alone, whatever the weight
            prior_alone = np.where(blocked[alone], -np.inf, self.prior)
            personal32, prior32 = personal.astype(np.float32), self.prior.astype(np.float32)
            for rows, w in zip(out, weights, strict=True):
                rough = personal32 + np.float32(w) * prior32
                rough[alone] = prior_alone
                exact = partial(_blended_at, personal=personal, prior=self.prior, w=w, alone=alone,
                                prior_alone=prior_alone)  # fmt: skip
                rows[a:b] = top_rows_two_pass(rough, exact, k)
        return out

    def _ranked(
        self, users: Users, k: int, exclude: list[np.ndarray] | None, allowed: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        return rank_in_chunks(self.items, len(users), k, lambda a, b: self.scores(users.subset(slice(a, b))),
                              exclude, allowed)  # fmt: skip

    def top_k(
        self, users: Users, k: int, exclude: list[np.ndarray] | None = None, allowed: np.ndarray | None = None
    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Per user: (movie ids, ranking scores, predicted ratings) of the best k servable movies."""
        rows, scores = self._ranked(users, k, exclude, allowed)
        out = []
        for j in range(len(users)):
            keep = rows[j] >= 0
            r = rows[j][keep]
            pred = self.predicted(users.subset(slice(j, j + 1)), r)[0] if len(r) else np.empty(0)
            out.append((self.items.ids[r], scores[j][keep], pred))
        return out


def user_chunks(m: int, n_items: int) -> Iterator[tuple[int, int]]:
    """(a, b) bounds of consecutive chunks of m users whose dense score matrix over n_items
    movies stays within SCORE_CELLS cells."""
    step = max(1, SCORE_CELLS // max(1, n_items))
    for a in range(0, m, step):
        yield a, min(m, a + step)


def mask_unservable(
    s: np.ndarray, items: ItemFactors, allowed: np.ndarray | None, exclude: Sequence[np.ndarray]
) -> None:
    """Set -inf in place in a chunk's (users, items) scores: the columns `allowed` (a mask over
    items, None: all) leaves out, and in row j the movie ids `exclude[j]` (the user's own)."""
    if allowed is not None:
        s[:, ~allowed] = -np.inf
    for j, ids in enumerate(exclude):
        if len(ids):
            pos, known = items.rows(np.asarray(ids))
            s[j, pos[known]] = -np.inf


def rank_in_chunks(
    items: ItemFactors,
    m: int,
    k: int,
    score: Callable[[int, int], np.ndarray],
    exclude: list[np.ndarray] | None = None,
    allowed: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(m, k) best item rows of m users, best first (-1 pads), and their scores.

    `score(a, b)` gives users a..b-1's (b - a, items) score matrix (a fresh array: it is masked in
    place); `exclude[j]` are movie ids user j must not get; `allowed` a mask over items. Users are
    scored a chunk at a time: a dense users x movies matrix of a big catalogue would not fit
    (130k warm users x 59k movies is 61 GB of float64), and one matrix product per chunk is what
    keeps list metrics over every user fast (a loop per user took minutes at that size)."""
    rows, scores = np.full((m, k), -1), np.full((m, k), -np.inf)
    for a, b in user_chunks(m, len(items.ids)):
        s = score(a, b)
        mask_unservable(s, items, allowed, (exclude or [])[a:b])
        rows[a:b] = top_rows(s, k)
        scores[a:b] = np.take_along_axis(s, np.maximum(rows[a:b], 0), axis=1)
    return rows, scores


def _blended_at(cols: np.ndarray, personal: np.ndarray, prior: np.ndarray, w: float, alone: np.ndarray,
                prior_alone: np.ndarray) -> np.ndarray:  # fmt: skip
    """personal + w * prior at each row's columns `cols`; the rows in `alone` take the prior alone."""
    s = np.take_along_axis(personal, cols, 1) + w * prior[cols]
    s[alone] = np.take_along_axis(prior_alone, cols[alone], 1)
    return s


def top_rows_two_pass(rough: np.ndarray, exact: Callable[[np.ndarray], np.ndarray], k: int) -> np.ndarray:
    """`top_rows` of exact (float64) scores found in two passes: the best k + TOP_SLACK columns of
    each row by `rough`, the same scores in float32 (a partition over float32 takes half the time),
    then those columns ordered by `exact(columns)`, their float64 scores ((m, c) -> (m, c))."""
    m, n = rough.shape
    c = min(k + TOP_SLACK, n)
    if c == 0:
        return np.full((m, k), -1)
    cols = np.argpartition(rough, n - c, axis=1)[:, n - c :]
    best = top_rows(exact(cols), k)
    return np.where(best >= 0, np.take_along_axis(cols, np.maximum(best, 0), 1), -1)


def top_rows(scores: np.ndarray, k: int) -> np.ndarray:
    """(m, k) row indices of the k best finite scores per row, best first; -1 pads."""
    m, n = scores.shape
    k_eff = min(k, n)
    if k_eff == 0:
        return np.full((m, k), -1)
    part = np.argpartition(-scores, k_eff - 1, axis=1)[:, :k_eff]
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    rows = np.take_along_axis(part, order, axis=1)
    rows[~np.isfinite(np.take_along_axis(vals, order, axis=1))] = -1
    if k_eff < k:
        rows = np.hstack([rows, np.full((m, k - k_eff), -1)])
    return rows

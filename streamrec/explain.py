"""Why a movie is on a list: the ranking score split over the movies the user rated.

A folded-in user's ranking vector is linear in their inputs (Hu, Koren, Volinsky 2008, section 5):
x_u = W sum_{j: p_j > 0} (1 + c1_j) y_j with W = (Y'Y + sum_j c1_j y_j y_j' + lambda n_+ I)^-1
(streamrec.ranking), so the score of item i,

    x_u . y_i = sum_{j: p_j > 0} (1 + c1_j) y_i' W y_j,

is exactly a sum of one contribution per positively rated movie j. The blend adds the popularity
prior w(n) * pop_i (streamrec.scorer). So score = prior + sum of contributions, exactly: a list
can say "because you rated X". A user with no rating the model knows is explained as popularity.
Pure NumPy over the scorer every list goes through.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .ranking import implicit_system
from .scorer import Scorer

TOP_BECAUSE = 3


@dataclass(frozen=True)
class Explanation:
    """One listed movie: prior + sum(contributions) == its ranking score."""

    movie_id: int
    score: float
    prior: float
    because: list[tuple[int, float]]  # the largest contributions: (rated movie id, contribution)
    rest: float  # every other contribution, summed

    def to_dict(self, title=None) -> dict:
        return {
            "prior": self.prior,
            "because": [
                {"movie_id": m, "title": title(m) if title else None, "contribution": c}
                for m, c in self.because
            ],  # fmt: skip
            "rest": self.rest,
        }


def contributions(
    scorer: Scorer, movie_ids, ratings, items: np.ndarray
) -> tuple[np.ndarray, np.ndarray, int]:
    """(rated movie ids used, (len(items), n_used) contributions, n known ratings) of one user.

    `items` are movie ids of the listed movies (rows of `scorer`'s catalogue, streamed ones
    included); the user is solved against the version's trained movies, as every list path does."""
    base = scorer.fold_base or scorer
    movie_ids = np.asarray(movie_ids, np.int64)
    pos, known = base.items.rows(movie_ids)
    n_known = int(known.sum())
    a, y, w, n_pos = implicit_system(base.ranking, pos[known], np.asarray(ratings, np.float64)[known])
    rated, positive = movie_ids[known], w > 0
    rows, _ = scorer.items.rows(np.asarray(items, np.int64))
    if n_pos == 0:
        return rated[:0], np.zeros((len(rows), 0)), n_known
    # x = A^-1 Y' w = sum_j w_j A^-1 y_j: movie i's score y_i . x splits into one term per input j.
    wy = np.linalg.solve(a, y[positive].T)  # A^-1 y_j for the positive inputs: (rank, n_pos)
    return rated[positive], (scorer.ranking.factors64[rows] @ wy) * w[positive], n_known


def explain(scorer: Scorer, movie_ids, ratings, items, top: int = TOP_BECAUSE) -> list[Explanation]:
    """An explanation per listed movie (`items`), for a user with these ratings."""
    items = np.asarray(items, np.int64)
    rated, contrib, n_known = contributions(scorer, movie_ids, ratings, items)
    rows, _ = scorer.items.rows(items)
    prior = scorer.prior[rows]
    # No known rating: the list is popularity and so is the score (Scorer.scores); otherwise the
    # blend's weight for the user's n known ratings (a user whose every known rating is a "no"
    # has a zero vector: the prior alone, scaled).
    weight = 1.0 if n_known == 0 else float(scorer.blend.weight(np.array([n_known]))[0])
    out = []
    for j, m in enumerate(items.tolist()):
        c = contrib[j]
        order = np.argsort(-c, kind="stable")[:top]
        because = [(int(rated[i]), float(c[i])) for i in order]
        rest = float(c.sum() - sum(v for _, v in because))
        score = weight * float(prior[j]) + float(c.sum())
        out.append(Explanation(int(m), score, weight * float(prior[j]), because, rest))
    return out

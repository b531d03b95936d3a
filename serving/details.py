"""One movie's or one user's details: the catalogue and the model beside the stream's live rows."""

from __future__ import annotations

import sqlalchemy as sa

from streamrec import sink as db
from streamrec.errors import ModelStoreError, NotFound

from .lists import Lists
from .sink_reads import SinkReads, num


class Details:
    def __init__(self, lists: Lists, reads: SinkReads):
        self.lists = lists
        self.reads = reads

    def movie(self, movie_id: int) -> dict:
        catalog = self.lists.catalog()
        m = db.movie_stats.c
        stats = self.reads.rows(
            sa.select(m.n_ratings, m.avg_rating, m.last_event_ts).where(m.movie_id == movie_id)
        )
        known = movie_id in catalog.titles
        if not known and not stats:
            raise NotFound(f"movie {movie_id} is unknown")
        return {
            "movie_id": movie_id,
            "title": catalog.titles.get(movie_id),
            "genres": catalog.genres_of(movie_id),
            "training_ratings": self.lists.support().get(movie_id),
            "stats": None
            if not stats
            else {
                "n_ratings": int(stats[0][0]),
                "avg_rating": num(stats[0][1]),
                "last_event_ts": stats[0][2],
            },
        }

    def user(self, user_id: int) -> dict:
        a, v = db.user_activity.c, db.user_vectors.c
        activity = self.reads.rows(
            sa.select(a.n_ratings, a.avg_rating, a.first_event_ts, a.last_event_ts).where(
                a.user_id == user_id
            )
        )
        vector = self.reads.rows(
            sa.select(v.model_version, v.n_ratings, v.n_used, v.updated_at).where(v.user_id == user_id)
        )
        try:
            rated = len(self.lists.current().ratings.user(user_id))
        except ModelStoreError:
            rated = 0
        if not activity and not vector and not rated:
            raise NotFound(f"user {user_id} is unknown")
        a = activity[0] if activity else None
        v = vector[0] if vector else None
        return {
            "user_id": user_id,
            "rated_movies": rated,
            "activity": None
            if a is None
            else {
                "n_ratings": int(a[0]),
                "avg_rating": num(a[1]),
                "first_event_ts": a[2],
                "last_event_ts": a[3],
            },
            "stream_vector": None
            if v is None
            else {"model_version": v[0], "n_ratings": v[1], "n_used": v[2], "updated_at": num(v[3])},
        }

"""Retention: what the sink keeps, applied by the running stream's driver once a minute.

Every table that grows with time has a bound (README, "Retention"):
- `trending` windows that ended more than `trending_s` of *event time* before the watermark;
- `stream_metrics` rows older than `metrics_s` (wall clock);
- `live_eval` buckets older than `live_eval_s` of Kafka time;
- `dead_letters` of batches committed more than `dead_letters_s` ago, and past about the newest
  `dead_letters_max` (whole batches, oldest first: a flood of bad records cannot fill the disk);
- the idempotency ledger (`stream_batches`) beyond each query's newest `ledger_batches` batches:
  Spark only ever replays a query's last uncommitted batch, so older rows are never consulted.
The all-time aggregates (movie, genre, user, histogram), user and item vectors and lists are the
state the product serves: they are bounded by the number of movies and users, not by time.
Deletes are keyed, in one transaction; none of this touches what a model version needs to be
retrained (the data folder and the event log).
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from streamrec.sink import Sink, dead_letters, live_eval, stream_batches, stream_metrics, trending

DAY = 86_400


@dataclass(frozen=True)
class Retention:
    trending_s: float = 90 * DAY  # event time: a quarter of trending windows
    metrics_s: float = 7 * DAY
    live_eval_s: float = 90 * DAY
    dead_letters_s: float = 30 * DAY
    dead_letters_max: int = 100_000
    ledger_batches: int = 1_000
    every_s: float = 60.0  # how often the stream applies it


def apply_retention(sink: Sink, r: Retention, now: float, watermark: int | None) -> dict[str, int]:
    """Delete what is past its retention (call inside a sink transaction); rows deleted per table."""
    out: dict[str, int] = {}
    t, m, e, b, d = trending.c, stream_metrics.c, live_eval.c, stream_batches.c, dead_letters.c

    def delete(table: sa.Table, *where) -> int:
        return sink.execute(sa.delete(table).where(*where)).rowcount

    if watermark is not None:
        out["trending"] = delete(trending, t.window_end < watermark - r.trending_s)
    out["stream_metrics"] = delete(stream_metrics, m.at < now - r.metrics_s)
    out["live_eval"] = delete(live_eval, e.bucket < now - r.live_eval_s)
    old = sa.select(b.batch_id).where(b.query == "aggregates", b.committed_at < now - r.dead_letters_s)
    out["dead_letters"] = delete(dead_letters, d.batch_id.in_(old))
    # Over the cap: whole batches, oldest first (the newest max rows plus at most one batch's).
    cut = sink.query(sa.select(d.batch_id).order_by(d.batch_id.desc()).offset(r.dead_letters_max).limit(1))
    if cut:
        out["dead_letters"] += delete(dead_letters, d.batch_id < cut[0][0])
    ledger = 0
    for (query,) in sink.query(sa.select(b.query).distinct()):
        keep = (
            sa.select(b.batch_id).where(b.query == query).order_by(b.batch_id.desc()).offset(r.ledger_batches)
        )
        edge = sink.query(keep.limit(1))
        if edge:  # the bootstrap pseudo-batch (-1) stays: it says the history was applied
            ledger += delete(stream_batches, b.query == query, b.batch_id <= edge[0][0], b.batch_id >= 0)
    out["stream_batches"] = ledger
    return out

"""What the HTTP API serves, without HTTP: one `Service` per server process, composed of one part
per concern, each with one reason to change:

- `lists` (serving.lists): CURRENT with the streamed movies laid over it, recommendations, similar
  movies, title search;
- `details` (serving.details): one movie's or one user's details;
- `stats` (serving.stats): the stream's live aggregates, batch metrics and dead letters;
- `models` (serving.models_view): model versions and their metadata;
- `ingest` (serving.ingest): `POST /events` into the ratings topic;
- `ready` (serving.readiness): readiness checks;
- `pending` and `tail` (serving.pending, serving.topic_tail): read-your-writes, the events the
  stream has not applied yet, from this process's own tail of the topic (None without Kafka or
  with `tail=False`). `start()` starts the tail, `close()` stops it.

The sink DB is read through `reads` (serving.sink_reads): one connection per thread; the stream is
the only writer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from streamrec.model_store import ModelStore

from .applied import Applied
from .details import Details
from .ingest import DEFAULT_TIMEOUT_S, Ingest
from .limits import DEFAULT_MAX_BODY
from .lists import Lists
from .models_view import ModelsView
from .pending import DEFAULT_MAX_EVENTS, DEFAULT_MAX_PER_USER, DEFAULT_TAIL_WAIT_S, PendingBuffer
from .read_token import DEFAULT_WAIT_S as DEFAULT_READ_TOKEN_WAIT_S
from .readiness import Readiness
from .sink_reads import SinkReads
from .stats import Stats
from .topic_tail import TopicTail


@dataclass(frozen=True)
class ServeConfig:
    model_root: Path
    sink_url: str
    event_log_dir: Path
    checkpoint_dir: Path  # the stream's checkpoints (its Kafka offsets, for lag)
    data: Path  # titles and genres while no model is published
    bootstrap: str | None = None  # None: POST /events answers 503
    topic: str = "ratings"
    kafka_timeout: float = DEFAULT_TIMEOUT_S  # the most POST /events waits on Kafka
    max_body_bytes: int = DEFAULT_MAX_BODY  # larger bodies: 413 before they are read
    rate_limit: float | None = None  # requests/s per key (API key, else client address); None: off
    api_keys: Path | None = None  # the key file (serving.apikeys); None: auth off
    tail: bool = True  # read-your-writes: tail the topic (needs `bootstrap`)
    tail_wait: float = DEFAULT_TAIL_WAIT_S  # the most a GET waits for the tail to reach the topic's end
    read_token_wait: float = DEFAULT_READ_TOKEN_WAIT_S  # the most a GET with a read token waits for the tail
    pending_max_events: int = DEFAULT_MAX_EVENTS  # pending ratings held in all
    pending_max_per_user: int = DEFAULT_MAX_PER_USER  # pending movies held per user

    @classmethod
    def at_home(cls, home: Path, sink_url: str | None = None, **kw) -> ServeConfig:
        """The layout every command shares under a state directory ($STREAMREC_HOME)."""
        from streamrec.event_log import event_log_dir
        from streamrec.settings import BUNDLED_DATA, spark_storage
        from streamrec.settings import home as home_dir
        from streamrec.sink import default_url

        kw.setdefault("data", BUNDLED_DATA)
        shared = spark_storage() if home == home_dir() else home  # the stream's files, if shared
        return cls(model_root=home / "models", sink_url=sink_url or default_url(home),
                   event_log_dir=event_log_dir(shared), checkpoint_dir=shared / "checkpoints",
                   **kw)  # fmt: skip


class Service:
    """The parts, wired once; the CLI and tests reach the lists through the few delegates below."""

    def __init__(self, cfg: ServeConfig):
        self.cfg = cfg
        self.store = ModelStore(cfg.model_root)
        self.reads = SinkReads(cfg.sink_url)
        tailing = cfg.tail and cfg.bootstrap is not None
        self.pending = PendingBuffer(cfg.pending_max_events, cfg.pending_max_per_user) if tailing else None
        self.lists = Lists(self.store, self.reads, cfg.event_log_dir, cfg.data, cfg.topic, self.pending)
        self.details = Details(self.lists, self.reads)
        self.stats = Stats(self.reads, self.lists.catalog)
        self.models = ModelsView(self.store, self.stats.live_eval)
        acked = self.pending.add if self.pending is not None else None
        self.ingest = Ingest(cfg.bootstrap, cfg.topic, cfg.kafka_timeout, acked)
        self.ready = Readiness(self.lists, self.reads, cfg.bootstrap)
        self.tail = None
        if self.pending is not None:
            applied = Applied(self.lists, cfg.checkpoint_dir, cfg.topic)
            self.tail = TopicTail(cfg.bootstrap, cfg.topic, self.pending, applied, cfg.tail_wait)

    def start(self) -> None:
        """Start what runs in the background: the topic tail (read-your-writes)."""
        if self.tail is not None:
            self.tail.start()

    def current(self):
        return self.lists.current()

    def rows(self, stmt, params: dict | None = None, tables: tuple[str, ...] | None = None):
        return self.reads.rows(stmt, params, tables)

    def recommend_user(self, user_id: int, k: int, genres: list[str] | None) -> dict:
        return self.lists.recommend_user(user_id, k, genres)

    def recommend_anonymous(self, ratings: list[tuple[int, float]], k: int, genres: list[str] | None) -> dict:
        return self.lists.recommend_anonymous(ratings, k, genres)

    def similar(self, movie_id: int, metric: str, k: int, min_count: int | None) -> dict:
        return self.lists.similar(movie_id, metric, k, min_count)

    def genre_filter(self, genres: list[str] | None) -> list[str] | None:
        return self.lists.genre_filter(genres)

    def broker_check(self) -> dict:
        return self.ready.broker_check()

    def close(self) -> None:
        if self.tail is not None:
            self.tail.stop()
        self.ingest.close()


def parse_genres(text: str | None) -> list[str] | None:
    return [g.strip() for g in text.split(",") if g.strip()] if text else None

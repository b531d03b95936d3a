"""The sink DB on SQLAlchemy Core: a SQLite file by default, PostgreSQL by URL.

Tables are declared once as metadata (`TABLES`); statements are built with Core (`select`,
`delete`) and upserts with each dialect's own INSERT ... ON CONFLICT (`Sink.upsert`), so no SQL
text is rewritten per database. Every write from the stream happens in one transaction that also
records (query, batch_id) in `stream_batches`; a batch already recorded is skipped, so a
restarted stream never double counts.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite

from .errors import StreamrecError, first_line
from .settings import home

METADATA = sa.MetaData()
_D = sa.Double  # DOUBLE PRECISION on PostgreSQL, REAL affinity on SQLite


def _table(name: str, *columns: sa.Column) -> sa.Table:
    return sa.Table(name, METADATA, *columns)


def _key(name: str, kind: type = sa.BigInteger) -> sa.Column:
    return sa.Column(name, kind, primary_key=True, autoincrement=False)


def _col(name: str, kind: Any = _D, **kw: Any) -> sa.Column:
    return sa.Column(name, kind, **kw)


def _sums() -> list[sa.Column]:
    """The additive aggregate columns: counts and sums, the average derived from them."""
    return [
        _col("n_ratings", sa.BigInteger, nullable=False),
        _col("rating_sum", nullable=False),
        _col("avg_rating"),
    ]


BIG, TEXT = sa.BigInteger, sa.Text
STREAM_QUERIES = ("aggregates", "foldin")  # the stream's queries: stream_batches/stream_metrics keys
stream_batches = _table("stream_batches", _key("query", TEXT), _key("batch_id"), _col("committed_at"))
stream_state = _table("stream_state", _key("key", TEXT), _col("value", TEXT))
movie_stats = _table(
    "movie_stats", _key("movie_id"), _col("title", TEXT), *_sums(), _col("last_event_ts", BIG)
)
genre_stats = _table("genre_stats", _key("genre", TEXT), *_sums())
user_activity = _table(
    "user_activity", _key("user_id"), *_sums(), _col("first_event_ts", BIG), _col("last_event_ts", BIG)
)
rating_histogram = _table("rating_histogram", _key("rating", _D), _col("n_ratings", BIG, nullable=False))
trending = _table(
    "trending", _key("window_start"), _col("window_end", BIG, nullable=False), _key("movie_id"), *_sums()
)
dead_letters = _table(
    "dead_letters", _key("topic", TEXT), _key("kafka_partition", sa.Integer), _key("kafka_offset"),
    _col("raw_value", TEXT), _col("reason", TEXT, nullable=False), _col("batch_id", BIG),
    _col("raw_base64", TEXT),
)  # fmt: skip
user_vectors = _table(
    "user_vectors", _key("user_id"), _col("model_version", TEXT), _col("n_ratings", BIG), _col("n_used", BIG),
    _col("vector", TEXT), _col("bias"), _col("updated_at"),
)  # fmt: skip
# Movies CURRENT does not serve from training: streamed (item fold-in) or from content (no ratings).
item_vectors = _table(
    "item_vectors", _key("movie_id"), _col("model_version", TEXT), _col("n_ratings", BIG),
    _col("source", TEXT), _col("vector", TEXT), _col("bias"), _col("updated_at"),
)  # fmt: skip
# The item fold-in's raters (streaming.item_folder): the latest rating of each rater of a movie the
# serving version does not serve from training, with the rater's vectors as folded in against
# model_version when they rated it ("" and NULL vectors: the version's trained ones count).
item_raters = _table(
    "item_raters", _key("movie_id"), _key("user_id"), _col("rating"), _col("timestamp", BIG),
    _col("model_version", TEXT), _col("rvec", sa.LargeBinary), _col("evec", sa.LargeBinary), _col("ebias"),
)  # fmt: skip
# Live hit rate of the served lists (streaming.live_eval), per model version, list source and
# minute of Kafka time; popularity's hits are on exactly the same events. A candidate's rows
# (source "shadow") are on the same events as CURRENT's, with the discordant events of the pair:
# only_this (the candidate hit, CURRENT did not) and only_ref (the reverse).
live_eval = _table(
    "live_eval", _key("model_version", TEXT), _key("source", TEXT), _key("bucket"), _col("events", BIG),
    _col("hits", BIG), _col("rank_sum", BIG), _col("pop_hits", BIG), _col("only_this", BIG),
    _col("only_ref", BIG), _col("updated_at"),
)  # fmt: skip
user_recommendations = _table(
    "user_recommendations", _key("user_id"), _key("rank", sa.Integer), _col("movie_id", BIG, nullable=False),
    _col("score"), _col("predicted_rating"), _col("model_version", TEXT), _col("source", TEXT),
)  # fmt: skip
stream_metrics = _table(
    "stream_metrics", _key("query", TEXT), _key("batch_id"), _col("at"), _col("input_rows", BIG),
    _col("rows_per_s"), _col("duration_ms", BIG), _col("latency_p50_ms"), _col("latency_p95_ms"),
    _col("latency_p99_ms"), _col("latency_max_ms"), _col("state_rows", BIG), _col("dead_letters", BIG),
    _col("late_events", BIG), _col("model_version", TEXT),
)  # fmt: skip

# The retention's range deletes (streaming.retention), once a minute inside the write lock: without
# these a week of stream_metrics (~10^6 rows) is scanned whole each time.
RETENTION_INDEXES = (
    sa.Index("ix_stream_metrics_at", stream_metrics.c.at),
    sa.Index("ix_trending_window_end", trending.c.window_end),
    sa.Index("ix_live_eval_bucket", live_eval.c.bucket),
    sa.Index("ix_dead_letters_batch_id", dead_letters.c.batch_id),
)
TABLES = METADATA.tables
AGGREGATE_TABLES = ["movie_stats", "genre_stats", "user_activity", "rating_histogram", "trending"]
# Columns added after a table first shipped: create_schema adds them in place, keeping every row.
_ADDED_COLUMNS = {"user_recommendations": ["predicted_rating"], "dead_letters": ["raw_base64"],
                  "stream_metrics": ["latency_p99_ms"]}  # fmt: skip

_engines: dict[str, sa.Engine] = {}
_engines_lock = threading.Lock()


def default_url(root: Path | None = None) -> str:
    """The embedded sink: a SQLite file in the state directory (default $STREAMREC_HOME)."""
    return f"sqlite:///{(root or home()) / 'streamrec.db'}"


def engine_for(url: str) -> sa.Engine:
    """One engine (connection pool) per URL and process."""
    with _engines_lock:
        if url not in _engines:
            _engines[url] = _create_engine(url)
        return _engines[url]


def _create_engine(url: str) -> sa.Engine:
    if url.startswith(("postgresql://", "postgres://")):
        try:
            import psycopg  # noqa: F401 - the driver SQLAlchemy will use
        except ImportError as exc:  # pragma: no cover - declared dependency
            raise StreamrecError("PostgreSQL sink needs the psycopg package") from exc
        return sa.create_engine("postgresql+psycopg://" + url.split("://", 1)[1], pool_pre_ping=True)
    if not url.startswith("sqlite:///"):
        raise StreamrecError(f"unsupported sink URL {url!r}: use sqlite:///PATH or postgresql://...")
    Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    # Spark calls foreachBatch and listeners from its own threads, one at a time per connection.
    engine = sa.create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn, _record) -> None:
        dbapi_conn.isolation_level = None  # SQLAlchemy's BEGIN below, not pysqlite's implicit one
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")  # readers never block the stream
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn) -> None:
        if conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
            return  # the reader: each SELECT is its own snapshot
        # A writer takes the lock at BEGIN: two writers then wait (busy timeout), never deadlock.
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.get("write") else "BEGIN")

    return engine


class Sink:
    """A connection to the sink DB. Use `open_sink()` (or close() it)."""

    def __init__(self, url: str, threadsafe: bool = False):
        self.url = url
        self.engine = engine_for(url)
        self.postgres = self.engine.dialect.name == "postgresql"
        try:
            self.conn = self.engine.connect()
        except sa.exc.OperationalError as exc:
            raise StreamrecError(f"cannot connect to the sink at {_redact(url)}: {first_line(exc)}") from None
        self._reader: sa.Connection | None = None
        self._in_tx = False

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
        self.conn.close()

    @property
    def reader(self) -> sa.Connection:
        """An autocommit connection for reads outside a write transaction: no BEGIN/ROLLBACK
        round trips per read (a SQLite read is its own snapshot; PostgreSQL's, its own statement).
        The API's hot path reads through it (bench/sink_bench.py)."""
        if self._reader is None:
            self._reader = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        return self._reader

    @property
    def unavailable_errors(self) -> tuple[type[BaseException], ...]:
        """Errors that are about the sink (locked, disk full, connection lost), never about one
        record: a batch that fails with one of these is worth retrying as a whole."""
        return (sa.exc.OperationalError, sa.exc.InterfaceError)

    def reconnect(self) -> None:
        """A fresh connection from the pool (after a lost PostgreSQL connection)."""
        for conn in (self.conn, self._reader):
            with contextlib.suppress(Exception):
                if conn is not None:
                    conn.invalidate()
                    conn.close()
        self.conn, self._reader = self.engine.connect(), None
        self._in_tx = False

    # -- statements ------------------------------------------------------------------------------

    def execute(self, stmt: sa.Executable | str, params: Mapping[str, Any] | Sequence[Mapping] | None = None):
        """Run a Core statement (or SQL text with :named parameters) inside `transaction()`."""
        return self.conn.execute(sa.text(stmt) if isinstance(stmt, str) else stmt, params)

    def query(self, stmt: sa.Executable | str, params: Mapping[str, Any] | None = None) -> list[sa.Row]:
        """Rows of a read: inside `transaction()` on its connection, else on the autocommit reader."""
        if self._in_tx:
            return self.execute(stmt, params).fetchall()
        return self.reader.execute(sa.text(stmt) if isinstance(stmt, str) else stmt, params).fetchall()

    def upsert(self, table: sa.Table, rows: list[dict], update: Callable[[Any], dict] | Sequence[str] | None):
        """INSERT rows; on a primary-key conflict apply `update(excluded)` (a dict of column ->
        expression), copy the listed columns, or (None) keep the stored row."""
        if not rows:
            return
        ins = (postgresql.insert if self.postgres else sqlite.insert)(table)
        keys = [c.name for c in table.primary_key]
        if update is None:
            stmt = ins.on_conflict_do_nothing(index_elements=keys)
        else:
            set_ = update(ins.excluded) if callable(update) else {c: ins.excluded[c] for c in update}
            stmt = ins.on_conflict_do_update(index_elements=keys, set_=set_)
        self.conn.execute(stmt, rows)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Sink]:
        """One write transaction (SQLite: BEGIN IMMEDIATE), committed on success."""
        if self.conn.in_transaction():
            self.conn.rollback()  # a read left open: writes start a fresh transaction
        self.conn.info["write"] = True
        self._in_tx = True
        try:
            with self.conn.begin():
                yield self
        finally:
            self._in_tx = False
            self.conn.info["write"] = False

    def create_schema(self) -> None:
        METADATA.create_all(self.engine)
        for index in RETENTION_INDEXES:  # create_all skips the indexes of a table that existed before
            index.create(self.engine, checkfirst=True)
        inspector = sa.inspect(self.engine)
        with self.transaction():
            # Tables created by an older version lack later columns: add them in place, so an
            # upgraded stream keeps every stored row instead of failing on its first insert.
            for name, added in _ADDED_COLUMNS.items():
                have = {c["name"] for c in inspector.get_columns(name)}
                for col in added:
                    if col not in have:
                        ddl = sa.schema.CreateColumn(TABLES[name].c[col]).compile(dialect=self.engine.dialect)
                        self.conn.exec_driver_sql(f"ALTER TABLE {name} ADD COLUMN {ddl}")

    def drop_all(self) -> None:
        METADATA.drop_all(self.engine)

    def columns(self, table: str) -> set[str]:
        return {c["name"] for c in sa.inspect(self.conn if self._in_tx else self.reader).get_columns(table)}

    # -- batch bookkeeping -----------------------------------------------------------------------

    def batch_applied(self, query: str, batch_id: int) -> bool:
        t = stream_batches
        return bool(self.query(sa.select(1).where(t.c.query == query, t.c.batch_id == batch_id)))

    def mark_batch(self, query: str, batch_id: int, at: float) -> None:
        self.execute(sa.insert(stream_batches), {"query": query, "batch_id": batch_id, "committed_at": at})

    def get_state(self, key: str) -> str | None:
        rows = self.query(sa.select(stream_state.c.value).where(stream_state.c.key == key))
        return rows[0][0] if rows else None

    def set_state(self, key: str, value: str) -> None:
        self.upsert(stream_state, [{"key": key, "value": value}], ["value"])

    def has_table(self, name: str) -> bool:
        return sa.inspect(self.conn if self._in_tx else self.reader).has_table(name)

    def count(self, table: str) -> int:
        return int(self.query(sa.select(sa.func.count()).select_from(TABLES[table]))[0][0])


@contextlib.contextmanager
def open_sink(url: str | None = None) -> Iterator[Sink]:
    sink = Sink(url or default_url())
    try:
        yield sink
    finally:
        sink.close()


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url

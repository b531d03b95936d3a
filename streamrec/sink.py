"""The sink DB: SQLite file by default, PostgreSQL by URL; one portable SQL dialect.

Every write from the stream happens in one transaction that also records (query, batch_id) in
`stream_batches`; a batch already recorded is skipped, so a restarted stream never double
counts. Upserts use INSERT ... ON CONFLICT ... DO UPDATE, which both databases support.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .errors import StreamrecError
from .settings import home

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS stream_batches (
        query TEXT NOT NULL, batch_id BIGINT NOT NULL, committed_at DOUBLE PRECISION,
        PRIMARY KEY (query, batch_id))""",
    """CREATE TABLE IF NOT EXISTS stream_state (key TEXT PRIMARY KEY, value TEXT)""",
    """CREATE TABLE IF NOT EXISTS movie_stats (
        movie_id BIGINT PRIMARY KEY, title TEXT, n_ratings BIGINT NOT NULL,
        rating_sum DOUBLE PRECISION NOT NULL, avg_rating DOUBLE PRECISION, last_event_ts BIGINT)""",
    """CREATE TABLE IF NOT EXISTS genre_stats (
        genre TEXT PRIMARY KEY, n_ratings BIGINT NOT NULL, rating_sum DOUBLE PRECISION NOT NULL,
        avg_rating DOUBLE PRECISION)""",
    """CREATE TABLE IF NOT EXISTS user_activity (
        user_id BIGINT PRIMARY KEY, n_ratings BIGINT NOT NULL, rating_sum DOUBLE PRECISION NOT NULL,
        avg_rating DOUBLE PRECISION, first_event_ts BIGINT, last_event_ts BIGINT)""",
    """CREATE TABLE IF NOT EXISTS rating_histogram (
        rating DOUBLE PRECISION PRIMARY KEY, n_ratings BIGINT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS trending (
        window_start BIGINT NOT NULL, window_end BIGINT NOT NULL, movie_id BIGINT NOT NULL,
        n_ratings BIGINT NOT NULL, rating_sum DOUBLE PRECISION NOT NULL, avg_rating DOUBLE PRECISION,
        PRIMARY KEY (window_start, movie_id))""",
    """CREATE TABLE IF NOT EXISTS dead_letters (
        topic TEXT NOT NULL, kafka_partition INTEGER NOT NULL, kafka_offset BIGINT NOT NULL,
        raw_value TEXT, reason TEXT NOT NULL, batch_id BIGINT, raw_base64 TEXT,
        PRIMARY KEY (topic, kafka_partition, kafka_offset))""",
    """CREATE TABLE IF NOT EXISTS user_vectors (
        user_id BIGINT PRIMARY KEY, model_version TEXT, n_ratings BIGINT, n_used BIGINT,
        vector TEXT, bias DOUBLE PRECISION, updated_at DOUBLE PRECISION)""",
    """CREATE TABLE IF NOT EXISTS user_recommendations (
        user_id BIGINT NOT NULL, rank INTEGER NOT NULL, movie_id BIGINT NOT NULL,
        score DOUBLE PRECISION, predicted_rating DOUBLE PRECISION, model_version TEXT, source TEXT,
        PRIMARY KEY (user_id, rank))""",
    """CREATE TABLE IF NOT EXISTS stream_metrics (
        query TEXT NOT NULL, batch_id BIGINT NOT NULL, at DOUBLE PRECISION,
        input_rows BIGINT, rows_per_s DOUBLE PRECISION, duration_ms BIGINT,
        latency_p50_ms DOUBLE PRECISION, latency_p95_ms DOUBLE PRECISION,
        latency_max_ms DOUBLE PRECISION, state_rows BIGINT, dead_letters BIGINT,
        late_events BIGINT, model_version TEXT, PRIMARY KEY (query, batch_id))""",
]

AGGREGATE_TABLES = ["movie_stats", "genre_stats", "user_activity", "rating_histogram", "trending"]


def default_url(root: Path | None = None) -> str:
    """The embedded sink: a SQLite file in the state directory (default $STREAMREC_HOME)."""
    return f"sqlite:///{(root or home()) / 'streamrec.db'}"


class Sink:
    """A connection to the sink DB with portable helpers. Use `open_sink()`."""

    def __init__(self, url: str, threadsafe: bool = False):
        self.url = url
        self._threadsafe = threadsafe
        self.postgres = url.startswith(("postgresql://", "postgres://"))
        if self.postgres:
            try:
                import psycopg
            except ImportError as exc:  # pragma: no cover - declared dependency
                raise StreamrecError("PostgreSQL sink needs the psycopg package") from exc
            try:
                self.conn = psycopg.connect(url, autocommit=False)
            except psycopg.OperationalError as exc:
                raise StreamrecError(f"cannot connect to PostgreSQL at {_redact(url)}: {exc}") from None
        elif url.startswith("sqlite:///"):
            path = Path(url.removeprefix("sqlite:///"))
            path.parent.mkdir(parents=True, exist_ok=True)
            # threadsafe: Spark calls foreachBatch/listeners from its own threads, one at a time
            self.conn = sqlite3.connect(
                path, timeout=60, isolation_level=None, check_same_thread=not threadsafe
            )
            self.conn.execute("PRAGMA journal_mode=WAL")  # readers never block the stream
            self.conn.execute("PRAGMA synchronous=NORMAL")
        else:
            raise StreamrecError(f"unsupported sink URL {url!r}: use sqlite:///PATH or postgresql://...")
        self._in_tx = False

    def close(self) -> None:
        self.conn.close()

    @property
    def unavailable_errors(self) -> tuple[type[BaseException], ...]:
        """Errors that are about the sink (locked, disk full, connection lost), never about one
        record: a batch that fails with one of these is worth retrying as a whole."""
        if self.postgres:
            import psycopg

            return (psycopg.OperationalError, psycopg.InterfaceError)
        return (sqlite3.OperationalError,)

    def reconnect(self) -> None:
        """A fresh connection to the same URL (after a lost PostgreSQL connection)."""
        with contextlib.suppress(Exception):
            self.conn.close()
        self.__init__(self.url, threadsafe=self._threadsafe)

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.postgres else sql

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        cur = self.conn.cursor()
        cur.execute(self._sql(sql), tuple(params))
        return cur

    def executemany(self, sql: str, rows: list[Sequence[Any]]) -> None:
        if rows:
            self.conn.cursor().executemany(self._sql(sql), rows)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        rows = self.execute(sql, params).fetchall()
        if self.postgres and not self._in_tx:
            self.conn.commit()  # end the implicit read transaction psycopg opened
        return rows

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Sink]:
        if not self.postgres:
            self.conn.execute("BEGIN IMMEDIATE")
        self._in_tx = True
        try:
            yield self
        except BaseException:
            self.conn.rollback()
            raise
        else:
            self.conn.commit()
        finally:
            self._in_tx = False

    def create_schema(self) -> None:
        with self.transaction():
            for ddl in SCHEMA:
                self.execute(ddl)
            # A sink created before the two-model version lacks this column: add it in place, so
            # an upgraded stream keeps every stored row instead of failing on its first insert.
            if "predicted_rating" not in self.columns("user_recommendations"):
                self.execute("ALTER TABLE user_recommendations ADD COLUMN predicted_rating DOUBLE PRECISION")
            if "raw_base64" not in self.columns("dead_letters"):  # likewise: added with the UTF-8 rule
                self.execute("ALTER TABLE dead_letters ADD COLUMN raw_base64 TEXT")

    def columns(self, table: str) -> set[str]:
        if self.postgres:
            rows = self.query(
                "SELECT column_name FROM information_schema.columns WHERE table_name = ?", (table,)
            )
            return {r[0] for r in rows}
        return {r[1] for r in self.query(f"PRAGMA table_info({table})")}

    # -- batch bookkeeping -----------------------------------------------------------------------

    def batch_applied(self, query: str, batch_id: int) -> bool:
        rows = self.execute(
            "SELECT 1 FROM stream_batches WHERE query = ? AND batch_id = ?", (query, batch_id)
        ).fetchall()
        return bool(rows)

    def mark_batch(self, query: str, batch_id: int, at: float) -> None:
        self.execute(
            "INSERT INTO stream_batches (query, batch_id, committed_at) VALUES (?, ?, ?)",
            (query, batch_id, at),
        )

    def get_state(self, key: str) -> str | None:
        rows = self.execute("SELECT value FROM stream_state WHERE key = ?", (key,)).fetchall()
        return rows[0][0] if rows else None

    def set_state(self, key: str, value: str) -> None:
        self.execute(
            "INSERT INTO stream_state (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    # -- reads for serving -----------------------------------------------------------------------

    def has_table(self, name: str) -> bool:
        sql = (
            "SELECT to_regclass(?) IS NOT NULL"
            if self.postgres
            else "SELECT COUNT(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = ?"
        )
        return bool(self.query(sql, (name,))[0][0])


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

"""How serving reads the sink DB: one connection per thread (the stream is the only writer), and no
rows at all while the stream has not created a table yet."""

from __future__ import annotations

import threading
import time

import sqlalchemy as sa
from sqlalchemy.sql.util import find_tables

from streamrec.sink import Sink

TABLES_RECHECK_S = 5.0  # how long a missing table is remembered as missing


class SinkReads:
    def __init__(self, sink_url: str):
        self.sink_url = sink_url
        self._local = threading.local()

    def sink(self) -> Sink:
        s = getattr(self._local, "sink", None)
        if s is None:
            s = self._local.sink = Sink(self.sink_url, threadsafe=True)
        return s

    def sink_or_none(self) -> Sink | None:
        try:
            return self.sink()
        except Exception:  # noqa: BLE001 - no sink yet (nothing streamed): the version alone
            return None

    def rows(self, stmt: sa.Select, params: dict | None = None, tables: tuple[str, ...] | None = None):
        """Rows of a read, or none while the stream has not created its tables yet (`tables`:
        the statement's, when the caller knows them; else found by walking the statement)."""
        sink = self.sink()
        names = tables if tables is not None else [t.name for t in find_tables(stmt)]
        if not all(self._has_table(sink, t) for t in names):
            return []
        return sink.query(stmt, params)

    def _has_table(self, sink: Sink, table: str) -> bool:
        known = getattr(self._local, "tables", None)
        if known is None or time.monotonic() - known[0] > TABLES_RECHECK_S:
            known = self._local.tables = (time.monotonic(), set())
        if table not in known[1] and sink.has_table(table):
            known[1].add(table)
        return table in known[1]


def num(v) -> float | None:
    """A DB number as a JSON-safe float (NULL and NaN: None)."""
    if v is None:
        return None
    f = float(v)
    return None if f != f else f

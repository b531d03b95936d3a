"""Prometheus metrics of the server (prometheus-client): requests, model, stream lag and latency.

Request counts and latencies are labelled by route template (`/movies/{movie_id}`), never by
the raw path, so an id scan cannot blow up the series count. Stream figures are read when
scraped: latency and batch age from `stream_metrics`, lag as the topic's end offsets minus the
offsets in the stream's newest checkpoint (how many records each query has yet to read).
"""

from __future__ import annotations

import threading
import time

import sqlalchemy as sa
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from streamrec import sink as db

from .stats import QUERIES
from .stream_progress import planned_offsets

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    def __init__(self, service):
        self.service = service
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "streamrec_http_requests", "HTTP requests", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "streamrec_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_StreamCollector(service))
        if service.tail is not None:
            self.registry.register(_TailCollector(service))
        self.middleware = self._middleware_class()

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def _middleware_class(self):
        metrics = self

        class RequestMetrics:
            """Pure ASGI middleware (cheaper than BaseHTTPMiddleware on every request)."""

            def __init__(self, app):
                self.app = app

            async def __call__(self, scope, receive, send):
                if scope["type"] != "http":
                    return await self.app(scope, receive, send)
                start = time.perf_counter()
                status = {"code": 500}

                async def send_wrapper(message):
                    if message["type"] == "http.response.start":
                        status["code"] = message["status"]
                    await send(message)

                try:
                    await self.app(scope, receive, send_wrapper)
                finally:
                    route = getattr(scope.get("route"), "path", None) or "unmatched"
                    if route.startswith("/static"):
                        route = "/static"
                    metrics.requests.labels(scope["method"], route, str(status["code"])).inc()
                    metrics.latency.labels(scope["method"], route).observe(time.perf_counter() - start)

        return RequestMetrics


class _StreamCollector:
    """Collected at scrape time; Kafka end offsets are cached for a few seconds."""

    def __init__(self, service):
        self.service = service
        self._consumer = None
        self._lock = threading.Lock()
        self._ends: tuple[float, dict[int, int] | None] = (0.0, None)

    def collect(self):
        svc = self.service
        info = GaugeMetricFamily(
            "streamrec_model_info", "CURRENT model version (value 1)", labels=["version"]
        )
        version = svc.store.current_version()
        if version:
            info.add_metric([version], 1.0)
        yield info
        yield from _live_eval_counters(svc.stats.live_eval())
        p95 = GaugeMetricFamily(
            "streamrec_stream_latency_p95_seconds",
            "end-to-end latency p95 of the newest batch",
            labels=["query"],
        )
        age = GaugeMetricFamily(
            "streamrec_stream_last_batch_age_seconds", "time since the newest batch", labels=["query"]
        )
        try:
            m = db.stream_metrics.c
            newest = (
                sa.select(m.query, sa.func.max(m.batch_id).label("b")).group_by(m.query).subquery("newest")
            )
            rows = svc.rows(
                sa.select(m.query, m.at, m.latency_p95_ms)
                .select_from(db.stream_metrics)
                .join(newest, sa.and_(m.query == newest.c.query, m.batch_id == newest.c.b))
            )
        except Exception:  # noqa: BLE001 - a scrape never fails because the sink is down
            rows = []
        now = time.time()
        for q, at, lat in rows:
            if at is not None:
                age.add_metric([q], max(0.0, now - float(at)))
            if lat is not None:
                p95.add_metric([q], float(lat) / 1000.0)
        yield p95
        yield age
        dead = GaugeMetricFamily("streamrec_dead_letters", "bad records stored in dead_letters")
        try:
            n = svc.rows(sa.select(sa.func.count()).select_from(db.dead_letters))
            dead.add_metric([], float(n[0][0]) if n else 0.0)
        except Exception:  # noqa: BLE001
            pass
        yield dead
        yield from _ratings_index_gauges(svc.lists.ratings_index())
        lag = GaugeMetricFamily(
            "streamrec_stream_lag_records", "records in the topic not yet read by a query", labels=["query"]
        )
        ends = self._end_offsets()
        if ends is not None:
            for q in QUERIES:
                done = planned_offsets(svc.cfg.checkpoint_dir / q)
                if done is not None:
                    lag.add_metric([q], float(sum(max(0, e - done.get(p, 0)) for p, e in ends.items())))
        yield lag

    def _end_offsets(self) -> dict[int, int] | None:
        cfg = self.service.cfg
        if cfg.bootstrap is None:
            return None
        at, ends = self._ends
        if time.monotonic() - at < 5.0:
            return ends
        with self._lock:
            if not self.service.broker_check()["ok"]:  # a closed port answers at once: skip the client
                self._ends = (time.monotonic(), None)
                return None
            try:
                from kafka import KafkaConsumer, TopicPartition

                if self._consumer is None:
                    self._consumer = KafkaConsumer(
                        bootstrap_servers=cfg.bootstrap,
                        request_timeout_ms=3000,
                    )
                parts = self._consumer.partitions_for_topic(cfg.topic) or set()
                tps = [TopicPartition(cfg.topic, p) for p in parts]
                ends = {tp.partition: o for tp, o in self._consumer.end_offsets(tps).items()} if tps else None
            except Exception:  # noqa: BLE001 - no broker: no lag figure, the scrape still succeeds
                ends = None
            self._ends = (time.monotonic(), ends)
            return ends


def _ratings_index_gauges(index):
    """Its size: rows grow with the data, files stay bounded by the event log's compaction."""
    rows = GaugeMetricFamily("streamrec_ratings_index_rows", "ratings held for request-time fold-in")
    files = GaugeMetricFamily("streamrec_ratings_index_files", "event-log files the ratings index has read")
    if index is not None:  # None before the first model load
        rows.add_metric([], float(len(index)))
        files.add_metric([], float(index.files))
    yield rows
    yield files


class _TailCollector:
    """Read-your-writes (serving.topic_tail, serving.pending), read when scraped."""

    def __init__(self, service):
        self.service = service

    def collect(self):
        tail = self.service.tail.status()
        buf = self.service.pending.stats()
        gauges = (
            ("streamrec_tail_connected", "1 while this server tails the ratings topic", tail.connected),
            ("streamrec_pending_events", "pending ratings held (not applied by the stream)", buf.events),
            ("streamrec_pending_users", "users with pending ratings", buf.users),
            ("streamrec_pending_marked_users", "evicted users waiting for the stream to apply their events",
             buf.marked_users),
            ("streamrec_pending_degraded", "1 while evicted users were forgotten: every list comes from the "
             "sink and the event log until the stream catches up", float(buf.degraded)),
        )  # fmt: skip
        for name, doc, value in gauges:
            g = GaugeMetricFamily(name, doc)
            g.add_metric([], float(value))
            yield g
        lag = GaugeMetricFamily("streamrec_tail_lag_records", "records in the topic the tail has not read")
        if tail.lag is not None:
            lag.add_metric([], float(tail.lag))
        yield lag
        counters = (
            ("streamrec_tail_records", "records the tail has read", tail.records),
            ("streamrec_pending_evicted_users", "users evicted from the pending buffer (over a bound)",
             buf.evicted_users),
            ("streamrec_pending_applied_events", "pending ratings dropped because the stream applied them",
             buf.applied_events),
            ("streamrec_tail_waits", "GETs that waited for the tail (--tail-wait, a read token)",
             tail.waits),
            ("streamrec_tail_wait_timeouts", "of those, how many gave up (--tail-wait, --read-token-wait)",
             tail.wait_timeouts),
        )  # fmt: skip
        for name, doc, value in counters:
            c = CounterMetricFamily(name, doc)
            c.add_metric([], float(value))
            yield c


def _live_eval_counters(rows: list[dict]):
    """The stream's live evaluation as counters (streaming.live_eval): per model version and list
    source, events scored, hits of the served list, and hits of popularity on the same events."""
    names = (("events", "live rating events scored against the list served before them", "events"),
             ("hits", "of those, events whose movie was in the served list", "hits"),
             ("popularity_hits", "of those, events whose movie was in the running popularity list",
              "popularity_hits"))  # fmt: skip
    for name, doc, key in names:
        family = CounterMetricFamily(f"streamrec_live_eval_{name}", doc, labels=["model_version", "source"])
        for r in rows:
            family.add_metric([r["model_version"], r["source"]], float(r[key]))
        yield family

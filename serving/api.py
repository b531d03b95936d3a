"""The HTTP API and dashboard (`streamrec serve`): FastAPI over `serving.service.Service`.

Every error a client can cause is a 4xx with a JSON body {"detail": "..."}; unknown ids are
404; a missing model or broker is 503. Endpoints on the request path are `async def` and run
inline on the event loop: each is well under a millisecond of CPU plus a local DB read, and
FastAPI's thread-pool hand-off and the GIL contention of its threads cost more than the work
(docs/benchmarks.md, "HTTP API": a known user's p99 at 16 connections went from 65.9 ms in
the pool to a few ms inline). What waits on the network (Kafka, readiness probes, metrics)
stays a plain `def` in the pool, and new event-log files are read on a background thread
(serving.ratings_index).
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from streamrec.errors import (
    InvalidRequest,
    KafkaUnavailable,
    ModelStoreError,
    NotFound,
    StreamrecError,
)
from streamrec.events import MAX_ID, MAX_TS, MIN_TS, loads_strict

from .apikeys import Authenticator, KeyStore
from .limits import BodyLimit, RateLimit, TokenBucket, client_address
from .metrics import Metrics
from .read_token import MAX_LENGTH as TOKEN_MAX_LENGTH
from .read_token import PATTERN as TOKEN_PATTERN
from .read_token import encode, joined
from .service import ServeConfig, Service, parse_genres

STATIC = Path(__file__).parent / "static"
WAIT_NOTE = (
    "read-your-writes: the topic tail did not reach the topic's end within {:g} s; events produced "
    "through another server in the last moments may be missing"
)
TOKEN_NOTE = (
    "read-your-writes: this server's topic tail had not read past the read token (after) within {:g} s; "
    "the events it stands for may be missing from this list (stale)"
)
NO_TAIL_NOTE = (
    "read-your-writes: this server does not tail the topic (--no-tail, no Kafka, or Kafka down); "
    "the events of the read token (after) may be missing from this list (stale)"
)
TOKEN_HEADER = "X-Streamrec-Read-Token"
TOKEN_FORMAT = (
    "PARTITION:OFFSET pairs joined by commas, partitions ascending (e.g. 0:123,2:456): the largest "
    "offset per partition of the ratings topic at which the broker acknowledged the events"
)
TOKEN_SCHEMA = {"pattern": TOKEN_PATTERN, "maxLength": TOKEN_MAX_LENGTH}  # documented; parse() answers 400
UserId = Annotated[int, PathParam(ge=1, le=MAX_ID, description="user id (1..2^31-1)")]
MovieId = Annotated[int, PathParam(ge=1, le=MAX_ID, description="movie id (1..2^31-1)")]
K = Annotated[int, Query(ge=1, le=1000, description="how many movies")]
Limit = Annotated[int, Query(ge=1, le=1000)]


# -- response and request models (the OpenAPI contract) ----------------------------------------


class Because(BaseModel):
    movie_id: int
    title: str | None
    contribution: float


class Explanation(BaseModel):
    """score = prior + sum(because.contribution) + rest (streamrec.explain)."""

    prior: float = Field(
        description="the popularity prior's term (the whole score for a user with no rating)"
    )
    because: list[Because] = Field(
        description="the rated movies that contribute most, largest first (at most 3)"
    )
    rest: float = Field(description="every other rated movie's contribution, summed")


class Item(BaseModel):
    movie_id: int
    title: str
    genres: list[str]
    score: float
    predicted_rating: float = Field(description="the explicit model's predicted rating, 0.5..5")
    explanation: Explanation | None = None


class RecommendationList(BaseModel):
    user_id: int | None
    model_version: str
    source: Literal["stream", "model", "fold-in", "popularity", "anonymous"] = Field(
        description="stream: the stream's list for CURRENT; model: the trained vector; fold-in: the "
        "user's known ratings folded in now; popularity: cold start; anonymous: the request's ratings"
    )
    pending_events: int = Field(
        0,
        description="ratings of this user the stream had not applied yet, folded in at request time "
        "from this server's read-your-writes buffer (source fold-in); 0 otherwise",
    )
    notes: list[str]
    items: list[Item]


class Rated(BaseModel):
    movie_id: int = Field(ge=1, le=MAX_ID)
    rating: float = Field(ge=0.5, le=5.0, multiple_of=0.5, description="0.5..5.0 in steps of 0.5")


class AnonymousRequest(BaseModel):
    ratings: list[Rated] = Field(max_length=10_000)
    k: int = Field(10, ge=1, le=1000)
    genres: list[str] | None = None
    explain: bool = False


class SimilarItem(BaseModel):
    movie_id: int
    title: str
    genres: list[str]
    similarity: float | None = None
    distance: float | None = None
    n_ratings: int | None = None


class SimilarList(BaseModel):
    movie_id: int
    title: str
    metric: str
    model_version: str
    items: list[SimilarItem]


class Accepted(BaseModel):
    accepted: int
    topic: str
    read_token: str = Field(
        description=f"{TOKEN_FORMAT}. Pass it to GET /recommendations/{{user_id}} as `after` (or the "
        "X-Streamrec-After header) to read these events on any server replica; also sent as the "
        f"{TOKEN_HEADER} header"
    )


class Error(BaseModel):
    detail: Any


class Readiness(BaseModel):
    ready: bool
    checks: dict[str, dict[str, Any]]


# The event contract as JSON Schema, for the OpenAPI document only: the body is checked by the
# stream's own rules (streamrec.events.check), so both refuse the same events with one reason.
EVENT_SCHEMA = {
    "type": "object",
    "required": ["user_id", "movie_id", "rating"],
    "properties": {
        "user_id": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
        "movie_id": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
        "rating": {"type": "number", "minimum": 0.5, "maximum": 5.0, "multipleOf": 0.5},
        "timestamp": {
            "type": "integer",
            "minimum": MIN_TS,
            "maximum": MAX_TS,
            "description": "event time, epoch seconds; omitted: the time of the request",
        },
    },
}
EVENTS_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        EVENT_SCHEMA,
                        {"type": "array", "items": EVENT_SCHEMA, "minItems": 1, "maxItems": 10_000},
                    ]
                },
                "example": {"user_id": 900001, "movie_id": 260, "rating": 5.0},
            }
        },
    }
}


ERRORS = {
    400: {"model": Error},
    404: {"model": Error},
    422: {"model": Error},
    503: {"model": Error},
}
BODY_ERRORS = {**ERRORS, 413: {"model": Error}}
AUTH_ERRORS = {401: {"model": Error}, 403: {"model": Error}}
BEARER = HTTPBearer(
    auto_error=False,
    description="An API key: `streamrec apikey create NAME --scopes read,write`, sent as "
    "`Authorization: Bearer <secret>`. Needed when the server has keys; public routes need none.",
)


def _needs(auth: Authenticator, scope: str):
    """A dependency: 401 without a known key, 403 when the key lacks `scope` (no-op with auth off)."""

    async def check(request: Request, cred: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]):
        if not auth.enabled:
            return
        if cred is None:
            raise HTTPException(
                401,
                f"this needs an API key with the {scope!r} scope, sent as Authorization: Bearer <secret> "
                "(streamrec apikey create NAME --scopes ...)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        key = auth.identify(cred.credentials)
        if key is None:
            raise HTTPException(401, "unknown API key", headers={"WWW-Authenticate": "Bearer"})
        if scope not in key.scopes:
            raise HTTPException(403, f"API key {key.name!r} does not have the {scope!r} scope")
        request.state.api_key = key.name

    return [Depends(check)] if auth.enabled else []  # auth off: no check, none in the OpenAPI document


def _rate_key(auth: Authenticator):
    """Rate-limit key: the API key's name when it is a known key, else the client address."""

    def key_of(scope) -> str:
        if auth.enabled:
            for name, value in scope["headers"]:
                if name == b"authorization":
                    kind, _, token = value.decode("latin-1").partition(" ")
                    key = auth.identify(token.strip()) if kind.lower() == "bearer" else None
                    if key is not None:
                        return f"key:{key.name}"
        return client_address(scope)

    return key_of


def create_app(cfg: ServeConfig) -> FastAPI:
    service = Service(cfg)
    metrics = Metrics(service)
    auth = Authenticator(KeyStore(cfg.api_keys) if cfg.api_keys is not None else None)
    read, write = _needs(auth, "read"), _needs(auth, "write")
    tail = service.tail

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        service.start()  # the topic tail (read-your-writes), when Kafka is configured
        yield
        service.close()  # stop the tail; flush and close the Kafka producer, if one was opened

    app = FastAPI(
        lifespan=lifespan,
        title="streamrec",
        version="1",
        description="Movie recommendations from a streaming, incremental ALS recommender: lists, "
        "similar movies, live OLAP statistics of the stream, model versions, and rating ingestion.",
        responses={422: {"model": Error}},
    )
    app.state.service = service
    app.state.auth = auth
    # Outermost last: metrics see every answer, the rate limit runs before a body is looked at.
    app.add_middleware(BodyLimit, max_bytes=cfg.max_body_bytes)
    if cfg.rate_limit:
        app.add_middleware(RateLimit, bucket=TokenBucket(cfg.rate_limit), key_of=_rate_key(auth))
    app.add_middleware(metrics.middleware)

    @app.exception_handler(StreamrecError)
    async def _errors(request: Request, exc: StreamrecError) -> JSONResponse:
        status = 400
        if isinstance(exc, NotFound):
            status = 404
        elif isinstance(exc, InvalidRequest):
            status = 422
        elif isinstance(exc, KafkaUnavailable | ModelStoreError):
            status = 503
        return JSONResponse({"detail": str(exc)}, status_code=status)

    # -- recommendations ---------------------------------------------------------------------

    @app.get(
        "/recommendations/{user_id}",
        response_model=RecommendationList,
        responses={**ERRORS, **AUTH_ERRORS},
        tags=["recommendations"],
        dependencies=read,
    )
    async def user_recommendations(
        user_id: UserId,
        k: K = 10,
        genres: str | None = Query(None, max_length=500),
        explain: bool = False,
        after: str = Query(  # no `| None`: the schema is the token's string alone (pattern), default none
            None,
            json_schema_extra=TOKEN_SCHEMA,
            description="a read token from POST /events (its `read_token`): wait, at most the server's "
            "--read-token-wait, until this server has read those events, so the list reflects them "
            "whichever replica took the POST; not read in time: a `notes` entry says the list may be stale",
        ),
        x_streamrec_after: str = Header(
            None,
            json_schema_extra=TOKEN_SCHEMA,
            description="the read token, as the `after` parameter (both given: both are waited for)",
        ),
    ):
        """A user's top-k: the stream's list when fresh for CURRENT and no event of the user is
        pending (read-your-writes: events the stream has not applied yet, from this server's tail
        of the topic), else their ratings folded in now, pending ones included; a user never seen
        gets the cold-start list. `genres`: comma-separated filter; `explain`: each item's score
        split into the popularity prior and the rated movies' contributions ("because you
        rated")."""
        genre_filter = service.lists.genre_filter(parse_genres(genres))
        # Both given: waited for together, as a comma-joined token (a partition's largest offset).
        offsets = joined((after, x_streamrec_after))
        note = None
        if offsets is not None:  # a read token: wait for those offsets only (no Kafka request)
            if tail is None or not await tail.read(offsets, cfg.read_token_wait):
                tailing = tail is not None and tail.status().connected
                note = TOKEN_NOTE.format(cfg.read_token_wait) if tailing else NO_TAIL_NOTE
        elif tail is not None and tail.wait_s and await tail.caught_up() is False:
            note = WAIT_NOTE.format(tail.wait_s)
        out = service.lists.recommend_user(user_id, k, genre_filter, explain)
        if note is not None:
            out["notes"].append(note)
        return out

    @app.post(
        "/recommendations",
        response_model=RecommendationList,
        responses={**BODY_ERRORS, **AUTH_ERRORS},
        tags=["recommendations"],
        dependencies=read,
    )
    async def anonymous_recommendations(req: AnonymousRequest):
        """An anonymous user folded in from the given ratings on the spot (nothing is stored)."""
        ratings = [(r.movie_id, r.rating) for r in req.ratings]
        genre_filter = service.lists.genre_filter(req.genres)
        return service.lists.recommend_anonymous(ratings, req.k, genre_filter, req.explain)

    # -- movies ------------------------------------------------------------------------------

    @app.get("/movies", tags=["movies"], responses=ERRORS)
    async def search_movies(
        q: str = Query(..., min_length=1, max_length=200), limit: Limit = 10
    ) -> list[dict]:
        """Movies whose title contains `q` (case-insensitive), most rated first."""
        return service.lists.search_movies(q, limit)

    @app.get("/movies/{movie_id}", tags=["movies"], responses=ERRORS)
    async def movie(movie_id: MovieId) -> dict:
        """Title, genres, training ratings and the stream's live statistics of one movie."""
        return service.details.movie(movie_id)

    @app.get(
        "/movies/{movie_id}/similar",
        response_model=SimilarList,
        response_model_exclude_none=True,
        responses=ERRORS,
        tags=["movies"],
    )
    async def similar(
        movie_id: MovieId,
        metric: Literal["cosine", "euclidean", "lsh"] = "cosine",
        k: K = 10,
        min_count: int | None = Query(None, ge=1, le=MAX_ID),
    ):
        """Movies similar to a movie by the ranking model's item factors (exact cosine or
        Euclidean, or approximate LSH), among movies with >= min_count training ratings."""
        return service.lists.similar(movie_id, metric, k, min_count)

    @app.get("/users/{user_id}", tags=["users"], responses={**ERRORS, **AUTH_ERRORS}, dependencies=read)
    def user(user_id: UserId) -> dict:
        """A user's activity in the stream, their stream vector's model version and rated count."""
        return service.details.user(user_id)

    # -- live statistics ---------------------------------------------------------------------

    @app.get("/stats/movies", tags=["stats"], responses=ERRORS)
    async def stats_movies(
        order: Literal["n_ratings", "avg_rating"] = "n_ratings",
        min_count: int = Query(1, ge=0, le=MAX_ID),
        limit: Limit = 20,
    ) -> list[dict]:
        """Movies by rating count or average (with at least min_count ratings), live."""
        return service.stats.movies(order, min_count, limit)

    @app.get("/stats/genres", tags=["stats"])
    async def stats_genres() -> list[dict]:
        """Rating count and average per genre, live."""
        return service.stats.genres()

    @app.get("/stats/trending", tags=["stats"], responses=ERRORS)
    async def stats_trending(
        window: str = Query("latest", pattern=r"^(latest|[0-9]{1,12})$"), limit: Limit = 10
    ) -> dict:
        """The most rated movies of an event-time window: `latest` or a window start (epoch s)."""
        return service.stats.trending(window, limit)

    @app.get("/stats/histogram", tags=["stats"])
    async def stats_histogram() -> list[dict]:
        """How many ratings of each value, live."""
        return service.stats.histogram()

    @app.get("/stats/stream", tags=["stats"], responses=ERRORS)
    async def stats_stream(batches: int = Query(60, ge=1, le=1000)) -> dict:
        """Per query: last batch, throughput, latency p50/p95 over the recent batches; dead letters;
        and the recent batches themselves (for charts)."""
        return service.stats.stream(batches)

    @app.get("/stats/live-eval", tags=["stats"], responses=ERRORS)
    async def stats_live_eval(
        by: Literal["source", "minute"] = "source", version: str | None = Query(None, max_length=40)
    ) -> list[dict]:
        """Hit rate@k of the lists served on live traffic: one row per model version and list
        source (`stream`, `model`, `popularity`, or `shadow` for a candidate never served), with
        `events`, `hits`, `hit_rate` and `popularity_hit_rate` on the same events; `by=minute`
        adds a row per minute of Kafka time (`minute`, epoch seconds) for charts."""
        return service.stats.live_eval(by_minute=by == "minute", version=version)

    @app.get("/stats/dead-letters", tags=["stats"], responses={**ERRORS, **AUTH_ERRORS}, dependencies=read)
    async def stats_dead_letters(limit: Limit = 20) -> list[dict]:
        """The newest bad records and why each was refused."""
        return service.stats.dead_letters(limit)

    # -- models ------------------------------------------------------------------------------

    @app.get("/models", tags=["models"])
    def models() -> list[dict]:
        """Every model version, newest first, with its list and rating metrics; one is CURRENT."""
        return service.models.versions()

    @app.get("/models/{version}", tags=["models"], responses=ERRORS)
    def model(version: str = PathParam(..., max_length=40)) -> dict:
        """One version's metadata: params, metrics, data counts, the cold-start blend."""
        return service.models.info(version)

    # -- ingestion ---------------------------------------------------------------------------

    @app.post("/events", status_code=202, response_model=Accepted, responses={**BODY_ERRORS, **AUTH_ERRORS},
              tags=["events"], openapi_extra=EVENTS_BODY, dependencies=write)  # fmt: skip
    async def events(request: Request, response: Response):
        """One rating or a list (at most 10,000) into the `ratings` topic, key = user id, checked by
        the stream's own rules; 422 names the first broken rule, 413 refuses a body over the
        server's limit unread, 503 answers within --kafka-timeout when Kafka does not. The 202 carries
        a read token (`read_token`, and the X-Streamrec-Read-Token header) for GET
        /recommendations/{user_id}?after=... on any replica."""
        try:
            text = (await request.body()).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidRequest("the body is not UTF-8") from None
        body, reason = loads_strict(text)  # the stream's JSON rules: no NaN, no duplicate keys
        if reason:
            raise InvalidRequest("the body is not JSON" + ("" if reason == "not JSON" else f" ({reason})"))
        if isinstance(body, list) and len(body) > 10_000:
            raise InvalidRequest(f"at most 10,000 events per request, got {len(body)}")
        valid = service.ingest.validate_events(body)
        acked = await run_in_threadpool(service.ingest.publish, valid)
        token = encode(acked)
        response.headers[TOKEN_HEADER] = token
        return {"accepted": len(acked), "topic": cfg.topic, "read_token": token}

    # -- operations --------------------------------------------------------------------------

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict:
        """The process is up."""
        return {"ok": True, "time": time.time()}

    @app.get("/readyz", tags=["operations"], response_model=Readiness, responses={503: {"model": Readiness}})
    def readyz():
        """Ready when the model is loaded and the sink and the broker are reachable (503 otherwise)."""
        r = service.ready.check()
        return JSONResponse(r, status_code=200 if r["ready"] else 503)

    @app.get("/metrics", tags=["operations"], response_class=Response)
    def prometheus() -> Response:
        """Prometheus text: request counts and latencies, model version, stream lag and latency."""
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    # -- dashboard ---------------------------------------------------------------------------

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def dashboard() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    return app

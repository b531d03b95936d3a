"""Serving subcommands: recommend, similar, serve (the HTTP API and dashboard)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import click
import numpy as np
import pandas as pd

from streamrec import logs
from streamrec.errors import StreamrecError
from streamrec.events import MAX_ID, TOPIC
from streamrec.model_store import json_default
from streamrec.settings import (
    PATH,
    PORT,
    POSITIVE,
    Converted,
    data_option,
    kafka_options,
    run_with_args,
    sink_option,
)
from streamrec.tables import markdown

from .apikeys import parse_scopes
from .ingest import DEFAULT_TIMEOUT_S
from .limits import DEFAULT_MAX_BODY, parse_rate
from .pending import DEFAULT_MAX_EVENTS, DEFAULT_MAX_PER_USER, DEFAULT_TAIL_WAIT_S
from .read_token import DEFAULT_WAIT_S as DEFAULT_READ_TOKEN_WAIT_S


@click.command("recommend", help="top-k movies for a user (new users: --rated; many: --ratings-file)")
@click.option("--user", type=click.IntRange(1, MAX_ID), default=None,
              help="user id (omit with --rated for a new user)")  # fmt: skip
@click.option("-k", "k", type=POSITIVE, default=10, help="how many movies")
@click.option("--rated", default=None, help="fold in these ratings now, e.g. 1:5,260:4.5")
@click.option("--ratings-file", type=PATH, default=None,
              help="CSV user_id,movie_id,rating[,timestamp]: every user folded in from exactly these rows; "
                   "JSON lines out")  # fmt: skip
@click.option("--genres", default=None, help="only these genres, comma-separated")
@sink_option("sink DB URL, for vectors refreshed by the stream")
@click.option(
    "--explain", is_flag=True, help="why each movie: the prior and the 3 rated movies that contribute most"
)
@click.option("--json", is_flag=True, help="print JSON")
def recommend_command(**kwargs) -> int:
    return run_with_args(recommend_cmd)(**kwargs)


@click.command("similar", help="movies similar to a movie (cosine, euclidean, lsh)")
@click.option("--movie", type=int, required=True, help="movie id")
@click.option("-k", "k", type=POSITIVE, default=10, help="how many movies")
@click.option("--metric", type=click.Choice(["cosine", "euclidean", "lsh"]), default="cosine",
              help="exact cosine or Euclidean over all factors, or approximate LSH")  # fmt: skip
@click.option("--min-count", type=POSITIVE, default=None,
              help="only movies with >= N ratings, live ones counted (default: the model's "
              "--min-support)")  # fmt: skip
@click.option(
    "--lsh-bucket-length", type=click.FloatRange(0, min_open=True), default=2.0, help="LSH bucket length"
)
@click.option("--lsh-tables", type=POSITIVE, default=5, help="LSH hash tables")
@click.option("--lsh-engine", type=click.Choice(["numpy", "spark"]), default="numpy",
              help="NumPy (in process, as the API) or Spark's BucketedRandomProjectionLSH")  # fmt: skip
@sink_option("sink DB URL, for movies the stream has folded in since the model")
@click.option("--json", is_flag=True, help="print JSON")
def similar_command(**kwargs) -> int:
    return run_with_args(similar_cmd)(**kwargs)


def _serving_model(sink_url: str | None):
    """CURRENT with the movies the stream folded in since and content vectors of the catalogue's
    unrated movies laid over it (serving.items), and its movies."""
    from streamrec.content import load_tags
    from streamrec.model_store import ModelStore
    from streamrec.movielens import load_movies
    from streamrec.sink import Sink, default_url

    from .items import laid_model

    model = ModelStore().load()
    data = Path(model.meta.history.data)
    movies = load_movies(data)
    url = sink_url or default_url()
    sink = None
    if not url.startswith("sqlite:///") or Path(url.removeprefix("sqlite:///")).exists():
        sink = Sink(url)  # a SQLite file that does not exist yet: nothing streamed, nothing to open
    try:
        return laid_model(model, sink, movies, load_tags(data)), movies
    finally:
        if sink is not None:
            sink.close()


def _load_context(sink_url: str | None = None):
    """CURRENT model (with streamed movies), every rating known now (its data window + the whole
    event log), movies."""
    from dataclasses import replace

    from streamrec.event_log import committed_files, event_log_dir
    from streamrec.history import latest_per_pair, load_history

    model, movies = _serving_model(sink_url)
    spec = model.meta.history
    log = event_log_dir()
    spec = replace(spec, event_log=str(log) if committed_files(log) else None)
    history = latest_per_pair(load_history(spec))
    return model, history, movies


def recommend_cmd(args: argparse.Namespace) -> int:
    from .recommend import parse_rated, read_ratings_file, recommend, recommend_many

    if args.ratings_file is not None:
        if args.user is not None or args.rated is not None or args.genres:
            raise StreamrecError("--ratings-file cannot be combined with --user, --rated or --genres")
        return _recommend_file(args, read_ratings_file(args.ratings_file), recommend_many)
    if args.user is None and args.rated is None:
        raise StreamrecError(
            "give --user ID, --rated MOVIE:RATING,... for a brand-new user, or --ratings-file F"
        )
    rated = parse_rated(args.rated) if args.rated else None
    genres = [g.strip() for g in args.genres.split(",")] if args.genres else None
    if args.user is not None and rated is None:
        recs = _known_user(args, genres)
    else:  # a new user, or a known one plus extra ratings: folded in now
        model, history, movies = _load_context(args.sink)
        mine = history[history["user_id"] == args.user] if args.user is not None else None
        recs = recommend(model, args.user, mine, movies, args.k, rated, genres, explain=args.explain)
    if args.json:
        print(json.dumps(recs.to_dict(), default=json_default))
        return 0
    who = f"user {args.user}" if args.user is not None else "a new user"
    for note in recs.notes:
        print(f"note: {note}")
    table = recs.items
    if "explanation" in table:  # one readable column: because you rated X (+c), Y (+c)
        table = table.assign(because=table.pop("explanation").map(_because))
    print(markdown(table))
    print(f"{len(recs.items)} recommendations for {who} from {recs.source} (model {recs.model_version})")
    return 0


def _recommend_file(args: argparse.Namespace, ratings: pd.DataFrame, recommend_many) -> int:
    import time

    t0 = time.monotonic()
    model, _ = _serving_model(args.sink)
    lists = recommend_many(model, ratings, args.k)
    for rec in lists:
        print(json.dumps(rec))
    cold = sum(r["source"] == "popularity" for r in lists)
    logs.get("serving").info(
        f"{len(lists):,} users ({cold} with no known movie: popularity) from {len(ratings):,} ratings, "
        f"top-{args.k} each, model {model.version}, in {time.monotonic() - t0:.1f}s"
    )
    return 0


def _because(e: dict) -> str:
    parts = [f"{b['title'] or b['movie_id']} ({b['contribution']:+.3f})" for b in e["because"]]
    return ", ".join(parts) + f"; prior {e['prior']:.3f}" if parts else f"popularity ({e['prior']:.3f})"


def _known_user(args: argparse.Namespace, genres: list[str] | None):
    """A known user's list exactly as `GET /recommendations/{id}` serves it: the stream's list
    when it is fresh for CURRENT, else the user's known ratings folded in. (Before, the stream's
    vector was paired with a rated set read from the event log, which progresses on its own: a
    movie just rated could come back as a recommendation.)"""
    from streamrec.settings import home

    from .recommend import Recommendations
    from .service import ServeConfig, Service

    svc = Service(ServeConfig.at_home(home(), args.sink))
    res = svc.lists.recommend_user(args.user, args.k, svc.lists.genre_filter(genres), args.explain)
    columns = ["movie_id", "title", "score", "predicted_rating", "genres"] + (
        ["explanation"] if args.explain else []
    )
    items = pd.DataFrame(res["items"], columns=columns)
    items.insert(0, "rank", np.arange(1, len(items) + 1))
    items["genres"] = items["genres"].map("|".join)
    return Recommendations(res["user_id"], res["source"], res["model_version"], items, res["notes"])


def similar_cmd(args: argparse.Namespace) -> int:
    from .recommend import recall, similar_candidates, similar_exact, similar_lsh

    model, movies = _serving_model(args.sink)
    movies = movies.set_index("movie_id")
    candidates = similar_candidates(model, args.min_count)
    if args.metric == "lsh":
        exact, _ = similar_exact(model, args.movie, args.k, "euclidean", candidates)  # unknown movie: 404
        if args.lsh_engine == "spark":
            from streamrec.spark import get_spark

            ids, score = similar_lsh(get_spark("streamrec-similar"), model, args.movie, args.k,
                                     args.lsh_bucket_length, args.lsh_tables,
                                     candidates=candidates)  # fmt: skip
        else:  # the same scheme in NumPy (as the API): no Spark start for a few thousand vectors
            from .lsh import RandomProjectionLSH

            lsh = RandomProjectionLSH(model.ranking.factors, args.lsh_bucket_length, args.lsh_tables)
            rows, score = lsh.query(int(model.items.rows(np.array([args.movie]))[0][0]), args.k, candidates)
            ids = model.items.ids[rows]
        extra = {"recall_vs_exact": recall(ids, exact)}
        column = "distance"
    else:
        ids, score = similar_exact(model, args.movie, args.k, args.metric, candidates)
        extra, column = {}, "similarity" if args.metric == "cosine" else "distance"
    table = pd.DataFrame({
        "rank": np.arange(1, len(ids) + 1), "movie_id": ids,
        "title": [movies["title"].get(i, f"movie {i}") for i in ids], column: np.round(score, 4),
    })  # fmt: skip
    if model.items.support is not None:
        table["n_ratings"] = model.items.support[model.items.rows(ids)[0]]
    min_count = args.min_count or model.items.min_support
    title = movies["title"].get(args.movie, f"movie {args.movie}")
    if args.json:
        print(json.dumps({"movie_id": args.movie, "title": title, "metric": args.metric,
                          "min_count": min_count, "model_version": model.version, **extra,
                          "items": table.to_dict("records")}, default=json_default))  # fmt: skip
        return 0
    print(markdown(table))
    tail = f"; LSH recall@{args.k} vs exact Euclidean: {extra['recall_vs_exact']:.2f}" if extra else ""
    print(f"{len(table)} movies similar to {title} by {args.metric} among movies with >= "
          f"{min_count} ratings (model {model.version}){tail}")  # fmt: skip
    return 0


def api_keys_option(help: str = "key file [default: $STREAMREC_HOME/api_keys.json]"):
    return click.option("--api-keys", type=PATH, default=None, envvar="STREAMREC_API_KEYS", help=help)


@click.command("serve", help="HTTP API and live dashboard (FastAPI + uvicorn): recommendations, similar "
               "movies, live stats, models, rating ingestion; dashboard at /, API docs at /docs")  # fmt: skip
@click.option("--host", default="127.0.0.1", help="address to bind")
@click.option("--port", type=PORT, default=8000, help="port to bind")
@sink_option()
@kafka_options
@click.option("--topic", default=TOPIC, help="topic POST /events publishes to")
@data_option("MovieLens folder for titles and genres while no model is published")
@click.option("--access-log", is_flag=True, help="log every request")
@click.option("--max-body-bytes", type=click.IntRange(1024), default=DEFAULT_MAX_BODY,
              help="larger request bodies get 413 before they are read")  # fmt: skip
@click.option("--kafka-timeout", type=click.FloatRange(0.1, 60), default=DEFAULT_TIMEOUT_S,
              help="seconds POST /events waits on Kafka (topic creation included) before a 503")  # fmt: skip
@click.option("--rate-limit", type=Converted(parse_rate, "rate"), default=None,
              help="requests per API key (else per client address), e.g. 20/s or 600/min; 429 with "
              "Retry-After beyond it [default: off]")  # fmt: skip
@api_keys_option("key file; given: auth on even when empty [default: $STREAMREC_HOME/api_keys.json, "
                 "auth on when it has keys]")  # fmt: skip
@click.option("--no-auth", is_flag=True, help="serve without keys even on a non-loopback address")
@click.option("--tail/--no-tail", default=True,
              help="read-your-writes: tail the topic and fold a user's events the stream has not "
              "applied yet into their list")  # fmt: skip
@click.option("--tail-wait", type=click.FloatRange(0, 5), default=DEFAULT_TAIL_WAIT_S,
              help="seconds a GET /recommendations may wait for the tail to reach the topic's end "
              "(events posted through another server); 0: no wait")  # fmt: skip
@click.option("--read-token-wait", type=click.FloatRange(0, 5), default=DEFAULT_READ_TOKEN_WAIT_S,
              help="seconds a GET /recommendations with a read token (?after=, from POST /events) may "
              "wait for the tail to read past it; beyond it the list is answered with a note")  # fmt: skip
@click.option("--pending-max-events", type=click.IntRange(1), default=DEFAULT_MAX_EVENTS,
              help="pending ratings held in all; beyond it the users with the oldest events are "
              "evicted (served from the sink until the stream applies their events)")  # fmt: skip
@click.option("--pending-max-per-user", type=click.IntRange(1), default=DEFAULT_MAX_PER_USER,
              help="pending movies held per user; beyond it that user is evicted")  # fmt: skip
def serve_command(**kwargs) -> int:
    return run_with_args(serve_cmd)(**kwargs)


def auth_store(args: argparse.Namespace):
    """The key store `serve` enforces, or None (auth off): on when --api-keys is given or the
    default file has keys; a non-loopback bind without it refuses to start unless --no-auth."""
    from .apikeys import KeyStore

    if args.no_auth:
        if args.api_keys is not None:
            raise StreamrecError("--no-auth and --api-keys contradict each other: give one")
        return None
    store = KeyStore(args.api_keys)
    if args.api_keys is not None or store.keys():
        return store
    if not _loopback(args.host):
        raise StreamrecError(
            f"refusing to serve on {args.host} without authentication: create a key with "
            "`streamrec apikey create NAME --scopes read,write`, or pass --no-auth to serve it open"
        )
    return None


def _loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def serve_config(args: argparse.Namespace):
    """The server's view of the state directory: the same paths the stream and train use."""
    from streamrec.kafka_local import LocalKafka
    from streamrec.settings import home

    from .service import ServeConfig

    bootstrap = args.bootstrap_servers or LocalKafka(args.kafka_port).address  # never starts a broker
    return ServeConfig.at_home(home(), args.sink, data=args.data, bootstrap=bootstrap, topic=args.topic,
                               kafka_timeout=args.kafka_timeout, max_body_bytes=args.max_body_bytes,
                               rate_limit=args.rate_limit, tail=args.tail, tail_wait=args.tail_wait,
                               read_token_wait=args.read_token_wait,
                               pending_max_events=args.pending_max_events,
                               pending_max_per_user=args.pending_max_per_user,
                               api_keys=store.path if (store := auth_store(args)) else None)  # fmt: skip


def serve_cmd(args: argparse.Namespace) -> int:
    import uvicorn

    from .api import create_app

    cfg = serve_config(args)
    app = create_app(cfg)
    auth = f"API keys from {cfg.api_keys}" if cfg.api_keys else "no auth"
    tail = f"tailing {cfg.topic!r} for read-your-writes" if cfg.tail else "no tail (--no-tail)"
    print(f"serving http://{args.host}:{args.port}/ (API docs at /docs; model store {cfg.model_root}, "
          f"sink {cfg.sink_url}, Kafka {cfg.bootstrap}, {tail}; {auth}); Ctrl-C to stop",
          flush=True)  # fmt: skip
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=args.access_log)
    print("server stopped")
    return 0


# -- API keys ---------------------------------------------------------------------------------


@click.group("apikey", help="API keys for `serve`: create (the secret is printed once), list, revoke")
def apikey() -> None:
    pass


@apikey.command("create", help="a new key; prints its secret once, alone on the last line of stdout")
@click.argument("name")
@click.option("--scopes", type=Converted(parse_scopes, "scopes"),
              default="read", help="comma-separated: read (per-user data, lists, dead letters), write "
              "(POST /events), admin (model operations)")  # fmt: skip
@api_keys_option()
def apikey_create(name: str, scopes: tuple[str, ...], api_keys: Path | None) -> int:
    from .apikeys import KeyStore

    store = KeyStore(api_keys)
    secret = store.create(name, scopes)
    print(f"created API key {name!r} with scopes {','.join(scopes)} in {store.path} (only its hash is "
          "stored); the secret, shown this once:")  # fmt: skip
    print(secret)
    return 0


@apikey.command("list", help="the keys: name, scopes, creation time (never a secret)")
@api_keys_option()
@click.option("--json", "as_json", is_flag=True, envvar="STREAMREC_APIKEY_LIST_JSON", help="print JSON")
def apikey_list(api_keys: Path | None, as_json: bool) -> int:
    import datetime as dt

    from .apikeys import KeyStore

    store = KeyStore(api_keys)
    keys = store.keys()
    rows = [{"name": k.name, "scopes": ",".join(k.scopes),
             "created": dt.datetime.fromtimestamp(k.created_at, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")}
            for k in keys]  # fmt: skip
    if as_json:
        print(json.dumps(rows))
        return 0
    if rows:
        print(markdown(pd.DataFrame(rows)))
    print(f"{len(rows)} API key(s) in {store.path}")
    return 0


@apikey.command("revoke", help="delete a key; a running server refuses it within a second")
@click.argument("name")
@api_keys_option()
def apikey_revoke(name: str, api_keys: Path | None) -> int:
    from .apikeys import KeyStore

    store = KeyStore(api_keys)
    store.revoke(name)
    print(f"revoked API key {name!r} in {store.path}")
    return 0

"""Serving subcommands: recommend, similar, serve (the HTTP API and dashboard)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from streamrec.errors import StreamrecError
from streamrec.events import MAX_ID
from streamrec.model_store import json_default
from streamrec.settings import option
from streamrec.tables import markdown


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("recommend", help="top-k movies for a user (new users: --rated; many: --ratings-file)")
    p.add_argument("--user", type=int, default=None, help="user id (omit with --rated for a new user)")
    p.add_argument("-k", type=int, default=10, help="how many movies")
    p.add_argument("--rated", default=None, help="fold in these ratings now, e.g. 1:5,260:4.5")
    p.add_argument("--ratings-file", type=Path, default=None,
                   help="CSV user_id,movie_id,rating[,timestamp]: every user folded in from exactly "
                        "these rows; JSON lines out")  # fmt: skip
    p.add_argument("--genres", default=None, help="only these genres, comma-separated")
    option(p, "--sink", default=None, help="sink DB URL, for vectors refreshed by the stream")
    option(p, "--json", action="store_true", help="print JSON")
    p.set_defaults(func=recommend_cmd)

    p = sub.add_parser("similar", help="movies similar to a movie (cosine, euclidean, lsh)")
    p.add_argument("--movie", type=int, required=True, help="movie id")
    p.add_argument("-k", type=int, default=10, help="how many movies")
    p.add_argument(
        "--metric",
        choices=["cosine", "euclidean", "lsh"],
        default="cosine",
        help="exact cosine or Euclidean over all factors, or approximate LSH",
    )
    option(
        p,
        "--min-count",
        type=int,
        default=None,
        help="only movies with at least N training ratings (default: the model's --min-support)",
    )
    option(p, "--lsh-bucket-length", type=float, default=2.0, help="LSH bucket length")
    option(p, "--lsh-tables", type=int, default=5, help="LSH hash tables")
    option(p, "--json", action="store_true", help="print JSON")
    p.set_defaults(func=similar_cmd)

    register_serve(sub)


def _load_context():
    """CURRENT model, every rating known now (its data window + the whole event log), movies."""
    from dataclasses import replace

    from streamrec.event_log import committed_files, event_log_dir
    from streamrec.history import HistorySpec, latest_per_pair, load_history
    from streamrec.model_store import ModelStore
    from streamrec.movielens import load_movies

    model = ModelStore().load()
    spec = HistorySpec.from_dict(model.meta["history"])
    log = event_log_dir()
    spec = replace(spec, event_log=str(log) if committed_files(log) else None)
    history = latest_per_pair(load_history(spec))
    return model, history, load_movies(Path(spec.data))


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
    if args.user is not None and not 0 < args.user <= MAX_ID:
        raise StreamrecError(f"--user must be a user id in 1..{MAX_ID}, got {args.user}")
    rated = parse_rated(args.rated) if args.rated else None
    genres = [g.strip() for g in args.genres.split(",")] if args.genres else None
    if args.user is not None and rated is None:
        recs = _known_user(args, genres)
    else:  # a new user, or a known one plus extra ratings: folded in now
        model, history, movies = _load_context()
        mine = history[history["user_id"] == args.user] if args.user is not None else None
        recs = recommend(model, args.user, mine, movies, args.k, rated, genres)
    if args.json:
        print(json.dumps(recs.to_dict(), default=json_default))
        return 0
    who = f"user {args.user}" if args.user is not None else "a new user"
    for note in recs.notes:
        print(f"note: {note}")
    print(markdown(recs.items))
    print(f"{len(recs.items)} recommendations for {who} from {recs.source} (model {recs.model_version})")
    return 0


def _recommend_file(args: argparse.Namespace, ratings: pd.DataFrame, recommend_many) -> int:
    import sys
    import time

    from streamrec.model_store import ModelStore

    t0 = time.monotonic()
    model = ModelStore().load()
    lists = recommend_many(model, ratings, args.k)
    for rec in lists:
        print(json.dumps(rec))
    cold = sum(r["source"] == "popularity" for r in lists)
    print(f"{len(lists):,} users ({cold} with no known movie: popularity) from {len(ratings):,} ratings, "
          f"top-{args.k} each, model {model.version}, in {time.monotonic() - t0:.1f}s",
          file=sys.stderr)  # fmt: skip
    return 0


def _known_user(args: argparse.Namespace, genres: list[str] | None):
    """A known user's list exactly as `GET /recommendations/{id}` serves it: the stream's list
    when it is fresh for CURRENT, else the user's known ratings folded in. (Before, the stream's
    vector was paired with a rated set read from the event log, which progresses on its own: a
    movie just rated could come back as a recommendation.)"""
    from streamrec.settings import home

    from .recommend import Recommendations
    from .service import ServeConfig, Service

    svc = Service(ServeConfig.at_home(home(), args.sink))
    res = svc.recommend_user(args.user, args.k, svc.genre_filter(genres))
    items = pd.DataFrame(res["items"], columns=["movie_id", "title", "score", "predicted_rating", "genres"])
    items.insert(0, "rank", np.arange(1, len(items) + 1))
    items["genres"] = items["genres"].map("|".join)
    return Recommendations(res["user_id"], res["source"], res["model_version"], items, res["notes"])


def similar_cmd(args: argparse.Namespace) -> int:
    from streamrec.model_store import ModelStore
    from streamrec.movielens import load_movies

    from .recommend import recall, similar_candidates, similar_exact, similar_lsh

    if args.k < 1:
        raise StreamrecError(f"-k must be >= 1, got {args.k}")
    if args.min_count is not None and args.min_count < 1:
        raise StreamrecError(f"--min-count must be >= 1, got {args.min_count}")
    model = ModelStore().load()
    movies = load_movies(Path(model.meta["history"]["data"])).set_index("movie_id")
    candidates = similar_candidates(model, args.min_count)
    if args.metric == "lsh":
        from streamrec.spark import get_spark

        ids, score = similar_lsh(get_spark("streamrec-similar"), model, args.movie, args.k,
                                 args.lsh_bucket_length, args.lsh_tables, candidates=candidates)  # fmt: skip
        exact, _ = similar_exact(model, args.movie, args.k, "euclidean", candidates)
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
          f"{min_count} training ratings (model {model.version}){tail}")  # fmt: skip
    return 0


def register_serve(sub: argparse._SubParsersAction) -> None:
    from streamrec.events import TOPIC
    from streamrec.settings import BUNDLED_DATA, add_kafka_options

    p = sub.add_parser(
        "serve",
        help="HTTP API and live dashboard (FastAPI + uvicorn)",
        description="Serve recommendations, similar movies, live stats, models and rating ingestion "
        "over HTTP; the dashboard is at /, the API docs at /docs.",
    )
    option(p, "--host", default="127.0.0.1", help="address to bind")
    option(p, "--port", type=int, default=8000, help="port to bind")
    option(p, "--sink", default=None, help="sink DB URL (default sqlite:///$STREAMREC_HOME/streamrec.db)")
    add_kafka_options(p)
    option(p, "--topic", default=TOPIC, help="topic POST /events publishes to")
    option(p, "--data", type=Path, default=BUNDLED_DATA,
           help="MovieLens folder for titles and genres while no model is published")  # fmt: skip
    option(p, "--access-log", action="store_true", help="log every request")
    p.set_defaults(func=serve_cmd)


def serve_config(args: argparse.Namespace):
    """The server's view of the state directory: the same paths the stream and train use."""
    from streamrec.kafka_local import LocalKafka
    from streamrec.settings import home

    from .service import ServeConfig

    bootstrap = args.bootstrap_servers or LocalKafka(args.kafka_port).address  # never starts a broker
    return ServeConfig.at_home(home(), args.sink, data=args.data, bootstrap=bootstrap, topic=args.topic)


def serve_cmd(args: argparse.Namespace) -> int:
    import uvicorn

    from .api import create_app

    if not 0 < args.port < 65536:
        raise StreamrecError(f"--port must be in 1..65535, got {args.port}")
    cfg = serve_config(args)
    app = create_app(cfg)
    print(f"serving http://{args.host}:{args.port}/ (API docs at /docs; model store {cfg.model_root}, "
          f"sink {cfg.sink_url}, Kafka {cfg.bootstrap}); Ctrl-C to stop", flush=True)  # fmt: skip
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=args.access_log)
    print("server stopped")
    return 0

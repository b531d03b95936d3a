"""CLI for the read-side commands: recommend, similar, report."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from streamrec.errors import StreamrecError
from streamrec.model_store import json_default
from streamrec.settings import BUNDLED_DATA, option


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

    p = sub.add_parser("report", help="OLAP report with Spark SQL (Markdown; CSV + PNG with --out)")
    option(p, "--data", type=Path, default=BUNDLED_DATA, help="MovieLens folder (any layout)")
    option(p, "--out", type=Path, default=None, help="also write CSV per query and PNG charts here")
    option(p, "--min-count", type=int, default=50, help="minimum ratings for 'best movies'")
    option(p, "--top", type=int, default=10, help="rows in top-N tables")
    p.set_defaults(func=report_cmd)


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
    rated = parse_rated(args.rated) if args.rated else None
    model, history, movies = _load_context()
    streamed = None
    if args.user is not None and rated is None:
        streamed = _streamed_vector(args.sink, args.user, model.version)
    genres = [g.strip() for g in args.genres.split(",")] if args.genres else None
    recs = recommend(model, args.user, history, movies, args.k, rated, genres, streamed)
    if args.json:
        print(json.dumps(recs.to_dict(), default=json_default))
        return 0
    who = f"user {args.user}" if args.user is not None else "a new user"
    for note in recs.notes:
        print(f"note: {note}")
    print(_markdown(recs.items))
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


def _streamed_vector(sink_url: str | None, user_id: int, version: str):
    """The stream's vector for this user when it was computed against CURRENT, else None."""
    from streamrec.sink import open_sink

    with open_sink(sink_url) as sink:
        return sink.user_vector(user_id, version)


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
    print(_markdown(table))
    tail = f"; LSH recall@{args.k} vs exact Euclidean: {extra['recall_vs_exact']:.2f}" if extra else ""
    print(f"{len(table)} movies similar to {title} by {args.metric} among movies with >= "
          f"{min_count} training ratings (model {model.version}){tail}")  # fmt: skip
    return 0


def report_cmd(args: argparse.Namespace) -> int:
    from .report import run_report

    return run_report(args)


def _markdown(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    return "\n".join(lines)


def _cell(v) -> str:
    if isinstance(v, float | np.floating):
        return f"{v:.4g}" if abs(v) < 1e6 else f"{v:,.0f}"
    return str(v).replace("|", "\\|")

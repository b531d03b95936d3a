"""`streamrec report`: OLAP over ratings, movies and tags with Spark SQL.

Each query is plain SQL over three temp views; results print as Markdown tables, and with
--out every query is also written as CSV, with PNG charts for the ones a picture explains.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from streamrec.movielens import load_movies, load_ratings, load_tags
from streamrec.tables import markdown


def queries(min_count: int, top: int) -> dict[str, str]:
    """name -> Spark SQL. Views: ratings, movies (genres array), tags."""
    bayes = f"""
        WITH s AS (SELECT AVG(rating) AS mu FROM ratings),
             m AS (SELECT movie_id, COUNT(*) AS n, SUM(rating) AS total, AVG(rating) AS avg_rating
                   FROM ratings GROUP BY movie_id)
        SELECT m.movie_id, mv.title, m.n AS n_ratings, ROUND(m.avg_rating, 3) AS avg_rating,
               ROUND(({min_count} * s.mu + m.total) / ({min_count} + m.n), 3) AS bayesian_avg
        FROM m CROSS JOIN s JOIN movies mv ON mv.movie_id = m.movie_id
        WHERE m.n >= {min_count}
        ORDER BY bayesian_avg DESC, n_ratings DESC LIMIT {top}"""
    return {
        "overview": """
            SELECT (SELECT COUNT(DISTINCT user_id) FROM ratings) AS users,
                   (SELECT COUNT(*) FROM movies) AS movies,
                   (SELECT COUNT(DISTINCT movie_id) FROM ratings) AS rated_movies,
                   (SELECT COUNT(*) FROM movies m LEFT ANTI JOIN ratings r
                      ON m.movie_id = r.movie_id) AS never_rated_movies,
                   (SELECT COUNT(*) FROM ratings) AS ratings,
                   (SELECT COUNT(*) FROM tags) AS tags,
                   (SELECT ROUND(AVG(rating), 4) FROM ratings) AS mean_rating""",
        "movies_per_genre": """
            SELECT genre, COUNT(*) AS movies FROM movies LATERAL VIEW explode(genres) g AS genre
            GROUP BY genre ORDER BY movies DESC, genre""",
        "titles_per_genre": """
            SELECT genre, COUNT(*) AS movies,
                   concat_ws('; ', slice(array_sort(collect_list(title)), 1, 3)) AS first_titles
            FROM movies LATERAL VIEW explode(genres) g AS genre
            GROUP BY genre ORDER BY genre""",
        "never_rated_movies": """
            SELECT m.movie_id, m.title FROM movies m LEFT ANTI JOIN ratings r
              ON m.movie_id = r.movie_id ORDER BY m.movie_id""",
        "rating_distribution": """
            SELECT rating, COUNT(*) AS n_ratings,
                   ROUND(100 * COUNT(*) / SUM(COUNT(*)) OVER (), 2) AS percent
            FROM ratings GROUP BY rating ORDER BY rating""",
        "most_rated_movies": f"""
            SELECT r.movie_id, m.title, COUNT(*) AS n_ratings, ROUND(AVG(r.rating), 3) AS avg_rating
            FROM ratings r JOIN movies m ON m.movie_id = r.movie_id
            GROUP BY r.movie_id, m.title ORDER BY n_ratings DESC, r.movie_id LIMIT {top}""",
        "best_movies_bayesian": bayes,
        "genre_ratings": """
            SELECT genre, COUNT(*) AS n_ratings, ROUND(AVG(r.rating), 4) AS avg_rating
            FROM ratings r JOIN movies m ON m.movie_id = r.movie_id
            LATERAL VIEW explode(m.genres) g AS genre
            GROUP BY genre ORDER BY avg_rating DESC""",
        "user_activity_percentiles": """
            WITH u AS (SELECT user_id, COUNT(*) AS n FROM ratings GROUP BY user_id)
            SELECT MIN(n) AS min, percentile(n, 0.1) AS p10, percentile(n, 0.25) AS p25,
                   percentile(n, 0.5) AS p50, percentile(n, 0.75) AS p75,
                   percentile(n, 0.9) AS p90, percentile(n, 0.99) AS p99, MAX(n) AS max,
                   ROUND(AVG(n), 1) AS mean FROM u""",
        "ratings_per_year": """
            SELECT year(timestamp_seconds(timestamp)) AS year, COUNT(*) AS n_ratings,
                   COUNT(DISTINCT user_id) AS users, ROUND(AVG(rating), 3) AS avg_rating
            FROM ratings GROUP BY 1 ORDER BY 1""",
        "most_tagged_movies": f"""
            SELECT t.movie_id, m.title, COUNT(*) AS n_tags, COUNT(DISTINCT t.tag) AS distinct_tags,
                   concat_ws(', ', slice(collect_set(lower(t.tag)), 1, 5)) AS some_tags
            FROM tags t JOIN movies m ON m.movie_id = t.movie_id
            GROUP BY t.movie_id, m.title ORDER BY n_tags DESC, t.movie_id LIMIT {top}""",
    }


# Tables that are long lists: print the head only, write everything to CSV.
PRINT_LIMIT = {"never_rated_movies": 20}


def register_views(spark, data: Path) -> None:
    """ratings, movies, tags as cached temp views (Arrow transfer from the pandas loaders)."""
    ratings, _ = load_ratings(data)
    movies = load_movies(data)
    tags = load_tags(data)
    movies = movies.assign(year=movies["year"].astype("float64"))
    tags = tags.assign(timestamp=tags["timestamp"].fillna(0).astype("int64"), tag=tags["tag"].astype(str))
    views = {
        "ratings": (ratings, "user_id int, movie_id int, rating float, timestamp long"),
        "movies": (movies, "movie_id int, title string, year double, genres array<string>"),
        "tags": (tags[["user_id", "movie_id", "tag", "timestamp"]],
                 "user_id int, movie_id int, tag string, timestamp long"),
    }  # fmt: skip
    for name, (df, schema) in views.items():
        spark.createDataFrame(df, schema).cache().createOrReplaceTempView(name)


def run_queries(spark, data: Path, min_count: int = 50, top: int = 10) -> dict[str, pd.DataFrame]:
    register_views(spark, data)
    return {name: spark.sql(sql).toPandas() for name, sql in queries(min_count, top).items()}


def charts(results: dict[str, pd.DataFrame], out: Path) -> list[Path]:
    """PNG charts for distributions and trends."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []

    def save(fig, name):
        path = out / f"{name}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made.append(path)

    d = results["rating_distribution"]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.bar(d["rating"].astype(str), d["n_ratings"], color="#3b75af")
    ax.set(title="Rating distribution", xlabel="rating", ylabel="ratings")
    save(fig, "rating_distribution")

    d = results["ratings_per_year"]
    fig, ax = plt.subplots(figsize=(8, 3.5))
    ax.plot(d["year"], d["n_ratings"], marker="o", color="#3b75af")
    ax.set(title="Ratings per year", xlabel="year", ylabel="ratings")
    save(fig, "ratings_per_year")

    d = results["genre_ratings"].sort_values("avg_rating")
    fig, ax = plt.subplots(figsize=(7, 6))
    ax.barh(d["genre"], d["avg_rating"], color="#e07b39")
    ax.set(title="Average rating by genre", xlabel="average rating", xlim=(2.5, 4.2))
    save(fig, "genre_ratings")

    d = results["movies_per_genre"].sort_values("movies")
    fig, ax = plt.subplots(figsize=(7, 6))
    ax.barh(d["genre"], d["movies"], color="#5a9e6f")
    ax.set(title="Movies per genre", xlabel="movies")
    save(fig, "movies_per_genre")
    return made


def run_report(args: argparse.Namespace) -> int:
    from streamrec.spark import get_spark

    t0 = time.monotonic()
    results = run_queries(get_spark("streamrec-report"), args.data, args.min_count, args.top)
    for name, df in results.items():
        limit = PRINT_LIMIT.get(name)
        shown = df.head(limit) if limit else df
        more = f" (first {limit} of {len(df)}; all in CSV with --out)" if limit and len(df) > limit else ""
        print(f"\n## {name.replace('_', ' ')}{more}\n\n{markdown(shown)}")
    written = ""
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        for name, df in results.items():
            df.to_csv(args.out / f"{name}.csv", index=False)
        pngs = charts(results, args.out)
        written = f"; wrote {len(results)} CSV files and {len(pngs)} charts to {args.out}"
    o = {k: int(v) for k, v in results["overview"].iloc[0].items() if k != "mean_rating"}
    print(
        f"\nreport: {o['users']} users, {o['movies']} movies ({o['never_rated_movies']} never rated), "
        f"{o['ratings']:,} ratings, {len(results)} queries in {time.monotonic() - t0:.1f}s{written}"
    )
    return 0

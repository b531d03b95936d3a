"""Scale: the whole pipeline on synthetic data shaped like MovieLens 25M, at growing sizes.

Per size: MovieLens-format files (users and movies in ml-25m's proportions to ratings, power-law
popularity and activity, timestamps over years; `bench.synthetic`), then the unchanged CLI, each
step its own process: train on the oldest 80 %, replay the newest 20 %, drain it with
`stream --available-now`, retrain with the event log. Wall time and peak resident memory of each
step (GNU time: the largest of the command's processes, i.e. the Spark JVM or the Python driver).
Local mode; `python -m bench.run_all scale` (sizes in STREAMREC_BENCH_SCALE, default 1M,5M).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bench.synthetic import generate
from streamrec.kafka_local import free_port_pair
from streamrec.movielens import GENRES_100K

# ml-25m: 25,000,095 ratings, 162,541 users, 59,047 movies
USERS_PER_RATING, MOVIES_PER_RATING = 162_541 / 25_000_095, 59_047 / 25_000_095
STEPS = ("train", "replay", "stream", "retrain")


def write_dataset(n: int, root: Path) -> Path:
    users, movies = max(100, round(n * USERS_PER_RATING)), max(100, round(n * MOVIES_PER_RATING))
    df = generate(n, users, movies, seed=n % 1000)
    data = root / f"synthetic-{n}"
    data.mkdir(parents=True)
    df.rename(columns={"user_id": "userId", "movie_id": "movieId"}).to_csv(data / "ratings.csv", index=False)
    rng = np.random.default_rng(0)
    names = GENRES_100K[1:]
    genres = ["|".join(rng.choice(names, rng.integers(1, 4), replace=False)) for _ in range(movies)]
    ids = np.arange(1, movies + 1)
    titles = [f"Movie {i} (2000)" for i in ids]
    pd.DataFrame({"movieId": ids, "title": titles, "genres": genres}).to_csv(data / "movies.csv", index=False)
    return data


def _step(env: dict, log: Path, *args: str) -> dict:
    cmd = ["/usr/bin/time", "-f", "%e %M", "-o", str(log), sys.executable, "-m", "streamrec.cli", *args]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"streamrec {args[0]} failed: {done.stderr[-1500:]}")
    seconds, kb = log.read_text().split()[-2:]
    return {
        "seconds": float(seconds),
        "peak_rss_mb": round(int(kb) / 1024),
        "out": done.stdout.strip()[-300:],
    }


def run_size(n: int, tmp: Path) -> dict:
    t0 = time.monotonic()
    data = write_dataset(n, tmp)
    generated = time.monotonic() - t0
    home = tmp / f"home-{n}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMREC_")}
    env |= {
        "STREAMREC_HOME": str(home),
        "STREAMREC_DATA": str(data),
        "STREAMREC_KAFKA_PORT": str(free_port_pair()),
    }
    out = {"ratings": n, "generate_s": round(generated, 1)}
    try:
        for step, args in [("train", ["train", "--split-at", "0.8"]), ("replay", ["replay"]),
                           ("stream", ["stream", "--available-now", "--quiet"]),
                           ("retrain", ["retrain", "--once", "--force"])]:  # fmt: skip
            out[step] = _step(env, tmp / f"{step}-{n}.time", *args)
            print(f"scale {n:,}: {step} {out[step]['seconds']:.0f} s, peak {out[step]['peak_rss_mb']:,} MB",
                  flush=True)  # fmt: skip
    finally:
        subprocess.run([sys.executable, "-m", "streamrec.cli", "kafka", "stop"], env=env, capture_output=True)
    return out


def run(sizes: list[int] | None = None) -> dict:
    sizes = sizes or [int(float(s)) for s in os.environ.get("STREAMREC_BENCH_SCALE", "1e6,5e6").split(",")]
    with tempfile.TemporaryDirectory(prefix="streamrec-scale-") as tmp:
        return {"mode": "local", "runs": [run_size(n, Path(tmp)) for n in sizes]}


if __name__ == "__main__":
    print(run())

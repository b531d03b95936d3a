"""Scale: the whole pipeline on synthetic data shaped like MovieLens 25M, at growing sizes.

Per size: MovieLens-format files (users and movies in ml-25m's proportions to ratings, power-law
popularity and activity, timestamps over years; `bench.synthetic`), then the unchanged CLI, each
step its own process: train on the oldest 80 %, replay the newest 20 %, drain it with
`stream --available-now`, retrain with the event log. Wall time and peak resident memory of each
step (the command's whole process tree, sampled every 0.5 s: the Python driver, its Spark JVM and
the Python workers).
Local mode; `python -m bench.run_all scale` (sizes in STREAMREC_BENCH_SCALE, default 1M,5M).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
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


def _tree_rss_kb(root: int) -> int:
    """Resident memory of a process and all its descendants (the CLI, its Spark JVM, Python workers)."""
    parent: dict[int, int] = {}
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                parent[int(p.name)] = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    tree, frontier = {root}, {root}
    while frontier:
        frontier = {c for c, pp in parent.items() if pp in frontier and c not in tree}
        tree |= frontier
    total = 0
    for pid in tree:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            total += int(status.split("VmRSS:")[1].split()[0]) if "VmRSS:" in status else 0
        except (OSError, IndexError, ValueError):
            continue
    return total


def _step(env: dict, *args: str) -> dict:
    """Run one command; its wall time and the peak of its process tree's resident memory (sampled)."""
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "streamrec.cli", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _tree_rss_kb(proc.pid))
            stop.wait(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    stop.set()
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"streamrec {args[0]} failed: {err[-1500:]}")
    return {"seconds": round(time.monotonic() - start, 1), "peak_rss_mb": round(peak / 1024),
            "out": out.strip()[-300:]}  # fmt: skip


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
            out[step] = _step(env, *args)
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

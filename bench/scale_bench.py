"""Scale: the whole pipeline on synthetic data shaped like MovieLens 25M, at growing sizes.

Per size: MovieLens-format files (users and movies in ml-25m's proportions to ratings, power-law
popularity and activity, timestamps over years; `bench.synthetic`), then the unchanged CLI, each
step its own process: train on the oldest 80 %, replay the newest 20 %, drain it with
`stream --available-now`, retrain with the event log. Wall time and peak resident memory of each
step, in total and per role (the Python driver, its Spark JVM, the Python workers, and on the
cluster the executors), sampled every 0.5 s. Local mode at 1M, 5M and 25M ratings, then the same
on `streamrec cluster up` (2 isolated workers, 3 brokers) at 1M and 5M:
`python -m bench.run_all scale` (sizes in STREAMREC_BENCH_SCALE and STREAMREC_BENCH_SCALE_CLUSTER).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
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
STEP_TIMEOUT_S = float(os.environ.get("STREAMREC_BENCH_SCALE_STEP_TIMEOUT", 2400))  # a step longer is a miss
# The design before the history moved to the executors (pandas on the driver), run side by side
# from a worktree of that commit: STREAMREC_BENCH_SCALE_BEFORE sizes, STREAMREC_BENCH_SCALE_BEFORE_REV.
BEFORE_REV = os.environ.get("STREAMREC_BENCH_SCALE_BEFORE_REV", "d33d248")
REPO = Path(__file__).resolve().parents[1]
MODES = ("local", "before", "cluster", "direct", "direct_cluster")
# The drain's batches are capped, so the stream's driver memory shows what the history costs it,
# not one batch holding all of the replayed 20 % (5M events at 25M). Each row records its cap:
# sizes compare on the driver's memory only at the same cap (STREAMREC_BENCH_SCALE_DRAIN_BATCH;
# 200,000 is all of the 1M size's replay in one batch).
DRAIN_BATCH = int(float(os.environ.get("STREAMREC_BENCH_SCALE_DRAIN_BATCH", 500_000)))


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


ROLES = ("driver", "jvm", "workers", "executors", "broker")  # see _roles_kb


def _processes() -> dict[int, tuple[int, bytes, int]]:
    """pid -> (parent pid, command line, resident kB) of every process."""
    out = {}
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            parent = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
            status = (p / "status").read_text()
            rss = int(status.split("VmRSS:")[1].split()[0]) if "VmRSS:" in status else 0
            out[int(p.name)] = (parent, (p / "cmdline").read_bytes(), rss)
        except (OSError, IndexError, ValueError):
            continue
    return out


def _descendants(procs: dict, roots: set[int]) -> set[int]:
    tree, frontier = set(roots), set(roots)
    while frontier:
        frontier = {c for c, (pp, _, _) in procs.items() if pp in frontier and c not in tree}
        tree |= frontier
    return tree


def _roles_kb(root: int) -> dict[str, int]:
    """Resident memory by role: the command's Python process (`driver`), its Spark JVM (`jvm`: in
    local mode the driver and the executors in one), the Python workers that JVM forks
    (`workers`), and a cluster's executor JVMs with their Python workers (`executors`: children of
    the standalone workers, not of the command; the master, workers and brokers run all along and
    are not counted); `broker` is a local Kafka broker the command started (`replay` does)."""
    procs = _processes()
    mine = _descendants(procs, {root})
    executors = _descendants(procs, {p for p, (_, cmd, _) in procs.items() if b"ExecutorBackend" in cmd})
    kb = dict.fromkeys(ROLES, 0)
    for pid in (mine | executors) & procs.keys():  # a process may exit between the two reads
        _, cmd, rss = procs[pid]
        java = b"java" in cmd.split(b"\0", 1)[0]
        broker = java and b"kafka.Kafka" in cmd
        role = ("executors" if pid in executors else "driver" if pid == root
                else "broker" if broker else "jvm" if java else "workers")  # fmt: skip
        kb[role] += rss
    return kb


def _step(env: dict, *args: str) -> dict:
    """Run one command: its wall time, and the peak resident memory of everything it runs (sampled
    every 0.5 s), in total and per role."""
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "streamrec.cli", *args], env=env, text=True,
                            cwd=env.get("PYTHONPATH") or None,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    peak, peaks = 0, dict.fromkeys(ROLES, 0)
    timeline: list[str] = []  # every 5 s: seconds in, MB by role (kept with STREAMREC_BENCH_SCALE_LOGS)
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        i = 0
        while not stop.is_set():
            kb = _roles_kb(proc.pid)
            peak = max(peak, sum(kb.values()))
            for role, v in kb.items():
                peaks[role] = max(peaks[role], v)
            if i % 10 == 0:
                mb = " ".join(f"{r} {v // 1024}" for r, v in kb.items() if v)
                timeline.append(f"{time.monotonic() - start:7.1f} rss MB: {mb}\n")
            i += 1
            stop.wait(0.5)

    out_lines: list[str] = []
    err_lines: list[str] = []  # stderr, each line stamped with the seconds since the start

    def read(pipe, lines: list[str], stamp: bool) -> None:
        for line in pipe:
            lines.append(f"{time.monotonic() - start:7.1f} {line}" if stamp else line)

    threads = [threading.Thread(target=sample, daemon=True),
               threading.Thread(target=read, args=(proc.stdout, out_lines, False), daemon=True),
               threading.Thread(target=read, args=(proc.stderr, err_lines, True), daemon=True)]  # fmt: skip
    for t in threads:
        t.start()
    try:
        proc.wait(timeout=STEP_TIMEOUT_S)
        timed_out = ""
    except subprocess.TimeoutExpired:
        for pid in _descendants(_processes(), {proc.pid}):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        proc.wait()
        timed_out = f"\ntimed out after {STEP_TIMEOUT_S:,.0f} s"
    stop.set()
    for t in threads:
        t.join(30)
    out, err = "".join(out_lines), "".join(err_lines) + timed_out
    if keep := os.environ.get("STREAMREC_BENCH_SCALE_LOGS"):  # each step's whole output, to read later
        Path(keep).mkdir(parents=True, exist_ok=True)
        merged = "".join(sorted(err_lines + timeline, key=lambda ln: float(ln.split(None, 1)[0])))
        (Path(keep) / f"{time.strftime('%H%M%S')}-{args[0]}.log").write_text(out + "\n" + merged + timed_out)
    res = {"seconds": round(time.monotonic() - start, 1), "peak_rss_mb": round(peak / 1024),
           "peak_mb": {r: round(v / 1024) for r, v in peaks.items()}, "out": out.strip()[-300:]}  # fmt: skip
    if proc.returncode != 0:  # recorded, not raised: a size this machine cannot take is a result too
        res["error"] = err.strip()[-600:]
    return res


def write_event_log(data: Path, storage: Path, batch: int = DRAIN_BATCH) -> dict:
    """The newest 20 % of `data` appended to the event log under `storage` by the stream's own writer
    (streamrec.event_log.write_batch), `batch` events per append with Kafka-like coordinates:
    the table a drain of the replay leaves, without the stream. Returns its size and time."""
    from streamrec.event_log import event_log_dir, write_batch
    from streamrec.history import window
    from streamrec.movielens import load_ratings

    t = time.monotonic()
    ratings, _ = load_ratings(data)
    live = window(ratings, split_at=0.8)
    del ratings
    events = live.assign(topic="ratings", partition=0, offset=np.arange(len(live), dtype=np.int64),
                         kafka_ts=time.time() + np.arange(len(live)) / 1e4)  # fmt: skip
    root = event_log_dir(storage)
    starts = range(0, len(events), batch)
    for i, start in enumerate(starts):
        write_batch(root, i, events.iloc[start : start + batch])
    return {"seconds": round(time.monotonic() - t, 1), "events": len(events), "appends": len(starts)}


def run_direct(n: int, tmp: Path, cluster: bool = False) -> dict:
    """`retrain --once --force --split-at 0.8` at `n` ratings on an event log written directly
    (write_event_log), with no model before it (so the gate's comparison with CURRENT is skipped:
    the scoring of at most EVAL_USERS_MAX users' holdout). `cluster`: against `streamrec cluster
    up` (started and purged here), where the driver JVM and the executors are apart, with
    STREAMREC_BENCH_SCALE_CLUSTER_EXECUTOR_MEMORY per executor (default 4g: ALS's blocks of 25M
    ratings do not fit the cluster's 1g default)."""
    data = tmp / f"synthetic-{n}"
    if not data.exists():
        write_dataset(n, tmp)
    home = tmp / f"home-direct{'-cluster' if cluster else ''}-{n}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMREC_")}
    env |= {"STREAMREC_HOME": str(home), "STREAMREC_DATA": str(data)}
    out: dict = {"ratings": n, "date": time.strftime("%Y-%m-%d %H:%M")}
    label = "direct cluster" if cluster else "direct"
    if cluster:
        memory = os.environ.get("STREAMREC_BENCH_SCALE_CLUSTER_EXECUTOR_MEMORY", "4g")
        for line in _cli(env, "cluster", "up", "--worker-memory", memory).splitlines():  # export NAME=value
            name, _, value = line.removeprefix("export ").partition("=")
            env[name] = shlex.split(value)[0]
        env |= {"STREAMREC_SPARK_EXECUTOR_MEMORY": memory}
        out["executor_memory"] = memory
    # Where the retrain looks for it: the Spark storage (the home in local mode; the cluster's
    # shared directory, which every worker reaches, on the cluster).
    out["log"] = write_event_log(data, Path(env.get("STREAMREC_SPARK_STORAGE", home)))
    print(f"scale {label} {n:,}: event log of {out['log']['events']:,} events in {out['log']['appends']} "
          f"appends ({out['log']['seconds']:.0f} s)", flush=True)  # fmt: skip
    try:
        out["retrain"] = _step(env, "retrain", "--once", "--force", "--split-at", "0.8")
        _said(n, "retrain", out["retrain"], label)
        # Again in the same home, as a `retrain --every` loop's later runs (the Parquet image of the
        # CSV exists, CURRENT too): once per STREAMREC_BENCH_SCALE_DIRECT_AGAIN heap (e.g. "6g,3g":
        # the JVM's RSS fills the heap it is given; a smaller one says what it needs).
        out["again"] = []
        for heap in [
            h.strip()
            for h in os.environ.get("STREAMREC_BENCH_SCALE_DIRECT_AGAIN", "").split(",")
            if h.strip()
        ]:
            step = _step(
                env | {"STREAMREC_SPARK_DRIVER_MEMORY": heap},
                "retrain",
                "--once",
                "--force",
                "--split-at",
                "0.8",
            )
            out["again"].append({"driver_memory": heap, **step})
            _said(n, f"retrain again (heap {heap})", step, label)
    finally:
        if cluster:
            subprocess.run([sys.executable, "-m", "streamrec.cli", "cluster", "down", "--purge"], env=env,
                           capture_output=True)  # fmt: skip
        shutil.rmtree(home, ignore_errors=True)
    return out


def _said(n: int, what: str, r: dict, label: str = "direct") -> None:
    roles = ", ".join(f"{k} {mb:,}" for k, mb in r["peak_mb"].items() if mb)
    print(f"scale {label} {n:,}: {what} {r['seconds']:.0f} s, peak {r['peak_rss_mb']:,} MB ({roles})"
          + (f"; failed: {r['error'][-300:]}" if "error" in r else ""), flush=True)  # fmt: skip


def _cli(env: dict, *args: str) -> str:
    res = subprocess.run([sys.executable, "-m", "streamrec.cli", *args], env=env, text=True,
                         capture_output=True)  # fmt: skip
    if res.returncode != 0:
        raise RuntimeError(f"streamrec {' '.join(args)} failed: {res.stderr[-1500:]}")
    return res.stdout


@contextlib.contextmanager
def before_checkout(tmp: Path, rev: str = BEFORE_REV):
    """A worktree of `rev` (the jars shared), removed at the end: the design before, run as is."""
    path = tmp / f"before-{rev}"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(path), rev], check=True,
                   capture_output=True)  # fmt: skip
    (path / ".cache").symlink_to(REPO / ".cache")
    try:
        yield path
    finally:
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "remove", "--force", str(path)], capture_output=True
        )


def run_size(n: int, tmp: Path, mode: str = "local", code: Path | None = None) -> dict:
    """All four steps at `n` ratings, in local mode or against `streamrec cluster up` (its own
    home: a Spark master with 2 isolated workers, 3 brokers; stopped and purged at the end).
    `code`: run the CLI from that checkout (mode "before": local mode, the earlier design)."""
    t0 = time.monotonic()
    data = tmp / f"synthetic-{n}"
    if not data.exists():  # one dataset per size, shared by both modes
        write_dataset(n, tmp)
    generated = time.monotonic() - t0
    label = "before" if code is not None else mode
    home = tmp / f"home-{label}-{n}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMREC_")}
    env |= {"STREAMREC_HOME": str(home), "STREAMREC_DATA": str(data)}
    if code is not None:
        env["PYTHONPATH"] = str(code)
    if mode == "cluster":
        for line in _cli(env, "cluster", "up").splitlines():  # export NAME=value
            name, _, value = line.removeprefix("export ").partition("=")
            env[name] = shlex.split(value)[0]
        env |= {k: v for k, v in os.environ.items() if k.startswith("STREAMREC_SPARK_EXECUTOR")}
    else:
        env["STREAMREC_KAFKA_PORT"] = str(free_port_pair())
    out = {"ratings": n, "generate_s": round(generated, 1), "date": time.strftime("%Y-%m-%d %H:%M"),
           "drain_batch": DRAIN_BATCH}  # fmt: skip
    if code is not None:
        out["rev"] = BEFORE_REV
    try:
        for step, args in [("train", ["train", "--split-at", "0.8"]), ("replay", ["replay"]),
                           ("stream", ["stream", "--available-now", "--quiet",
                                       "--max-offsets-per-trigger", str(DRAIN_BATCH)]),
                           ("retrain", ["retrain", "--once", "--force"])]:  # fmt: skip
            out[step] = _step(env, *args)
            if "error" in out[step]:
                print(f"scale {label} {n:,}: {step} failed after {out[step]['seconds']:.0f} s: "
                      f"{out[step]['error'][-300:]}", flush=True)  # fmt: skip
                break
            roles = ", ".join(f"{r} {mb:,}" for r, mb in out[step]["peak_mb"].items() if mb)
            print(f"scale {label} {n:,}: {step} {out[step]['seconds']:.0f} s, "
                  f"peak {out[step]['peak_rss_mb']:,} MB ({roles})", flush=True)  # fmt: skip
    finally:
        stop = ["cluster", "down", "--purge"] if mode == "cluster" else ["kafka", "stop"]
        subprocess.run([sys.executable, "-m", "streamrec.cli", *stop], env=env, capture_output=True)
        shutil.rmtree(home, ignore_errors=True)
    return out


def _sizes(name: str, default: str) -> list[int]:
    return [int(float(s)) for s in os.environ.get(name, default).split(",") if s.strip()]


def run(
    local: list[int] | None = None, cluster: list[int] | None = None, before: list[int] | None = None
) -> dict:
    """Local mode at STREAMREC_BENCH_SCALE sizes (default 1M, 5M, 25M), the design before
    (BEFORE_REV, local mode) at STREAMREC_BENCH_SCALE_BEFORE sizes (default 1M, 5M), then the
    2-worker cluster at STREAMREC_BENCH_SCALE_CLUSTER sizes (default 1M, 5M)."""
    local = local if local is not None else _sizes("STREAMREC_BENCH_SCALE", "1e6,5e6,25e6")
    before = before if before is not None else _sizes("STREAMREC_BENCH_SCALE_BEFORE", "1e6,5e6")
    cluster = cluster if cluster is not None else _sizes("STREAMREC_BENCH_SCALE_CLUSTER", "1e6,5e6")
    out: dict = {}
    with tempfile.TemporaryDirectory(prefix="streamrec-scale-") as tmp, contextlib.ExitStack() as stack:
        for mode, sizes in (("local", local), ("before", before), ("cluster", cluster)):
            if not sizes:
                continue
            code = stack.enter_context(before_checkout(Path(tmp))) if mode == "before" else None
            out[mode] = []
            for n in sorted(sizes):
                try:
                    out[mode].append(run_size(n, Path(tmp), "local" if mode == "before" else mode, code))
                except RuntimeError as exc:  # `cluster up` failed: said, and the next size tried
                    out[mode].append({"ratings": n, "error": str(exc)[-600:]})
                    print(f"scale {mode} {n:,}: {exc}", flush=True)
        # Sizes whose event log is written straight into the table, then `retrain`: its figure
        # without the drain, which at 25M does not finish within STEP_TIMEOUT_S.
        if direct := _sizes("STREAMREC_BENCH_SCALE_DIRECT_LOG", ""):
            out["direct"] = [run_direct(n, Path(tmp)) for n in sorted(direct)]
        # The same on the cluster: the driver JVM apart from the executors that hold the blocks.
        if direct := _sizes("STREAMREC_BENCH_SCALE_DIRECT_CLUSTER", ""):
            out["direct_cluster"] = [run_direct(n, Path(tmp), cluster=True) for n in sorted(direct)]
    return out


def merge(old: dict | None, new: dict) -> dict:
    """The new runs replace the old ones of the same mode and size; the other sizes stay (so one
    size can be re-measured alone: STREAMREC_BENCH_SCALE=25e6 STREAMREC_BENCH_SCALE_CLUSTER=)."""
    if not old or "runs" in old:  # nothing yet, or the one-mode layout of an older run: replaced
        return new
    out = {m: list(old.get(m, [])) for m in MODES if m in old or m in new}
    for mode, runs in new.items():
        fresh = {r["ratings"] for r in runs}
        out[mode] = sorted(
            [r for r in out[mode] if r["ratings"] not in fresh] + runs, key=lambda r: r["ratings"]
        )
    return out


if __name__ == "__main__":
    print(run())

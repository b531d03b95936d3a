"""Run every benchmark and rewrite docs/benchmarks.md. `make bench` (about 1.5 hours on 2 cores, 45
minutes of it the scale run's 25M ratings; without them STREAMREC_BENCH_SCALE=1e6,5e6);
`python -m bench.run_all quality` (or replay, train, blas, stream, items, live, api, scale) runs one part
and keeps the others. `python -m bench.run_all soak` runs the soak (an hour by default,
STREAMREC_BENCH_SOAK_MINUTES); only when named, never in the default set."""

from __future__ import annotations

import datetime as dt
import json
import sys

from bench import (
    api_bench,
    blas_bench,
    item_foldin_bench,
    live_eval_bench,
    quality_bench,
    replay_bench,
    scale_bench,
    soak_bench,
    stream_bench,
    train_bench,
)
from bench.common import machine
from bench.report import write_markdown, write_readme_api, write_readme_quality, write_readme_results
from streamrec.settings import PROJECT_ROOT
from streamrec.spark import get_spark


def main() -> None:
    which = set(sys.argv[1:]) or {
        "quality",
        "replay",
        "train",
        "blas",
        "stream",
        "items",
        "live",
        "api",
        "scale",
    }
    out = PROJECT_ROOT / "docs" / "benchmark-results.json"
    results = json.loads(out.read_text()) if out.exists() else {}
    today = dt.date.today().isoformat()
    if not sys.argv[1:] or "date" not in results:  # a partial run dates only its own sections
        results["machine"] = machine()
        results["date"] = today
        results["dates"] = {}
    results.setdefault("dates", {}).update({part: today for part in which})

    def save(part: str, value) -> None:  # after each part: a long run that dies keeps what it measured
        results[part] = value
        out.write_text(json.dumps(results, indent=2))

    if "replay" in which:
        save("replay", replay_bench.run())
    spark = get_spark("streamrec-bench") if which & {"quality", "train", "stream", "api"} else None
    if "quality" in which:
        save("quality", quality_bench.run(spark))
    if "train" in which:
        save("train", train_bench.run(spark))
    if "stream" in which:
        save("stream", stream_bench.run(spark))
    if "items" in which:  # the item fold-in's latency cost and time to recommendable (own session)
        save("items", item_foldin_bench.run())
    if "live" in which:  # live hit rate against popularity and the prequential replay; shadow cost
        save("live", live_eval_bench.run())
    if "blas" in which:
        save("blas", blas_bench.run())
    if "api" in which:
        save("api", {**api_bench.run(spark), "date": dt.date.today().isoformat(), "machine": machine()})
    if "scale" in which:  # last (the longest); its own processes, one per step, as a user runs them
        if spark is not None:
            spark.stop()  # its memory is not the scale steps'
        save("scale", scale_bench.merge(results.get("scale"), scale_bench.run()))
    if "soak" in which:  # only when named: an hour of its own processes (bench/soak_bench.py)
        if spark is not None:
            spark.stop()
        save("soak", {**soak_bench.run(), "machine": machine()})
    write_markdown(results, PROJECT_ROOT / "docs" / "benchmarks.md")
    if "train" in results:
        write_readme_results(results, PROJECT_ROOT / "README.md")
    if "quality" in results:
        write_readme_quality(results, PROJECT_ROOT / "README.md")
    if "api" in results:
        write_readme_api(results, PROJECT_ROOT / "README.md")
    print(f"wrote {out} and docs/benchmarks.md")


if __name__ == "__main__":
    main()

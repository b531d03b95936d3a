"""Run every benchmark and rewrite docs/benchmarks.md. `make bench` (takes ~35 minutes);
`python -m bench.run_all quality` (or replay, train, blas, stream, api, scale) runs one part and keeps the
others."""

from __future__ import annotations

import datetime as dt
import json
import sys

from bench import api_bench, blas_bench, quality_bench, replay_bench, scale_bench, stream_bench, train_bench
from bench.common import machine
from bench.report import write_markdown, write_readme_api, write_readme_quality, write_readme_results
from streamrec.settings import PROJECT_ROOT
from streamrec.spark import get_spark


def main() -> None:
    which = set(sys.argv[1:]) or {"quality", "replay", "train", "blas", "stream", "api", "scale"}
    out = PROJECT_ROOT / "docs" / "benchmark-results.json"
    results = json.loads(out.read_text()) if out.exists() else {}
    today = dt.date.today().isoformat()
    if not sys.argv[1:] or "date" not in results:  # a partial run dates only its own sections
        results["machine"] = machine()
        results["date"] = today
        results["dates"] = {}
    results.setdefault("dates", {}).update({part: today for part in which})
    if "replay" in which:
        results["replay"] = replay_bench.run()
    spark = get_spark("streamrec-bench") if which & {"quality", "train", "stream", "api"} else None
    if "quality" in which:
        results["quality"] = quality_bench.run(spark)
    if "train" in which:
        results["train"] = train_bench.run(spark)
    if "stream" in which:
        results["stream"] = stream_bench.run(spark)
    if "scale" in which:  # its own processes, one per step, as a user runs them
        results["scale"] = scale_bench.run()
    if "blas" in which:
        results["blas"] = blas_bench.run()
    if "api" in which:
        results["api"] = {**api_bench.run(spark), "date": dt.date.today().isoformat(), "machine": machine()}
    out.write_text(json.dumps(results, indent=2))
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

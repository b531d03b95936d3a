"""The trigger and the idle poll side by side: for each candidate, latency at a paced 1,000
events/s, a brand-new user's first list on an idle stream (median of 5, two ways of timing it,
`stream_bench.first_lists`) and the idle stream's CPU over 30 s; one stream after the other on one
broker, one model and one Spark session after a warm-up, and the first candidate (the 1 s trigger)
again last (run-to-run noise).

Candidates: a 1 s and a 0.25 s processing-time trigger, and trigger 0 (back to back) with Spark's
`spark.sql.streaming.pollingDelay` (an idle query's pause before it asks Kafka again) at its 10 ms
default, 50, 100, 250 and 500 ms.

`.venv/bin/python -m bench.trigger_bench` (about 25 minutes on 2 cores) prints each candidate as
it finishes, stores the run under "trigger" in docs/benchmark-results.json and rewrites
docs/benchmarks.md; `... trigger_bench first-lists` times only the new users and the idle CPU."""

from __future__ import annotations

import datetime as dt
import json
import sys

from bench import stream_bench as sb
from bench.common import machine

CANDIDATES: list[tuple[str, dict]] = [
    ("1 s", {"trigger_s": 1.0, "polling_delay_s": 0.01}),
    ("0, poll 10 ms", {"trigger_s": 0.0, "polling_delay_s": 0.01}),
    ("0, poll 50 ms", {"trigger_s": 0.0, "polling_delay_s": 0.05}),
    ("0, poll 100 ms", {"trigger_s": 0.0, "polling_delay_s": 0.1}),
    ("0, poll 250 ms", {"trigger_s": 0.0, "polling_delay_s": 0.25}),
    ("0, poll 500 ms", {"trigger_s": 0.0, "polling_delay_s": 0.5}),
    ("0.25 s", {"trigger_s": 0.25, "polling_delay_s": 0.01}),
    ("1 s", {"trigger_s": 1.0, "polling_delay_s": 0.01}),
]


def run(candidates: list[tuple[str, dict]] = CANDIDATES, events: int = 10_000) -> dict:
    """Each candidate's row; a candidate whose stream fails (an overloaded machine can time out a
    Python worker) gets its error instead of figures, and the run goes on."""
    from streamrec.spark import get_spark

    rows = []
    spark = get_spark("streamrec-trigger-bench")
    with sb.lever_setup(spark, events) as (bootstrap, tmp, models, live):
        sb.latency(spark, bootstrap, tmp, models, live.iloc[:3000], 1000, **candidates[0][1])  # warm-up
        for label, kw in candidates:
            row: dict = {"candidate": label, "settings": kw}
            try:
                s = sb.latency(spark, bootstrap, tmp, models, live, 1000, **kw)
                for q in ("aggregates", "foldin"):
                    row[q] = {k: round(s[q][k]) for k in ("p50_ms", "p95_ms", "batch_ms_median")}
                row["first_list"] = sb.first_lists(spark, bootstrap, tmp, models, broker_tag=str(tmp), **kw)
            except Exception as exc:  # noqa: BLE001 - recorded, and the other candidates still run
                row["error"] = f"{type(exc).__name__}: {exc}"[:300]
            rows.append(row)
            print(row, flush=True)
    return {"date": dt.date.today().isoformat(), "machine": machine(), "events": events, "rate": 1000,
            "rows": rows}  # fmt: skip


FIRST_LISTS = [CANDIDATES[4], CANDIDATES[0], CANDIDATES[4]]  # the default, 1 s, the default again


def first_lists_only(candidates: list[tuple[str, dict]] = FIRST_LISTS) -> dict:
    """Only the new users and the idle CPU (no paced load: a shorter run, for a quieter moment):
    `python -m bench.trigger_bench first-lists` (about 8 minutes) stores it beside the full run."""
    from streamrec.spark import get_spark

    rows = []
    spark = get_spark("streamrec-trigger-bench")
    with sb.lever_setup(spark, 100) as (bootstrap, tmp, models, _):
        for label, kw in candidates:
            fl = sb.first_lists(spark, bootstrap, tmp, models, broker_tag=str(tmp), **kw)
            rows.append({"candidate": label, "settings": kw, "first_list": fl})
            print(rows[-1], flush=True)
    return {"date": dt.date.today().isoformat(), "rows": rows}


def save(result: dict) -> None:
    """Under "trigger" in the results JSON, then docs/benchmarks.md rewritten from it."""
    from bench.report import write_markdown
    from streamrec.settings import PROJECT_ROOT

    out = PROJECT_ROOT / "docs" / "benchmark-results.json"
    results = json.loads(out.read_text())
    if "events" in result:
        results["trigger"] = result | {k: v for k, v in results.get("trigger", {}).items() if k == "quiet"}
    else:  # first lists only: beside the full run
        results["trigger"]["quiet"] = result
    out.write_text(json.dumps(results, indent=2))
    write_markdown(results, PROJECT_ROOT / "docs" / "benchmarks.md")


if __name__ == "__main__":
    save(first_lists_only() if sys.argv[1:] == ["first-lists"] else run())

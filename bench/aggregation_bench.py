"""Where a batch's aggregates are grouped, side by side: latency at a paced 1,000 events/s with
the raw records collected to the driver (the local-mode default), per partition in the executors
merged on the driver (the cluster default), and a Spark groupBy (a shuffle);
then the driver path again (run-to-run noise). One broker, one model, one Spark session.
A one-off lever check: `.venv/bin/python -m bench.aggregation_bench` (about 4 minutes)."""

from __future__ import annotations

from bench import stream_bench as sb
from streamrec.spark import get_spark

QUERIES = ("aggregates", "foldin")


def run(modes: tuple[str, ...] = ("driver", "executors", "shuffle", "driver"), events: int = 12_000) -> list:
    out = []
    with sb.lever_setup(get_spark("streamrec-aggregation-bench"), events) as (bootstrap, tmp, models, live):
        for mode in modes:
            s = sb.latency(get_spark(), bootstrap, tmp, models, live, 1000, aggregation=mode)
            keys = ("p50_ms", "p95_ms", "batch_ms_median")
            out.append({"aggregation": mode, **{q: {k: round(s[q][k]) for k in keys} for q in QUERIES}})
            print(out[-1], flush=True)
    return out


if __name__ == "__main__":
    run()

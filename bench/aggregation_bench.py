"""Where a batch's aggregates are grouped, side by side: latency at a paced 1,000 events/s with
the raw records collected to the driver (the local-mode default), per partition in the executors
merged on the driver (the cluster default), and a Spark groupBy (a shuffle);
then the driver path again (run-to-run noise). One broker, one model, one Spark session.
A one-off lever check: `.venv/bin/python -m bench.aggregation_bench` (about 4 minutes)."""

from __future__ import annotations

from bench import stream_bench as sb


def run(modes: tuple[str, ...] = ("driver", "executors", "shuffle", "driver"), events: int = 12_000) -> list:
    return sb.compare("aggregation", [(m, {"aggregation": m}) for m in modes], events)


if __name__ == "__main__":
    run()

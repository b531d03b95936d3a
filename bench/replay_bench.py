"""Replay throughput: the full bundled dataset into a private local broker, median of N runs."""

from __future__ import annotations

import uuid

from bench.common import median, private_broker
from producer.replay import replay
from streamrec.history import window
from streamrec.movielens import load_ratings
from streamrec.settings import BUNDLED_DATA


def run(runs: int = 3) -> dict:
    events = window(load_ratings(BUNDLED_DATA)[0])
    rates = []
    with private_broker() as (bootstrap, _):
        for i in range(runs):
            res = replay(events, bootstrap, f"bench-{uuid.uuid4().hex[:8]}", progress=False)
            assert res.confirmed == len(events)
            rates.append(res.rate)
            print(f"replay run {i + 1}/{runs}: {res.rate:,.0f} events/s", flush=True)
    return {"events": len(events), "runs": rates, "median_events_per_s": median(rates)}


if __name__ == "__main__":
    print(run())

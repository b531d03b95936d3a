"""Replay throughput: the full bundled dataset into a private local broker, median of N runs of
each client (confluent-kafka, the default, and kafka-python, alternating), and kafka-python split
over several producer processes by user (per-user order holds)."""

from __future__ import annotations

import multiprocessing as mp
import time
import uuid

from bench.common import median, private_broker
from producer.replay import replay
from streamrec.history import window
from streamrec.movielens import load_ratings
from streamrec.settings import BUNDLED_DATA


def _replay_share(args: tuple[str, str, int, int]) -> int:
    """One producer process: the users with user_id % n == i, in event-time order."""
    bootstrap, topic, i, n = args
    events = window(load_ratings(BUNDLED_DATA)[0])
    share = events[events.user_id % n == i]
    return replay(share, bootstrap, topic, progress=False, client="kafka-python").confirmed


def parallel(bootstrap: str, n_events: int, processes: int) -> float:
    """Events/s from the first send to the last confirmation over `processes` producers."""
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    with mp.get_context("spawn").Pool(processes) as pool:
        pool.map(time.sleep, [0] * processes)  # workers up before the clock starts
        t0 = time.monotonic()
        confirmed = sum(pool.map(_replay_share, [(bootstrap, topic, i, processes) for i in range(processes)]))
        seconds = time.monotonic() - t0
        pool.close()
        pool.join()  # a clean exit, not terminate(): no leaked semaphores
    assert confirmed == n_events
    return n_events / seconds


def run(runs: int = 3) -> dict:
    """Both clients on the same broker and data, alternating run by run (same conditions)."""
    events = window(load_ratings(BUNDLED_DATA)[0])
    rates: dict[str, list[float]] = {"confluent": [], "kafka-python": []}
    with private_broker() as (bootstrap, _):
        for i in range(runs):
            for client in rates:
                res = replay(
                    events, bootstrap, f"bench-{uuid.uuid4().hex[:8]}", progress=False, client=client
                )
                assert res.confirmed == len(events), res
                rates[client].append(res.rate)
                print(f"replay run {i + 1}/{runs} ({client}): {res.rate:,.0f} events/s", flush=True)
        # Loading the data in each worker is inside the clock: a conservative figure.
        par = {n: parallel(bootstrap, len(events), n) for n in (2, 3)}
        print(f"replay over several processes (kafka-python): {par}", flush=True)
    return {"events": len(events), "clients": {c: {"runs": r, "median_events_per_s": median(r)}
                                               for c, r in rates.items()},
            "runs": rates["confluent"], "median_events_per_s": median(rates["confluent"]),
            "parallel_events_per_s": par}  # fmt: skip


if __name__ == "__main__":
    print(run())

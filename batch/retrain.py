"""Periodic retrain: train -> evaluate -> publish through the gate, every N seconds.

A failed run (gate refusal, bad data, Spark error) is logged and leaves CURRENT in place;
SIGTERM / Ctrl-C stop the loop between runs (a run in progress finishes first).
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable

from streamrec.errors import StreamrecError, first_line
from streamrec.stop_signals import stop_requested

from .train import LOG, log


def await_live_verdict(version: str, args: argparse.Namespace, stop: threading.Event) -> str:
    """Wait for the stream's shadow counts of the candidate, then promote or reject it
    (batch.promotion's rule); a candidate still undecided after --shadow-timeout is rejected."""
    import sqlalchemy as sa

    from streamrec.model_store import ModelStore
    from streamrec.sink import default_url, live_eval, open_sink

    from .promotion import decide

    store, e = ModelStore(), live_eval.c
    sums = [sa.func.coalesce(sa.func.sum(c), 0) for c in (e.events, e.hits, e.only_this, e.only_ref)]
    query = sa.select(*sums).where(e.model_version == version, e.source == "shadow")
    deadline = time.monotonic() + args.shadow_timeout
    log(f"shadow-scoring candidate {version} on live events (deciding after {args.shadow_events:,})")
    decision = None
    while not stop.is_set() and time.monotonic() < deadline:
        with open_sink(args.sink or default_url()) as sink:
            counts = sink.query(query)[0] if sink.has_table("live_eval") else (0, 0, 0, 0)
        decision = decide(*(int(x) for x in counts), min_events=args.shadow_events)
        if decision.action != "wait":
            break
        stop.wait(5)
    if decision is not None and decision.action == "promote":
        store.promote(version)
        return f"promoted {version}: {decision.reason} on {decision.events:,} live events"
    store.clear_candidate()
    why = decision.reason if decision is not None else "stopped before any live event"
    return f"rejected {version}: {why}" + (
        "" if decision is None or decision.action == "reject" else " (timed out)"
    )


def retrain_loop(args: argparse.Namespace, make_options: Callable, describe: Callable) -> int:
    from streamrec.event_log import count_events
    from streamrec.spark import get_spark

    from .publish import run_training

    def on_stop() -> None:
        log("stop requested: finishing the current run, then exiting")

    with stop_requested(on_stop) as stop:
        spark = get_spark("streamrec-retrain")
        runs = ok = 0
        last_events = -1
        while not stop.is_set():
            started = time.monotonic()
            n_events = count_events()
            if args.min_new_events and last_events >= 0 and n_events - last_events < args.min_new_events:
                log(f"skipping: {n_events - last_events} new events < --min-new-events {args.min_new_events}")
            else:
                runs += 1
                try:
                    res = run_training(spark, make_options(args))
                    ok += 1
                    last_events = n_events
                    print(describe(res), flush=True)
                    if res.get("candidate") and getattr(args, "promote_when_live_better", False):
                        print(await_live_verdict(res["version"], args, stop), flush=True)
                except StreamrecError as exc:
                    log(f"run {runs} failed, CURRENT unchanged: {exc}")
                    LOG.debug("the run's traceback", exc_info=True)
                except Exception as exc:  # a Spark failure must not end the loop
                    log(f"run {runs} failed, CURRENT unchanged: {type(exc).__name__}: {first_line(exc)}")
                    LOG.debug("the run's traceback", exc_info=True)  # --verbose shows it
            if args.once:
                break
            stop.wait(max(0.0, args.every - (time.monotonic() - started)))
    print(f"retrain stopped after {runs} run(s), {ok} published")
    return 0 if ok or not runs else 1

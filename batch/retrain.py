"""Periodic retrain: train -> evaluate -> publish through the gate, every N seconds.

A failed run (gate refusal, bad data, Spark error) is logged and leaves CURRENT in place;
SIGTERM / Ctrl-C stop the loop between runs (a run in progress finishes first).
"""

from __future__ import annotations

import argparse
import signal
import threading
import time
from collections.abc import Callable

from streamrec.errors import StreamrecError, first_line

from .train import LOG, log


def retrain_loop(args: argparse.Namespace, make_options: Callable, describe: Callable) -> int:
    from streamrec.event_log import count_events
    from streamrec.spark import get_spark

    from .publish import run_training

    stop = threading.Event()

    def request_stop(signum, frame) -> None:
        log("stop requested: finishing the current run, then exiting")
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, request_stop)
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

"""`streamrec replay`: MovieLens ratings into Kafka, paced, in event-time order."""

from __future__ import annotations

import argparse
import signal
from pathlib import Path

from streamrec.errors import DataError, StreamrecError
from streamrec.events import TOPIC
from streamrec.history import parse_time
from streamrec.settings import BUNDLED_DATA, add_kafka_options, option


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "replay",
        help="publish MovieLens ratings to Kafka in event-time order",
        description="Publish MovieLens ratings to Kafka in event-time order, paced or flat out.",
    )
    option(p, "--data", type=Path, default=BUNDLED_DATA, help="MovieLens folder (any layout)")
    option(p, "--topic", default=TOPIC, help="topic to publish to (created when missing)")
    option(p, "--partitions", type=int, default=3, help="partitions when creating the topic")
    add_kafka_options(p)
    pace = p.add_mutually_exclusive_group()
    option(pace, "--rate", type=float, default=None, help="events per second (default: max)")
    option(pace, "--speedup", type=float, default=None, help="divide event-time gaps by X")
    option(p, "--since", type=parse_time, default=None, help="first event time (date or epoch s)")
    option(p, "--until", type=parse_time, default=None, help="events before this time only")
    option(
        p, "--split-at", type=float, default=None,
        help="replay only events after this quantile of event time (the live part), e.g. 0.8",
    )  # fmt: skip
    option(p, "--limit", type=int, default=None, help="stop after N events")
    option(p, "--skip-invalid", action="store_true", help="skip and count invalid rows")
    option(p, "--progress", action=argparse.BooleanOptionalAction, default=None,
           help="progress bar (default: when stderr is a terminal)")  # fmt: skip
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from streamrec.history import window
    from streamrec.kafka_local import ensure_broker
    from streamrec.movielens import load_ratings

    from .replay import check_pacing, replay

    if args.limit is not None and args.limit < 0:
        raise StreamrecError(f"--limit must be >= 0, got {args.limit}")
    try:
        check_pacing(args.rate, args.speedup)  # before anything starts (a broker, say)
    except ValueError as exc:
        raise StreamrecError(str(exc)) from None
    try:
        ratings, report = load_ratings(args.data, skip_invalid=args.skip_invalid)
        events = window(
            ratings, since=args.since, until=args.until, split_at=args.split_at,
            part="after", limit=args.limit,
        )  # fmt: skip
    except ValueError as exc:
        raise DataError(str(exc)) from None
    if report.n_skipped:
        print(f"{args.data}: {report.summary()}")
    bootstrap = ensure_broker(args)
    signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM flushes and reports, like Ctrl-C
    try:
        res = replay(
            events, bootstrap, args.topic, partitions=args.partitions,
            rate=args.rate, speedup=args.speedup, progress=args.progress,
        )  # fmt: skip
    except ValueError as exc:
        raise StreamrecError(str(exc)) from None
    summary = (
        f"replayed {res.confirmed:,} of {len(events):,} events to {args.topic}@{bootstrap} "
        f"in {res.seconds:.1f}s ({res.rate:,.0f} events/s)"
    )
    if res.error:
        raise StreamrecError(f"delivery failed after {res.confirmed:,} confirmed events: {res.error}")
    if res.interrupted:
        print(f"interrupted: {summary}")
        return 130
    print(summary)
    return 0


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt

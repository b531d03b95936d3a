"""`streamrec replay`: MovieLens ratings into Kafka, paced, in event-time order."""

from __future__ import annotations

import argparse
import signal

import click

from streamrec.errors import StreamrecError
from streamrec.events import TOPIC
from streamrec.history import TIME
from streamrec.settings import FRACTION, POSITIVE, data_option, kafka_options, run_with_args


@click.command("replay", help="publish MovieLens ratings to Kafka in event-time order, paced or flat out")
@data_option()
@click.option("--topic", default=TOPIC, help="topic to publish to (created when missing)")
@click.option("--partitions", type=POSITIVE, default=3, help="partitions when creating the topic")
@kafka_options
@click.option("--rate", type=click.FloatRange(0, min_open=True), default=None,
              help="events per second (default: max); exclusive with --speedup")  # fmt: skip
@click.option("--speedup", type=click.FloatRange(0, min_open=True), default=None,
              help="divide event-time gaps by X")  # fmt: skip
@click.option("--since", type=TIME, default=None, help="first event time (date or epoch s)")
@click.option("--until", type=TIME, default=None, help="events before this time only")
@click.option("--split-at", type=FRACTION, default=None,
              help="replay only events after this quantile of event time (the live part)")  # fmt: skip
@click.option("--limit", type=click.IntRange(min=0), default=None, help="stop after N events")
@click.option("--loop", is_flag=True,
              help="send the selection again and again until stopped (or --limit events in all): pass p "
                   "adds p x 10^d to user ids (d: digits of the largest id), so every pass brings new "
                   "users, and each event's time is when it is sent (the soak benchmark's load)")  # fmt: skip
@click.option("--skip-invalid", is_flag=True, help="skip and count invalid rows")
@click.option(
    "--progress/--no-progress", default=None, help="progress bar (default: when stderr is a terminal)"
)
@click.option("--client", type=click.Choice(["auto", "confluent", "kafka-python"]), default="auto",
              help="confluent-kafka (librdkafka), kafka-python, or auto: the first if installed")  # fmt: skip
@click.option("--allow-overlap", is_flag=True,
              help="replay events CURRENT was trained on (the aggregates count them twice)")  # fmt: skip
def replay(**kwargs) -> int:
    return run_with_args(run)(**kwargs)


def run(args: argparse.Namespace) -> int:
    from streamrec.consistency import refuse_overlap, trained_on
    from streamrec.history import window
    from streamrec.kafka_local import ensure_broker
    from streamrec.movielens import load_ratings

    from .replay import replay

    if args.rate is not None and args.speedup is not None:  # before anything starts (a broker, say)
        raise StreamrecError("--rate and --speedup are exclusive: choose one")
    ratings, report = load_ratings(args.data, skip_invalid=args.skip_invalid)
    current = trained_on(args.data)
    since, until, split_at = args.since, args.until, args.split_at
    if current and since is None and until is None and split_at is None:
        # The safe default: what CURRENT (and so the stream's seeded aggregates) has not seen.
        split_at, since = current.spec.split_at, current.spec.until
        print(f"replaying what {current.version} was not trained on (it saw {current.cut} of the data)")
    limit = None if args.loop else args.limit  # looped: --limit counts every pass's events
    events = window(ratings, since=since, until=until, split_at=split_at, part="after", limit=limit)
    if current and not args.allow_overlap:
        refuse_overlap(events, ratings, current)
    if report.n_skipped:
        print(f"{args.data}: {report.summary()}")
    bootstrap = ensure_broker(args)
    signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM flushes and reports, like Ctrl-C
    res = replay(events, bootstrap, args.topic, partitions=args.partitions, rate=args.rate,
                 speedup=args.speedup, progress=args.progress, client=args.client, loop=args.loop,
                 limit=args.limit)  # fmt: skip
    of = f"{res.sent / len(events):.1f} passes of {len(events):,}" if args.loop else f"{len(events):,}"
    summary = (
        f"replayed {res.confirmed:,} of {of} events to {args.topic}@{bootstrap} "
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

"""The `streamrec` command: one entry point, a subcommand per job.

Components register their own subcommands; heavy imports (Spark, kafka-python) happen inside
the handlers so `streamrec --help` stays instant.
"""

from __future__ import annotations

import argparse
import sys

from .errors import StreamrecError
from .settings import add_kafka_options, home, invalid_env


def _kafka(args: argparse.Namespace) -> int:
    from .kafka_local import LocalKafka

    if args.bootstrap_servers:
        print(f"using the existing cluster at {args.bootstrap_servers}; no local broker managed")
        return 0
    broker = LocalKafka(args.kafka_port)
    if args.action == "start":
        fresh = broker.start()
        state = "started" if fresh else "already running"
        print(f"Kafka broker {state} at {broker.address} (state in {broker.root})")
    elif args.action == "stop":
        was = broker.stop()
        print("Kafka broker stopped" if was else "Kafka broker was not running")
    else:
        running = broker.is_running()
        print(f"Kafka broker {'running' if running else 'not running'} at {broker.address}")
        return 0 if running else 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamrec",
        description="Streaming, incremental movie recommender on Apache Kafka and Apache Spark. "
        f"State directory: {home()} (STREAMREC_HOME).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    k = sub.add_parser("kafka", help="start, stop or check the local Kafka broker")
    k.add_argument("action", choices=["start", "stop", "status"], help="what to do with the broker")
    add_kafka_options(k)
    k.set_defaults(func=_kafka)

    from batch import commands as batch_commands
    from producer import commands as producer_commands
    from serving import commands as serving_commands
    from streaming import commands as streaming_commands

    producer_commands.register(sub)
    streaming_commands.register(sub)
    streaming_commands.register_status(sub)
    batch_commands.register(sub)
    serving_commands.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if (problem := invalid_env(args)) is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except StreamrecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # a full disk, a permission: the system's sentence, not a traceback
        where = f": {exc.filename}" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

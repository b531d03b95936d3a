"""The `streamrec` command: one entry point, a subcommand per job (click).

The shared core does not import the components: each registers its subcommands as entry points
in the `streamrec.commands` group (pyproject.toml), loaded here when the CLI starts. Heavy imports
(Spark, kafka-python) happen inside the handlers so `streamrec --help` stays instant.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import traceback
from importlib.metadata import entry_points

import click

from . import logs
from .errors import StreamrecError
from .eventlog_cli import eventlog
from .settings import ENV_PREFIX, home, kafka_options, run_with_args

COMMAND_GROUP = "streamrec.commands"
CONTEXT = {"auto_envvar_prefix": ENV_PREFIX, "show_default": True, "help_option_names": ["-h", "--help"]}


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


kafka = click.Command(
    "kafka",
    callback=run_with_args(_kafka),
    help="start, stop or check the local Kafka broker",
    params=[click.Argument(["action"], type=click.Choice(["start", "stop", "status"]))],
)
kafka = kafka_options(kafka)


@click.group("cluster", help="a local cluster: Spark standalone master + workers, 3-broker Kafka "
             "(`eval \"$(streamrec cluster up)\"` points this shell at it)")  # fmt: skip
def cluster() -> None:
    pass


@cluster.command("up", help="start what is not running; print the export lines on stdout")
@click.option("--workers", type=click.IntRange(1, 8), default=2, help="Spark workers")
@click.option("--worker-cores", type=click.IntRange(1, 64), default=2, help="cores each worker offers")
@click.option("--worker-memory", default="3g", help="memory each worker offers")
@click.option("--brokers", type=click.IntRange(1, 5), default=3, help="Kafka brokers (KRaft voters)")
@click.option("--isolate/--no-isolate", default=None,
              help="workers in a mount namespace without $STREAMREC_HOME [default: when root]")  # fmt: skip
def cluster_up(**options) -> int:
    from .cluster import ClusterSpec, LocalCluster

    c = LocalCluster()
    state = c.up(ClusterSpec(**options))
    for name, value in c.exports(state).items():
        print(f"export {name}={shlex.quote(value)}")
    return 0


@cluster.command("down", help="stop the cluster (its state stays unless --purge)")
@click.option("--purge", is_flag=True, help="also delete the cluster's data (topics, shared storage)")
def cluster_down(purge: bool) -> int:
    from .cluster import LocalCluster

    stopped = LocalCluster().down(purge)
    print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")
    return 0


@cluster.command("status", help="what runs (exit 1 when something is down)")
def cluster_status() -> int:
    from .cluster import LocalCluster

    s = LocalCluster().status()
    print(json.dumps(s, indent=2))
    return 0 if s["master"] and s["workers_alive"] and not s["brokers_down"] and s["brokers_running"] else 1


def build_cli() -> click.Group:
    """The command group with every component's commands (entry points, in name order)."""
    group = click.Group(
        "streamrec",
        context_settings=CONTEXT,
        help="Streaming, incremental movie recommender on Apache Kafka and Apache Spark. "
        f"State directory: {home()} (STREAMREC_HOME).",
        callback=_setup,
        params=[click.Option(["-v", "--verbose"], is_flag=True, envvar="STREAMREC_VERBOSE",
                             help="debug lines, other libraries' warnings, the traceback behind an error")],
    )  # fmt: skip
    group.add_command(kafka)
    group.add_command(cluster)
    group.add_command(eventlog)
    for ep in sorted(entry_points(group=COMMAND_GROUP), key=lambda e: e.name):
        group.add_command(ep.load(), ep.name)
    commands = []
    for name, command in group.commands.items():  # a group's subcommands too: `cluster up`
        subs = command.commands.items() if isinstance(command, click.Group) else [("", command)]
        commands += [(f"{name}_{sub}".strip("_"), c) for sub, c in subs]
    for name, command in commands:
        for param in command.params:
            if isinstance(param, click.Option):
                param.envvar = envvar(name, param)  # explicit, so help and errors can name it
                param.help = f"{param.help or ''} [env {param.envvar}]".strip()
    return group


_verbose = False


def _setup(verbose: bool) -> None:
    global _verbose
    _verbose = verbose
    logs.configure(verbose)


def envvar(command: str, option: click.Option) -> str:
    """The option's environment variable: a shared name, or STREAMREC_<COMMAND>_<OPTION>."""
    if isinstance(option.envvar, str):
        return option.envvar
    return f"{ENV_PREFIX}_{command.upper()}_{option.name.upper()}"


def main(argv: list[str] | None = None) -> int:
    """Run one command; every failure a user can cause is one line on stderr and an exit code."""
    try:
        return int(build_cli().main(args=argv, prog_name="streamrec", standalone_mode=False) or 0)
    except click.UsageError as exc:  # a bad flag or environment value: click names which
        print(f"error: {exc.format_message()}{_from_environment(exc)}", file=sys.stderr)
        return 2
    except StreamrecError as exc:
        if _verbose:  # what the one line summarises (a Spark or driver traceback, say)
            traceback.print_exception(exc)
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except (KeyboardInterrupt, click.Abort):
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # a full disk, a permission: the system's sentence, not a traceback
        if _verbose:
            traceback.print_exception(exc)
        where = f": {exc.filename}" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1


def _from_environment(exc: click.UsageError) -> str:
    """Where a bad value came from when it was not a flag: ' (from STREAMREC_...)'."""
    from click.core import ParameterSource

    param, ctx = getattr(exc, "param", None), exc.ctx
    if not isinstance(param, click.Option) or ctx is None or not param.name:
        return ""
    if ctx.get_parameter_source(param.name) is not ParameterSource.ENVIRONMENT:
        return ""
    return f" (from the environment variable {param.envvar})"


if __name__ == "__main__":
    sys.exit(main())

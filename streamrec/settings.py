"""Paths and options. Every option is a CLI flag and an environment variable STREAMREC_<NAME>.

`option()` registers a flag whose default comes from the environment, so
`STREAMREC_RATE=500 streamrec replay` and `streamrec replay --rate 500` are the same thing.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

ENV_PREFIX = "STREAMREC_"

#: The checkout this package lives in (the project is installed editable by `make`).
PROJECT_ROOT = Path(__file__).resolve().parent.parent
#: The MovieLens dataset committed with the project.
BUNDLED_DATA = PROJECT_ROOT / "data" / "ml-latest-small"
#: Where fetched JVM jars are cached (git-ignored).
JAR_CACHE = Path(os.environ.get("STREAMREC_JAR_CACHE", PROJECT_ROOT / ".cache" / "jvm"))


def home() -> Path:
    """State directory: Kafka data and logs, models, checkpoints, the sink DB, the event log."""
    return Path(os.environ.get("STREAMREC_HOME", PROJECT_ROOT / "var")).resolve()


def env_name(dest: str) -> str:
    return ENV_PREFIX + dest.upper()


TRUE_WORDS = ("1", "true", "yes", "on", "y", "t")
FALSE_WORDS = ("0", "false", "no", "off", "n", "f", "")


def parse_bool(text: str) -> bool:
    """A boolean as people write it in an environment: 1/0, true/false, yes/no, on/off."""
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError(f"{text!r} is not a boolean (use true/false, yes/no, on/off or 1/0)")


class InvalidEnv:
    """An environment default that did not parse; reported only by the command that uses it."""

    def __init__(self, var: str, raw: str, reason: str):
        self.var, self.raw, self.reason = var, raw, reason

    def message(self) -> str:
        return f"environment variable {self.var}={self.raw!r} is invalid: {self.reason}"


def option(
    parser: argparse.ArgumentParser, *flags: str, env: str | None = None, **kwargs: Any
) -> argparse.Action:
    """Add a flag whose default is read from STREAMREC_<DEST> (or STREAMREC_<env>) when set.

    Booleans (store_true and --x/--no-x flags) accept true/false, yes/no, on/off, 1/0. A value
    that does not parse is reported when the command that has the option runs, not by others."""
    action = parser.add_argument(*flags, **kwargs)
    var = env_name(env or action.dest)
    raw = os.environ.get(var)
    if raw is not None and raw != "":
        boolean = isinstance(action, argparse._StoreTrueAction | argparse.BooleanOptionalAction)
        conv = parse_bool if boolean else (action.type or (lambda v: v))
        try:
            action.default = conv(raw)
        except (TypeError, ValueError, argparse.ArgumentTypeError) as exc:
            action.default = InvalidEnv(var, raw, str(exc))
    action.help = f"{action.help or ''} [env {var}]".strip()
    return action


def invalid_env(args: argparse.Namespace) -> str | None:
    """The message of the first environment default of this command that did not parse."""
    for value in vars(args).values():
        if isinstance(value, InvalidEnv):
            return value.message()
    return None


def add_kafka_options(parser: argparse.ArgumentParser) -> None:
    """Options every Kafka-facing command shares."""
    option(
        parser,
        "--bootstrap-servers",
        env="KAFKA_BOOTSTRAP",
        default=None,
        help="existing Kafka cluster (host:port,...); when unset, the local broker is used",
    )
    option(parser, "--kafka-port", type=int, default=9092, help="port of the local broker")


def parse_duration(text: str) -> float:
    """Seconds from '500ms', '90s', '10m', '1h', '7d' or a bare number of seconds."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    t = text.strip()
    unit = next((u for u in sorted(units, key=len, reverse=True) if t.endswith(u)), "")
    try:
        return float(t[: len(t) - len(unit)]) * units.get(unit, 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 500ms, 90s, 10m, 1h") from None

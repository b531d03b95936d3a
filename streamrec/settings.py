"""Paths, and the option types and shared options of the CLI (click).

Every option is a flag and an environment variable: `STREAMREC_REPLAY_RATE=500 streamrec replay`
and `streamrec replay --rate 500` are the same thing. Click parses and range-checks each option
once, reads booleans as people write them (1/0, true/false, yes/no, on/off), and only the
command that runs resolves its own options, so a bad value for one command never stops another.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

#: The checkout this package lives in (the project is installed editable by `make`).
PROJECT_ROOT = Path(__file__).resolve().parent.parent
#: The MovieLens dataset committed with the project.
BUNDLED_DATA = PROJECT_ROOT / "data" / "ml-latest-small"
#: Where fetched JVM jars are cached (git-ignored).
JAR_CACHE = Path(os.environ.get("STREAMREC_JAR_CACHE", PROJECT_ROOT / ".cache" / "jvm"))


def home() -> Path:
    """State directory: Kafka data and logs, models, checkpoints, the sink DB, the event log."""
    return Path(os.environ.get("STREAMREC_HOME", PROJECT_ROOT / "var")).resolve()


def spark_storage() -> Path:
    """Where Spark's executors write: the stream's checkpoints (state stores), the event log
    (Parquet) and RDD checkpoints. On one machine that is $STREAMREC_HOME; on a cluster it must be
    a directory every node mounts at the same path (STREAMREC_SPARK_STORAGE), because executors
    write there and the driver reads it back."""
    shared = os.environ.get("STREAMREC_SPARK_STORAGE")
    return Path(shared).resolve() if shared else home()


#: Per-command environment names: `STREAMREC_<COMMAND>_<OPTION>` (click's auto_envvar_prefix),
#: so `STREAMREC_TRAIN_RANK` and `STREAMREC_EVALUATE_RANK` cannot collide; options that mean the
#: same thing everywhere (the broker, the sink, the data folder) have one global name instead.
ENV_PREFIX = "STREAMREC"
KAFKA_BOOTSTRAP_ENV, KAFKA_PORT_ENV = "STREAMREC_KAFKA_BOOTSTRAP", "STREAMREC_KAFKA_PORT"
SINK_ENV, DATA_ENV = "STREAMREC_SINK", "STREAMREC_DATA"


class Converted(click.ParamType):
    """A click type from a plain `str -> value` function (its ValueError is the message)."""

    def __init__(self, func: Callable[[str], Any], name: str):
        self.func, self.name = func, name

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value  # a default, already converted
        try:
            return self.func(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def _listed(item: Callable[[str], Any]) -> Callable[[str], list]:
    return lambda text: [item(x.strip()) for x in text.split(",") if x.strip()]


INTS = Converted(_listed(int), "ints")
FLOATS = Converted(_listed(float), "floats")
WORDS = Converted(_listed(str), "words")
PATH = click.Path(path_type=Path)
POSITIVE = click.IntRange(min=1)
FRACTION = click.FloatRange(0, 1, min_open=True, max_open=True)  # strictly between 0 and 1
PORT = click.IntRange(1, 65535)


def kafka_options(f: Callable) -> Callable:
    """`--bootstrap-servers` and `--kafka-port`, shared by every Kafka-facing command."""
    f = click.option("--kafka-port", type=PORT, default=9092, envvar=KAFKA_PORT_ENV,
                     help="port of the local broker")(f)  # fmt: skip
    return click.option("--bootstrap-servers", default=None, envvar=KAFKA_BOOTSTRAP_ENV,
                        help="existing Kafka cluster (host:port,...); unset: local broker")(f)  # fmt: skip


def sink_option(help: str = "sink DB URL (default sqlite:///$STREAMREC_HOME/streamrec.db)") -> Callable:
    return click.option("--sink", default=None, envvar=SINK_ENV, help=help)


def data_option(help: str = "MovieLens folder (any layout)") -> Callable:
    return click.option("--data", type=PATH, default=BUNDLED_DATA, envvar=DATA_ENV, help=help)


def run_with_args(handler: Callable[[argparse.Namespace], int | None]) -> Callable[..., int]:
    """A click callback that hands its options to `handler` as one namespace (`args.rate`)."""

    def callback(**kwargs: Any) -> int:
        return int(handler(argparse.Namespace(**kwargs)) or 0)

    callback.__name__ = handler.__name__
    return callback


def parse_duration(text: str) -> float:
    """Seconds from '500ms', '90s', '10m', '1h', '7d' or a bare number of seconds."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    t = text.strip()
    unit = next((u for u in sorted(units, key=len, reverse=True) if t.endswith(u)), "")
    try:
        return float(t[: len(t) - len(unit)]) * units.get(unit, 1)
    except ValueError:
        raise ValueError(f"{text!r} is not a duration like 500ms, 90s, 10m, 1h") from None


DURATION = Converted(parse_duration, "duration")


def topic_retention_s() -> float:
    """How long Kafka keeps rating events (`STREAMREC_TOPIC_RETENTION`, default 7 days): the
    longest stream downtime that loses nothing. A stream down longer resumes from the oldest event
    still kept; the events that expired are in no checkpoint (README, "Retention")."""
    return parse_duration(os.environ.get("STREAMREC_TOPIC_RETENTION", "7d"))


# Ratings the evaluation's own fits (the explicit holdout fit, the ranking fit without the
# validation fifth, the blend, tuning) run on, at most about: above it, those of a seeded sample of
# users. The served models are refit on every rating either way (TrainOptions.refit_full); on
# 25M ratings the evaluation's fits on all of them took 581 of the retrain's 1,098 s (2026-12-02).
EVAL_SAMPLE_RATINGS = 5_000_000

"""The CLI surface (click): help for every command, per-command environment names, one-line errors
for bad flags and environment values, the README reference kept true."""

import subprocess
import sys
from pathlib import Path

import click
import pytest

from streamrec.cli import build_cli, main
from streamrec.errors import StreamrecError

ROOT = Path(__file__).resolve().parent.parent

COMMANDS = {"kafka", "replay", "stream", "status", "train", "retrain", "model", "recommend", "similar",
            "report", "evaluate", "serve", "cluster", "apikey", "eventlog"}  # fmt: skip


def parse(*argv: str) -> dict:
    """The options a command would run with (parsed and converted, handler not called)."""
    import click

    cli = build_cli()
    command = cli.commands[argv[0]]
    parent = click.Context(cli, info_name="streamrec", auto_envvar_prefix="STREAMREC")
    ctx = command.make_context(argv[0], list(argv[1:]), parent=parent)
    return ctx.params


def test_every_command_is_registered_and_documents_its_options():
    cli = build_cli()
    assert set(cli.commands) == COMMANDS  # entry points; kafka, cluster, eventlog: the core
    commands = [(f"{name} {sub}", c) for name, g in cli.commands.items() if isinstance(g, click.Group)
                for sub, c in g.commands.items()]  # fmt: skip
    assert {n for n, _ in commands} == {"cluster up", "cluster down", "cluster status", "apikey create",
                                        "apikey list", "apikey revoke", "eventlog compact",
                                        "eventlog stats"}  # fmt: skip
    commands += [(name, c) for name, c in cli.commands.items() if not isinstance(c, click.Group)]
    for name, command in commands:
        assert command.help, name
        for param in command.params:
            if param.param_type_name == "option":
                assert param.help and param.envvar.startswith("STREAMREC_"), f"{name} {param.name}"


def test_environment_names_are_per_command_and_shared_ones_are_global(monkeypatch):
    monkeypatch.setenv("STREAMREC_REPLAY_RATE", "250")
    monkeypatch.setenv("STREAMREC_KAFKA_BOOTSTRAP", "broker:9999")
    monkeypatch.setenv("STREAMREC_TRAIN_RANK", "7")
    args = parse("replay")
    assert args["rate"] == 250.0 and args["bootstrap_servers"] == "broker:9999"
    assert parse("replay", "--rate", "5")["rate"] == 5.0  # the flag wins
    assert parse("train")["rank"] == 7 and parse("evaluate")["rank"] == 20  # no collision
    # --min-count once meant three things under one name; now each command has its own
    monkeypatch.setenv("STREAMREC_REPORT_MIN_COUNT", "3")
    assert parse("report")["min_count"] == 3 and parse("similar", "--movie", "1")["min_count"] is None


def test_an_invalid_environment_value_is_one_line_naming_the_variable(monkeypatch, capsys):
    monkeypatch.setenv("STREAMREC_REPLAY_RATE", "fast")
    assert main(["replay"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: Invalid value for '--rate'") and err.endswith(
        "(from the environment variable STREAMREC_REPLAY_RATE)"
    )
    assert len(err.splitlines()) == 1
    # ... and only the command that has the option refuses it: others run
    assert main(["kafka", "status", "--kafka-port", "1"]) == 1  # "not running", not the env error
    assert "STREAMREC_REPLAY_RATE" not in capsys.readouterr().err


@pytest.mark.parametrize(("raw", "value"), [("false", False), ("0", False), ("no", False), ("OFF", False),
                                            ("true", True), ("1", True), ("yes", True)])  # fmt: skip
def test_boolean_environment_values_are_read_as_people_write_them(monkeypatch, raw, value):
    monkeypatch.setenv("STREAMREC_TRAIN_BIAS", raw)  # a --bias/--no-bias flag
    monkeypatch.setenv("STREAMREC_TRAIN_EVENT_LOG", raw)
    monkeypatch.setenv("STREAMREC_TRAIN_JSON", raw)  # a plain flag
    args = parse("train")
    assert args["bias"] is value and args["event_log"] is value and args["json"] is value


def test_a_boolean_environment_value_that_is_not_one_is_an_error(monkeypatch, capsys):
    monkeypatch.setenv("STREAMREC_TRAIN_BIAS", "maybe")
    assert main(["train"]) == 2
    assert "'maybe' is not a valid boolean" in capsys.readouterr().err


def test_readme_cli_reference_is_current():
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "cli_reference.py"), "--check"],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_durations_parse_with_units():
    from streamrec.settings import parse_duration

    assert [parse_duration(t) for t in ("500ms", "90s", "10m", "1h", "7d", "2")] == [
        0.5, 90, 600, 3600, 604800, 2,
    ]  # fmt: skip
    with pytest.raises(Exception, match="not a duration"):
        parse_duration("soon")
    assert parse("stream", "--trigger", "500ms")["trigger"] == 0.5
    assert parse("stream", "--trigger", "0")["trigger"] == 0  # back to back


def test_a_zero_trigger_runs_batches_back_to_back(tmp_path, monkeypatch):
    import argparse

    from streaming.commands import config_from_args

    monkeypatch.setenv("STREAMREC_HOME", str(tmp_path))
    args = argparse.Namespace(**parse("stream", "--trigger", "0"))
    assert config_from_args(args, "localhost:9092").trigger_s == 0
    with pytest.raises(StreamrecError, match="--window must be positive"):
        config_from_args(argparse.Namespace(**parse("stream", "--window", "0s")), "localhost:9092")


def test_the_polling_delay_option_reaches_the_stream_config(tmp_path, monkeypatch):
    import argparse

    from streaming.commands import config_from_args

    monkeypatch.setenv("STREAMREC_HOME", str(tmp_path))
    default = config_from_args(argparse.Namespace(**parse("stream")), "localhost:9092")
    assert (default.trigger_s, default.polling_delay_s) == (0, 0.25)  # docs/benchmarks.md's choice
    args = argparse.Namespace(**parse("stream", "--trigger", "1s", "--polling-delay", "50ms"))
    assert config_from_args(args, "localhost:9092").polling_delay_s == 0.05
    monkeypatch.setenv("STREAMREC_STREAM_POLLING_DELAY", "100ms")
    assert parse("stream")["polling_delay"] == 0.1
    with pytest.raises(StreamrecError, match="--polling-delay"):
        config_from_args(argparse.Namespace(**parse("stream", "--polling-delay", "-1s")), "localhost:9092")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--min-support", "0"], "Invalid value for '--min-support': 0 is not in the range x>=1."),
        (["train", "--split-at", "1.5"], "Invalid value for '--split-at': 1.5 is not in the range 0<x<1."),
        (["evaluate", "--split-at", "1"], "Invalid value for '--split-at': 1.0 is not in the range 0<x<1."),
        (["replay", "--split-at", "0"], "Invalid value for '--split-at': 0.0 is not in the range 0<x<1."),
        (["similar", "--movie", "1", "--min-count", "0"], "'--min-count': 0 is not in the range x>=1."),
        (["serve", "--port", "70000"], "'--port': 70000 is not in the range 1<=x<=65535."),
        (["recommend", "--user", "-5"], "'--user': -5 is not in the range 1<=x<=2147483647."),
        (["recommend", "--user", "2147483648"], "is not in the range 1<=x<=2147483647."),
        (["replay", "--rate", "0"], "'--rate': 0.0 is not in the range x>0."),
        (["replay", "--speedup", "-2"], "'--speedup': -2.0 is not in the range x>0."),
        (["stream", "--trigger", "soon"], "'soon' is not a duration"),
        (["train", "--until", "yesterday"], "'yesterday' is neither a date"),
        (["model", "explode"], "'explode' is not one of 'list', 'show', 'rollback', 'promote', 'reject'."),
    ],
)
def test_out_of_range_values_are_one_line_errors_before_anything_starts(argv, message, capsys, tmp_path,
                                                                        monkeypatch):  # fmt: skip
    monkeypatch.setenv("STREAMREC_HOME", str(tmp_path))
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "kafka").exists()  # a bad flag never starts a local broker first


def test_semantic_misuse_is_a_one_line_error(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("STREAMREC_HOME", str(tmp_path))
    for argv, message in [
        (["evaluate", "--protocols", "warm,bogus"], "error: --protocols must be a subset of"),
        (["evaluate", "--n", "0,3"], "error: --n must be positive integers"),
        (["recommend", "--ratings-file", "x.csv", "--user", "1"], "error: --ratings-file cannot be combined"),
        (["replay", "--rate", "5", "--speedup", "2"], "error: --rate and --speedup are exclusive"),
    ]:
        assert main(argv) == 1, argv
        assert capsys.readouterr().err.startswith(message)


def test_verbose_shows_the_traceback_behind_a_one_line_error(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("STREAMREC_HOME", str(tmp_path))  # no model: recommend fails in one line
    assert main(["recommend", "--user", "5"]) == 1
    err = capsys.readouterr().err
    assert (
        err.strip() == f"error: no model published yet in {tmp_path / 'models'}: run `streamrec train` first"
    )
    assert main(["--verbose", "recommend", "--user", "5"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "ModelStoreError" in err
    assert err.strip().splitlines()[-1].startswith("error: no model published yet")


def test_retrain_inherits_the_data_cut_current_was_trained_on(tmp_path, monkeypatch):
    from batch.commands import training_options
    from tests.store_support import current_model

    monkeypatch.setenv("STREAMREC_HOME", str(tmp_path))
    current_model(tmp_path, split_at=0.8)

    def opts(*argv: str, inherit: bool):
        import argparse

        return training_options(argparse.Namespace(**parse("retrain", *argv)), inherit_cut=inherit)

    assert opts(inherit=True).spec.split_at == 0.8  # retrain: CURRENT's cut by default
    assert opts("--split-at", "0.5", inherit=True).spec.split_at == 0.5  # an explicit cut wins
    assert opts(inherit=False).spec.split_at is None  # train: what it is told

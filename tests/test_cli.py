"""The CLI surface: help for every command, env-var defaults, the README reference kept true."""

import subprocess
import sys
from pathlib import Path

import pytest

from streamrec.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent


MINIMAL_ARGS = {
    "kafka": ["status"], "replay": [], "stream": [], "status": [], "train": [], "retrain": [],
    "model": ["list"], "recommend": [], "similar": ["--movie", "1"], "report": [], "evaluate": [],
    "serve": [],
}  # fmt: skip


def test_every_command_parses_and_documents_its_options():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    assert set(sub.choices) == set(MINIMAL_ARGS)
    for name, extra in MINIMAL_ARGS.items():
        assert callable(parser.parse_args([name, *extra]).func), name
        for action in sub.choices[name]._actions:
            assert action.help, f"{name} {action.dest} has no help text"


def test_environment_variables_set_defaults(monkeypatch):
    monkeypatch.setenv("STREAMREC_RATE", "250")
    monkeypatch.setenv("STREAMREC_KAFKA_BOOTSTRAP", "broker:9999")
    args = build_parser().parse_args(["replay"])
    assert args.rate == 250.0 and args.bootstrap_servers == "broker:9999"
    assert build_parser().parse_args(["replay", "--rate", "5"]).rate == 5.0  # the flag wins


def test_invalid_environment_value_is_one_clear_error(monkeypatch, capsys):
    from streamrec.cli import main

    monkeypatch.setenv("STREAMREC_RATE", "fast")
    assert main(["replay", "--limit", "-1"]) == 2
    assert "STREAMREC_RATE='fast' is invalid" in capsys.readouterr().err
    # ... and only the command that has the option refuses it: others run
    assert main(["kafka", "status", "--kafka-port", "1"]) == 1  # "not running", not the env error
    assert "STREAMREC_RATE" not in capsys.readouterr().err


@pytest.mark.parametrize(("raw", "value"), [("false", False), ("0", False), ("no", False), ("OFF", False),
                                            ("true", True), ("1", True), ("yes", True)])  # fmt: skip
def test_boolean_environment_values_are_read_as_people_write_them(monkeypatch, raw, value):
    monkeypatch.setenv("STREAMREC_BIAS", raw)  # a --bias/--no-bias flag
    monkeypatch.setenv("STREAMREC_EVENT_LOG", raw)
    monkeypatch.setenv("STREAMREC_JSON", raw)  # a store_true flag
    args = build_parser().parse_args(["train"])
    assert args.bias is value and args.event_log is value and args.json is value


def test_a_boolean_environment_value_that_is_not_one_is_an_error(monkeypatch, capsys):
    from streamrec.cli import main

    monkeypatch.setenv("STREAMREC_BIAS", "maybe")
    assert main(["train"]) == 2
    assert "STREAMREC_BIAS='maybe' is invalid: 'maybe' is not a boolean" in capsys.readouterr().err


def test_readme_cli_reference_is_current():
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "cli_reference.py"), "--check"],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_durations_parse_with_units():
    from streamrec.settings import parse_duration

    assert [parse_duration(t) for t in ("500ms", "90s", "10m", "1h", "7d", "2")] == [
        0.5,
        90,
        600,
        3600,
        604800,
        2,
    ]
    with pytest.raises(Exception, match="not a duration"):
        parse_duration("soon")


def test_out_of_range_counts_are_one_line_errors():
    from batch.commands import training_options
    from streamrec.errors import StreamrecError

    parser = build_parser()
    with pytest.raises(StreamrecError, match="^--min-support must be >= 1, got 0$"):
        training_options(parser.parse_args(["train", "--min-support", "0"]))
    assert training_options(parser.parse_args(["train", "--min-support", "3"])).params.min_support == 3
    args = parser.parse_args(["similar", "--movie", "1", "--min-count", "0"])
    with pytest.raises(StreamrecError, match="^--min-count must be >= 1, got 0$"):
        args.func(args)


def test_evaluate_and_ratings_file_misuse_are_one_line_errors():
    from streamrec.errors import StreamrecError

    parser = build_parser()
    for argv, message in [
        (["evaluate", "--protocols", "warm,bogus"], "^--protocols must be a subset of"),
        (["evaluate", "--n", "0,3"], "^--n must be positive integers"),
        (["evaluate", "--split-at", "1.5"], "^--split-at must be between 0 and 1"),
        (["recommend", "--ratings-file", "x.csv", "--user", "1"], "^--ratings-file cannot be combined"),
    ]:
        args = parser.parse_args(argv)
        with pytest.raises(StreamrecError, match=message):
            args.func(args)


@pytest.mark.parametrize("user", ["-5", "0", "2147483648"])
def test_recommend_refuses_an_impossible_user_id(user, capsys, tmp_path, monkeypatch):
    from streamrec.cli import main

    monkeypatch.setenv("STREAMREC_HOME", str(tmp_path))  # no model needed: refused before loading one
    assert main(["recommend", "--user", user]) == 1
    assert "--user must be a user id in 1..2147483647" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "message"),
    [(["--rate", "0"], "--rate must be positive"), (["--speedup", "-2"], "--speedup must be positive")],
)
def test_replay_refuses_impossible_pacing_before_starting_a_broker(
    flags, message, capsys, tmp_path, monkeypatch
):
    from streamrec.cli import main
    from streamrec.kafka_local import free_port_pair

    monkeypatch.setenv("STREAMREC_HOME", str(tmp_path))
    assert main(["replay", "--kafka-port", str(free_port_pair()), *flags]) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "kafka").exists()  # before: a local broker was started, then left running

"""Logging for every component: progress and warnings on stderr, one line each, through the
`streamrec` logger; `--verbose` adds debug lines, other libraries' warnings and the tracebacks
behind one-line errors. Command output (tables, summaries, JSON) stays on stdout."""

from __future__ import annotations

import logging
import sys

ROOT = "streamrec"


def get(name: str) -> logging.Logger:
    """The logger of a component, e.g. get("batch") -> `streamrec.batch`."""
    return logging.getLogger(f"{ROOT}.{name}")


def configure(verbose: bool = False) -> None:
    """Called by the CLI. Our INFO lines always; with --verbose also DEBUG and other libraries'
    warnings (kafka-python's reconnect errors, py4j), which are silent otherwise. A host that
    configured logging itself (pytest, an application) keeps its handlers and gets our records."""
    ours = logging.getLogger(ROOT)
    ours.setLevel(logging.DEBUG if verbose else logging.INFO)
    root = logging.getLogger()
    if root.handlers and not getattr(root, "_streamrec", False):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    ours.handlers[:] = [handler]  # idempotent: one handler however often the CLI runs in a process
    ours.propagate = False
    root.handlers[:] = [logging.StreamHandler(sys.stderr) if verbose else logging.NullHandler()]
    root._streamrec = True  # type: ignore[attr-defined]  # ours: reconfigurable on the next run

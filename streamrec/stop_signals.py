"""Ctrl-C and SIGTERM as a request to stop at the next safe point, for the span of a loop.

Raised where they land, they can cut an operation short between two steps that belong together
(replay: a record enqueued but its acknowledgement's callback not attached, so a stored event
went uncounted). Inside `stop_requested` they set an event that the loop checks between steps;
the handlers before it come back when it ends."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def stop_requested(on_signal: Callable[[], object] | None = None) -> Iterator[threading.Event]:
    """An event set by SIGINT/SIGTERM while the block runs (`on_signal` is called too, e.g. to
    log). Off the main thread, which receives no signals, a plain event."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum, frame) -> None:
        if on_signal is not None:
            on_signal()
        stop.set()

    before = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    for s in STOP_SIGNALS:
        signal.signal(s, handler)
    try:
        yield stop
    finally:
        for s, previous in before.items():
            signal.signal(s, previous)

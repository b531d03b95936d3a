"""streamrec.stop_signals: SIGINT/SIGTERM set an event inside the block and raise nothing; the
handlers from before come back (replay's send loop and retrain's loop use it)."""

import os
import signal
import threading

from streamrec.stop_signals import STOP_SIGNALS, stop_requested


def test_a_stop_signal_sets_the_event_instead_of_raising_and_the_handlers_come_back():
    got: list[int] = []
    before = {s: signal.signal(s, lambda signum, _frame: got.append(signum)) for s in STOP_SIGNALS}
    try:
        logged: list[str] = []
        with stop_requested(lambda: logged.append("stop")) as stop:
            for s in STOP_SIGNALS:
                os.kill(os.getpid(), s)  # raised where it landed, this cut sends short
            assert stop.wait(5) and stop.is_set()
        assert logged == ["stop", "stop"] and got == []
        os.kill(os.getpid(), signal.SIGTERM)  # the handler from before is back
        assert got == [signal.SIGTERM]
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)


def test_off_the_main_thread_it_is_a_plain_event():
    out = {}

    def run():
        with stop_requested() as stop:
            out["stop"] = stop
            out["handler"] = signal.getsignal(signal.SIGINT)

    t = threading.Thread(target=run)
    t.start()
    t.join()
    assert not out["stop"].is_set() and out["handler"] == signal.getsignal(signal.SIGINT)

"""Latency at a paced 1,000 events/s with micro-batch triggers of 1 s, 0.5 s and 0 (back to back),
one stream after the other on one broker and one model, then 1 s again (run-to-run noise).
A one-off lever check: `.venv/bin/python -m bench.trigger_bench` (about 4 minutes)."""

from __future__ import annotations

from bench import stream_bench as sb


def run(triggers: tuple[float, ...] = (1.0, 0.5, 0.0, 1.0), events: int = 15_000) -> list[dict]:
    return sb.compare("trigger_s", [(t, {"trigger_s": t}) for t in triggers], events)


if __name__ == "__main__":
    run()

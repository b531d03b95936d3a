"""Latency at a paced 1,000 events/s and a new user's first list, with micro-batch triggers of 1 s,
0.5 s and 0 (back to back), one stream after the other on one broker and one model after a
warm-up, then 1 s again (run-to-run noise).
A one-off lever check: `.venv/bin/python -m bench.trigger_bench` (about 10 minutes)."""

from __future__ import annotations

from bench import stream_bench as sb


def run(triggers: tuple[float, ...] = (1.0, 0.5, 0.0, 1.0), events: int = 15_000) -> list[dict]:
    variants = [(t, {"trigger_s": t}) for t in triggers]
    return sb.compare("trigger_s", variants, events, warm_up=3000, new_users=True)


if __name__ == "__main__":
    run()

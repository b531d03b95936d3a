"""Latency at a paced 1,000 events/s with micro-batch triggers of 1 s, 0.5 s and 0 (back to back),
one stream after the other on one broker and one model, then 1 s again (run-to-run noise).
A one-off lever check: `.venv/bin/python -m bench.trigger_bench` (about 4 minutes)."""

from __future__ import annotations

from bench import stream_bench as sb
from streamrec.spark import get_spark


def run(triggers: tuple[float, ...] = (1.0, 0.5, 0.0, 1.0), events: int = 15_000) -> list[dict]:
    out = []
    with sb.lever_setup(get_spark("streamrec-trigger-bench"), events) as (bootstrap, tmp, models, live):
        for trigger in triggers:
            s = sb.latency(get_spark(), bootstrap, tmp, models, live, 1000, trigger_s=trigger)
            out.append({"trigger_s": trigger, **{q: {k: s[q][k] for k in ("p50_ms", "p95_ms")}
                                                 for q in ("aggregates", "foldin")}})  # fmt: skip
            print(out[-1], flush=True)
    return out


if __name__ == "__main__":
    run()

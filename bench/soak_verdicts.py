"""The soak benchmark's pure logic: reading what the commands print, and the verdicts.

Kept apart from bench/soak_bench.py (which runs the processes) so tests can check it without a
broker or Spark. The three verdicts of issue 22:
- flat: no resource grows apart from the data itself. Each process's resident memory, each store
  that is not data (checkpoints, scratch, logs) and the event log's file count is compared between
  the two quarters of the run's second half: the late quarter's peak may exceed the earlier one's
  by at most GROWTH_TOLERANCE. Peaks, not means or a fitted slope, because much of it is a sawtooth
  (a retrain every 10 minutes, the event log's compaction, garbage collection) and a quarter of
  the default hour holds a whole period. Stores that are data (the topic, the event log, the state
  store, the sink, the models) grow with the events by design: their bytes per event are judged;
  so is the memory of the retrain's Spark JVM, which holds every rating it trains on (the history
  and the whole event log, by design) in local mode.
- latency: the end within LATENCY_TOLERANCE of the start: the 95th percentile of the stream's
  per-batch p95 (each query) and the API's p99, in the first window after warm-up vs the last.
  Read beside it, not judged: the same percentile over the batches committed outside the
  retrain's runs and over those during them, and how much of each window a retrain ran
  (`retrain_split`): on a 2-core host the retrain shares the stream's cores, and its run grows
  with the data it learns from.
- lost: every event the producer had acknowledged (and every POST /events answered 202) is in
  the event log once the stream drained, none twice.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

GROWTH_TOLERANCE = 0.10  # the late quarter's peak at most 10 % above the earlier quarter's
LATENCY_TOLERANCE = 0.20  # issue 22: latency at the end within 20 % of the start
MIN_RSS_MB = 50.0  # a process smaller than this (an idle worker pool) is too small to judge
MIN_DISK_MB = 1.0  # likewise a store
STATS_KEYS = ("events", "data_files", "bytes", "version", "min_timestamp", "max_timestamp")

Series = Sequence[tuple[float, float]]  # (seconds into the run, value)


def parse_acked(text: str) -> int | None:
    """Events the broker acknowledged, from `streamrec replay`'s summary ("replayed 1,234 of ...")
    or its delivery error ("... after 1,234 confirmed events"); None when neither is there."""
    found = re.findall(r"replayed ([\d,]+) of|after ([\d,]+) confirmed events", text)
    if not found:
        return None
    a, b = found[-1]
    return int((a or b).replace(",", ""))


def parse_eventlog_stats(text: str) -> dict:
    """`streamrec eventlog stats --json`: its one JSON object (the last line of stdout)."""
    line = [ln for ln in text.strip().splitlines() if ln.strip()][-1]
    stats = json.loads(line)
    missing = [k for k in STATS_KEYS if k not in stats]
    if missing:
        raise ValueError(f"eventlog stats without {', '.join(missing)}: {line[:200]}")
    return stats


def percentile(values: Iterable[float], q: float) -> float | None:
    xs = [v for v in values if v is not None and v == v]
    return float(np.percentile(xs, q)) if xs else None


def in_window(points: Series, lo: float, hi: float) -> list[float]:
    return [v for t, v in points if lo <= t < hi]


def growth(points: Series, start: float, end: float, floor: float = 0.0) -> dict:
    """Peaks of the two halves of [start, end) and how much the later one exceeds the earlier
    (`growth`, a fraction; None without a point in each half). `ok`: within GROWTH_TOLERANCE, or
    too small to judge (earlier peak below `floor`). Also the Theil-Sen slope over [start, end)
    per hour, relative to the median level (a trend, for the record)."""
    mid = (start + end) / 2
    early, late = in_window(points, start, mid), in_window(points, mid, end + 1e-9)
    out: dict = {"early_peak": max(early) if early else None, "late_peak": max(late) if late else None}
    if not early or not late:
        return {**out, "growth": None, "ok": True, "judged": False, "slope_per_h": None}
    g = (
        out["late_peak"] / out["early_peak"] - 1
        if out["early_peak"] > 0
        else (0.0 if not out["late_peak"] else None)
    )
    judged = out["early_peak"] >= floor and g is not None
    seg = [(t, v) for t, v in points if start <= t <= end]
    return {
        **out,
        "growth": None if g is None else round(g, 4),
        "judged": judged,
        "ok": (not judged) or g <= GROWTH_TOLERANCE,
        "slope_per_h": relative_slope_per_h(seg),
    }


def relative_slope_per_h(points: Series) -> float | None:
    """Theil-Sen slope (median of pairwise slopes: robust to spikes) per hour / median level."""
    if len(points) < 3:
        return None
    t = np.array([p[0] for p in points], float)
    v = np.array([p[1] for p in points], float)
    level = float(np.median(v))
    i, j = np.triu_indices(len(t), 1)
    dt = t[j] - t[i]
    keep = dt > 0
    if not keep.any() or level <= 0:
        return None
    slope = float(np.median((v[j] - v[i])[keep] / dt[keep]))
    return round(slope * 3600 / level, 4)


def per_event(points: Series, events: Series) -> list[tuple[float, float]]:
    """A store's bytes per event over time (points and events sampled at the same times)."""
    n = dict(events)
    return [(t, v / n[t]) for t, v in points if n.get(t)]


def latency_change(points: Series, start: tuple[float, float], end: tuple[float, float], q: float) -> dict:
    """The q-th percentile of the values in the start window and in the end window, and whether
    the end is within LATENCY_TOLERANCE of the start (None when a window is empty)."""
    a, b = percentile(in_window(points, *start), q), percentile(in_window(points, *end), q)
    n_a, n_b = len(in_window(points, *start)), len(in_window(points, *end))
    if a is None or b is None or a <= 0:
        a, b = (None if x is None else round(x, 1) for x in (a, b))
        return {"start": a, "end": b, "n_start": n_a, "n_end": n_b, "ratio": None, "ok": None}
    ratio = b / a
    return {
        "start": round(a, 1),
        "end": round(b, 1),
        "n_start": n_a,
        "n_end": n_b,
        "ratio": round(ratio, 3),
        "ok": ratio <= 1 + LATENCY_TOLERANCE,
    }


def split_by_runs(points: Series, runs: Sequence[Sequence[float]]) -> tuple[list, list]:
    """(points outside every run, points inside one); a run is [start, end] in the points' time."""
    outside: list = []
    inside: list = []
    for t, v in points:
        (inside if any(a <= t <= b for a, b in runs) else outside).append((t, v))
    return outside, inside


def covered_s(runs: Sequence[Sequence[float]], lo: float, hi: float) -> float:
    """Seconds of [lo, hi) that some run covers (runs do not overlap: one retrain at a time)."""
    return sum(max(0.0, min(b, hi) - max(a, lo)) for a, b in runs)


def retrain_split(batch_p95: dict, runs: Sequence[Sequence[float]], start: tuple, end: tuple) -> dict:
    """Per query, the latency change over the batches outside the retrain's runs and during them,
    and the seconds of each window a run covered: what the judged figure mixes."""
    out: dict = {"retrain_s": {"start": round(covered_s(runs, *start), 1),
                               "end": round(covered_s(runs, *end), 1)}}  # fmt: skip
    for q, pts in sorted(batch_p95.items()):
        outside, inside = split_by_runs(pts, runs)
        out[f"stream {q} batch p95"] = {
            "outside": latency_change(outside, start, end, 95),
            "during": latency_change(inside, start, end, 95),
        }
    return out


def latency_windows(duration_s: float, window_s: float) -> tuple[tuple[float, float], tuple[float, float]]:
    """(start window, end window): the first window after a warm-up as long as a window, and the
    last window of the run. A window is `window_s` (the retrain interval: each holds one retrain),
    at most a quarter of the run."""
    w = min(window_s, duration_s / 4)
    return (w, 2 * w), (duration_s - w, duration_s)


def loss(expected: Counter, found: Counter) -> dict:
    """Events expected (acknowledged) but not found, and found more often than sent."""
    missing = expected - found
    extra = found - expected
    return {
        "expected": sum(expected.values()),
        "found": sum(found.values()),
        "lost": sum(missing.values()),
        "extra": sum(extra.values()),
        "lost_examples": [list(k) for k in list(missing)[:5]],
    }


def verdicts(result: dict) -> dict:
    """The verdicts from a soak run's samples (bench/soak_bench.py's `result` layout): which
    resources grew, the latency at the end against the start, and the events lost."""
    samples = result["samples"]
    duration = result["duration_s"]
    half = (duration / 2, duration)
    rss_roles = sorted({r for s in samples for r in s["rss_mb"]})
    events = [(s["t"], s["eventlog"]["events"]) for s in samples if s.get("eventlog")]
    grown: dict[str, dict] = {}
    for role in rss_roles:
        pts = [(s["t"], s["rss_mb"][role]) for s in samples if role in s["rss_mb"]]
        if role in result.get("data_roles", ()):  # holds the data it works on: per event
            grown[f"rss per event {role}"] = growth(per_event(pts, events), *half)
        else:
            grown[f"rss {role}"] = growth(pts, *half, floor=MIN_RSS_MB)
    for store in sorted({k for s in samples for k in s["disk_mb"]}):
        pts = [(s["t"], s["disk_mb"][store]) for s in samples if store in s["disk_mb"]]
        if store in result.get("data_stores", ()):
            grown[f"disk per event {store}"] = growth(per_event(pts, events), *half)
        else:
            grown[f"disk {store}"] = growth(pts, *half, floor=MIN_DISK_MB)
    files = [(s["t"], s["eventlog"]["data_files"]) for s in samples if s.get("eventlog")]
    grown["event log data files"] = growth(files, *half)
    start, end = latency_windows(duration, result["window_s"])
    latency = {
        f"stream {q} batch p95": latency_change(pts, start, end, 95)
        for q, pts in sorted(result["batch_p95_ms"].items())
    }
    latency["API p99"] = latency_change(result["api_ms"], start, end, 99)
    runs = (result.get("retrain") or {}).get("runs")
    lost = result.get("loss") or {}
    flat = all(g["ok"] for g in grown.values())
    fast = all(v["ok"] is not False for v in latency.values()) and any(v["ok"] for v in latency.values())
    none_lost = bool(lost) and lost.get("lost") == 0 and lost.get("extra") == 0
    return {
        "flat": flat,
        "grew": sorted(k for k, g in grown.items() if not g["ok"]),
        "growth": grown,
        "latency_ok": fast,
        "latency": latency,
        "latency_windows": {"start": list(start), "end": list(end)},
        **({"retrain_split": retrain_split(result["batch_p95_ms"], runs, start, end)} if runs else {}),
        "none_lost": none_lost,
        "passed": flat and fast and none_lost,
    }


def summary_line(result: dict) -> str:
    """One line: the run, the load, what held."""
    v, lost = result["verdicts"], result.get("loss") or {}
    lat = "; ".join(
        f"{k} {x['start']:,.0f}->{x['end']:,.0f} ms"
        for k, x in v["latency"].items()
        if x.get("start") is not None and x.get("end") is not None
    )
    return (
        f"soak {result['duration_s'] / 60:.1f} min: {result['acked']:,} events acked, "
        f"{lost.get('lost', '?')} lost, {lost.get('extra', '?')} extra; "
        f"{'flat' if v['flat'] else 'grew: ' + ', '.join(v['grew'])}; {lat}; "
        f"{'PASSED' if v['passed'] else 'FAILED'}"
    )

"""bench/stream_growth.py's summary: pure logic on synthetic timings (the run itself is a benchmark)."""

from __future__ import annotations

import datetime as dt

from bench.stream_growth import summarise


def _progress(name: str, at: float, rows: int, ms: int) -> dict:
    stamp = dt.datetime.fromtimestamp(at, dt.UTC).isoformat().replace("+00:00", "Z")
    return {"name": name, "timestamp": stamp, "numInputRows": rows, "batchDuration": ms}


def test_the_growth_summary_buckets_medians_and_the_lock_wait_by_minutes_from_the_start():
    t0 = 1_000_000.0
    timings = [(t0 - 5, "items.apply", 9.0)]  # before the replay started: left out
    for i, (write, collect, apply) in enumerate([(0.5, 0.2, 0.1), (0.7, 0.2, 0.1), (1.0, 0.3, 0.1)]):
        at = t0 + 10 + i
        timings += [(at, "aggregates.write", write), (at, "aggregates.collect", collect),
                    (at, "aggregates.apply", apply), (at, "items.apply", 0.1 * (i + 1))]  # fmt: skip
    timings += [(t0 + 130, "items.apply", 0.4), (t0 + 131, "items.apply", 0.6)]
    progress = [
        _progress("foldin", t0 + 20, 100, 900),
        _progress("foldin", t0 + 30, 0, 5),
        _progress("foldin", t0 + 140, 300, 1500),
        _progress("foldin", t0 + 150, 200, 1300),
    ]
    out = summarise(timings, progress, t0, bucket_s=120)
    assert out["items.apply"] == {0: 200.0, 2: 500.0}  # medians in ms, keyed by minute
    assert out["foldin batch ms"] == {0: 900.0, 2: 1400.0}  # an idle batch (0 rows) is left out
    assert out["foldin rows"] == {0: 100.0, 2: 250.0}
    # mean write 733.3 - mean collect 233.3 - mean apply 100 ms
    assert out["aggregates lock wait"] == {0: 400.0}


def test_the_summary_keeps_sparks_steps_and_state_commits_and_the_section_reads_growth_after_warm_up():
    from bench.growth_report import growth_section

    t0 = 1_000_000.0
    progress = []
    for minute, wal in ((0, 90), (2, 50), (4, 60), (6, 75), (8, 10)):  # minute 8: cut by the stop
        p = _progress("aggregates", t0 + 60 * minute + 1, 100, 500 + wal)
        p |= {"durationMs": {"walCommit": wal, "triggerExecution": 999}, "stateOperators": [
            {"commitTimeMs": 3, "numRowsTotal": 10}, {"commitTimeMs": 4, "numRowsTotal": 5}]}  # fmt: skip
        progress.append(p)
    out = summarise([], progress, t0, bucket_s=120)
    assert out["aggregates walCommit ms"] == {0: 90.0, 2: 50.0, 4: 60.0, 6: 75.0, 8: 10.0}
    assert "aggregates triggerExecution ms" not in out  # the whole batch is `batch ms` already
    assert out["aggregates state commit ms"][2] == 7.0 and out["aggregates state rows"][2] == 15.0
    text = "\n".join(growth_section({"date": "d", "machine": "m", "minutes": 8, "variants": {"cache": out}}))
    wal_row = next(line for line in text.splitlines() if "offset log" in line)
    assert wal_row.endswith("| 90 | 50 | 60 | 75 | +50% |")  # min 2 -> the last whole bucket; min 8 left out

"""The soak benchmark's pure logic (bench/soak_verdicts.py): parsing the commands' output and the
verdicts, on hand-made samples with a known answer (no broker, no Spark)."""

from collections import Counter

import pytest

from bench.soak_verdicts import (
    growth,
    latency_change,
    latency_windows,
    loss,
    parse_acked,
    parse_eventlog_stats,
    per_event,
    relative_slope_per_h,
    verdicts,
)


def test_acked_events_come_from_replays_summary_or_its_delivery_error():
    assert (
        parse_acked("interrupted: replayed 1,234,567 of 61.2 passes of 20,168 events to ratings@x") == 1234567
    )
    assert parse_acked("replayed 12 of 12 events to ratings@localhost:9092 in 1.0s") == 12
    assert parse_acked("error: delivery failed after 4,321 confirmed events: KafkaError: x") == 4321
    assert parse_acked("replaying what v0001 was not trained on") is None


def test_eventlog_stats_is_the_last_json_line_with_every_key():
    stats = (
        '{"events": 5, "data_files": 2, "bytes": 10, "version": 3, "min_timestamp": 1, "max_timestamp": 9}'
    )
    text = f"a warning\n{stats}\n"
    assert parse_eventlog_stats(text)["data_files"] == 2
    with pytest.raises(ValueError, match="data_files"):
        parse_eventlog_stats('{"events": 5}')


def test_a_sawtooth_is_flat_and_a_ramp_is_growth():
    saw = [(t, 100 + (t % 10) * 10) for t in range(0, 100)]  # period 10 s, 100..190
    g = growth(saw, 50, 100)
    assert g["early_peak"] == g["late_peak"] == 190 and g["growth"] == 0 and g["ok"]
    ramp = [(t, 100 + t) for t in range(0, 101)]
    g = growth(ramp, 50, 100)
    assert (
        g["early_peak"] == 174 and g["late_peak"] == 200 and g["growth"] == pytest.approx(26 / 174, abs=1e-4)
    )
    assert not g["ok"] and g["judged"]


def test_a_small_series_is_not_judged_and_a_missing_half_is_no_verdict():
    g = growth([(60, 10.0), (90, 40.0)], 50, 100, floor=50)
    assert g["growth"] == 3.0 and not g["judged"] and g["ok"]
    assert growth([(60, 10.0)], 50, 100)["growth"] is None


def test_the_slope_is_per_hour_relative_to_the_level_and_ignores_a_spike():
    pts = [(t, 1000 + t * 0.1) for t in range(0, 3600, 60)]
    pts[10] = (600, 9000)  # one spike
    assert relative_slope_per_h(pts) == pytest.approx(360 / 1180, rel=0.02)


def test_store_bytes_per_event():
    assert per_event([(0, 10.0), (10, 20.0), (20, 30.0)], [(0, 0), (10, 100), (20, 300)]) == [
        (10, 0.2),
        (20, 0.1),
    ]


def test_latency_windows_and_the_20_percent_rule():
    start, end = latency_windows(3600, 600)
    assert start == (600, 1200) and end == (3000, 3600)
    assert latency_windows(300, 600) == ((75, 150), (225, 300))  # at most a quarter of the run
    pts = [(t, 1000.0) for t in range(600, 1200)] + [(t, 1150.0) for t in range(3000, 3600)]
    ok = latency_change(pts, start, end, 95)
    assert ok["ratio"] == 1.15 and ok["ok"]
    pts = [(t, 1000.0) for t in range(600, 1200)] + [(t, 1300.0) for t in range(3000, 3600)]
    assert latency_change(pts, start, end, 95)["ok"] is False
    assert latency_change([], start, end, 95)["ok"] is None


def test_loss_counts_missing_and_extra_events():
    expected = Counter({(1, 10, 4.0): 2, (2, 20, 3.5): 1})
    assert loss(expected, expected.copy())["lost"] == 0
    r = loss(expected, Counter({(1, 10, 4.0): 1, (3, 30, 5.0): 1}))
    assert (r["lost"], r["extra"], r["expected"], r["found"]) == (2, 1, 3, 2)


def _result(rss_late: float, p95_late: float, lost: int) -> dict:
    samples = []
    for t in range(0, 400, 10):
        late = t >= 300
        samples.append({"t": t, "rss_mb": {"stream JVM": rss_late if late else 1000.0, "serve": 200.0},
                        "disk_mb": {"checkpoints": 5.0, "event log": t / 10 + 1},
                        "eventlog": {"events": t * 100 + 100, "data_files": 20 + t % 30}})  # fmt: skip
    batches = [(t, p95_late if t >= 300 else 900.0) for t in range(100, 400)]
    return {"samples": samples, "duration_s": 400, "window_s": 100, "data_stores": ["event log"],
            "batch_p95_ms": {"aggregates": batches}, "api_ms": [(t, 50.0) for t in range(100, 400)],
            "loss": {"lost": lost, "extra": 0}}  # fmt: skip


def test_verdicts_pass_a_steady_run():
    v = verdicts(_result(rss_late=1000.0, p95_late=1000.0, lost=0))
    assert v["flat"] and v["latency_ok"] and v["none_lost"] and v["passed"], v
    assert v["latency"]["stream aggregates batch p95"]["ratio"] == pytest.approx(1000 / 900, abs=1e-3)


def test_verdicts_name_what_grew_got_slower_or_was_lost():
    v = verdicts(_result(rss_late=1500.0, p95_late=2000.0, lost=3))
    assert v["grew"] == ["rss stream JVM"] and not v["flat"]
    assert not v["latency_ok"] and not v["none_lost"] and not v["passed"]


def test_the_retrains_jvm_is_judged_per_event_as_it_holds_the_data():
    r = _result(rss_late=1000.0, p95_late=1000.0, lost=0)
    for s in r["samples"]:
        s["rss_mb"]["retrain JVM"] = 500.0 + s["eventlog"]["events"] / 100  # grows with the data
    assert "rss retrain JVM" in verdicts(r)["grew"]
    r["data_roles"] = ["retrain JVM"]
    v = verdicts(r)
    assert v["flat"] and v["growth"]["rss per event retrain JVM"]["growth"] < 0


def test_the_latency_is_read_apart_outside_and_during_the_retrains_runs_but_judged_whole():
    r = _result(rss_late=1000.0, p95_late=950.0, lost=0)
    assert "retrain_split" not in verdicts(r)  # no runs recorded: nothing to read apart
    runs = [[110.0, 112.0], [310.0, 370.0]]  # a far longer run in the end window
    r["retrain"] = {"runs": runs}
    r["batch_p95_ms"]["aggregates"] = [
        (t, 3000.0 if any(a <= t <= b for a, b in runs) else v) for t, v in r["batch_p95_ms"]["aggregates"]
    ]
    v = verdicts(r)
    assert not v["latency_ok"]  # the judged figure mixes both: the end window is 60 % retrain
    split = v["retrain_split"]
    assert split["retrain_s"] == {"start": 2.0, "end": 60.0}
    outside = split["stream aggregates batch p95"]["outside"]
    assert (outside["start"], outside["end"], outside["ok"]) == (900.0, 950.0, True)
    assert (outside["n_start"], outside["n_end"]) == (100 - 3, 100 - 61)
    during = split["stream aggregates batch p95"]["during"]
    assert (during["start"], during["end"], during["ratio"]) == (3000.0, 3000.0, 1.0)

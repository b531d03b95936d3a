"""The scale benchmark's own instruments (bench/scale_bench.py), on the bundled data: the event log
it writes without the stream, and how it runs and logs one step. No broker, no Spark."""

import pandas as pd

from bench import scale_bench
from streamrec.event_log import count_events, event_log_dir, open_table
from streamrec.history import window
from streamrec.movielens import load_ratings
from streamrec.settings import BUNDLED_DATA


def test_the_direct_event_log_holds_the_newest_fifth_in_batch_sized_appends(tmp_path):
    res = scale_bench.write_event_log(BUNDLED_DATA, tmp_path, batch=7_000)
    root = event_log_dir(tmp_path)
    live = window(load_ratings(BUNDLED_DATA)[0], split_at=0.8)
    assert res["events"] == len(live) == count_events(root)
    assert res["appends"] == -(-len(live) // 7_000)
    table = open_table(root)
    assert table.version() == res["appends"]  # one commit creating the table, then one per append
    got = table.to_pandas(columns=["user_id", "movie_id", "rating", "timestamp", "offset"]).sort_values(
        "offset"
    )
    pd.testing.assert_frame_equal(
        got.drop(columns="offset").reset_index(drop=True),
        live[["user_id", "movie_id", "rating", "timestamp"]].reset_index(drop=True),
        check_dtype=False,
    )
    # Written again (a re-run over the same home): every batch id is already in, nothing appended.
    scale_bench.write_event_log(BUNDLED_DATA, tmp_path, batch=7_000)
    assert count_events(root) == len(live)


def test_a_step_records_time_memory_and_with_logs_its_stamped_output(tmp_path, monkeypatch):
    monkeypatch.setenv("STREAMREC_BENCH_SCALE_LOGS", str(tmp_path / "logs"))
    env = {
        "PATH": "/usr/bin:/bin",
        "STREAMREC_HOME": str(tmp_path / "home"),
        "PYTHONPATH": str(scale_bench.REPO),
    }
    res = scale_bench._step(env, "eventlog", "stats", "--json")
    assert "error" not in res and '"events": 0' in res["out"]
    assert res["seconds"] > 0 and res["peak_mb"]["driver"] > 0  # sampled at least once, from the start
    (log,) = (tmp_path / "logs").glob("*-eventlog.log")
    assert '"events": 0' in log.read_text()
    failed = scale_bench._step(env, "eventlog", "stats", "--no-such-flag")
    assert "error" in failed and "no-such-flag" in failed["error"]


def test_the_report_judges_the_25m_direct_retrains_and_their_growth_from_the_smallest():
    from bench.report import RETRAIN_BEFORE_S, _scale_targets

    def step(seconds: float, driver: int = 800, jvm: int = 3000) -> dict:
        return {"seconds": seconds, "peak_rss_mb": driver + jvm, "peak_mb": {"driver": driver, "jvm": jvm}}

    bar = RETRAIN_BEFORE_S * 0.7
    direct = {"ratings": 25_000_000, "date": "d", "log": {"events": 5, "appends": 1},
              "retrain": step(bar + 1, jvm=6000), "again": [{"driver_memory": "6g", **step(bar - 1)},
                        {"driver_memory": "2g", **step(9.0), "error": "OutOfMemoryError"}]}  # fmt: skip
    one = {"ratings": 1_000_000, "date": "d", "log": {"events": 2, "appends": 1},
           "retrain": step(60.0, 500, 2000), "again": [{"driver_memory": "6g", **step(50.0, 400, 2000)},
                     {"driver_memory": "2g", **step(55.0, 400, 1500)}]}  # fmt: skip
    small = {"ratings": 1_000_000, **{s: step(10.0) for s in ("train", "stream", "retrain")}}
    big = {**small, "ratings": 5_000_000}
    text = "\n".join(_scale_targets({"local": [small, big], "before": [small], "direct": [direct, one]}))
    assert f"fresh home: {bar + 1:,.0f} s (**missed**)" in text
    assert "JVM heap 6g: " + f"{bar - 1:,.0f} s (**met**)" in text
    assert "JVM heap 2g: failed: OutOfMemoryError" in text
    assert "fresh home: 60 s, peak" in text  # no verdict below 25M: the target is the 25M retrain's
    assert "| first run (fresh home) | 500 -> 800 MB | 1.60x | 2,000 -> 6,000 MB | 3.00x |" in text
    assert "| again, JVM heap 6g | 400 -> 800 MB | 2.00x | 2,000 -> 3,000 MB | 1.50x |" in text
    assert "again, JVM heap 2g |" not in text  # failed at 25M: no growth to show
    assert "from 5,000,000" not in text  # two sizes: one table
    # the summary's retrain row: direct 1M -> direct 25M (one protocol), not the local 1M row
    row = "| retrain | 1,000,000 -> 25,000,000 (event log written directly) | 500 -> 800 MB | 1.60x |"
    assert row in text
    mid = {**one, "ratings": 10_000_000, "date": "e", "retrain": step(90.0, 700, 4000)}
    text = "\n".join(_scale_targets({"local": [small, big], "before": [small], "direct": [direct, one, mid]}))
    assert "from 1,000,000 to 25,000,000 ratings (same protocol, measured d):" in text
    assert "from 10,000,000 to 25,000,000 ratings (same protocol, measured e and d):" in text
    assert "| first run (fresh home) | 700 -> 800 MB | 1.14x | 4,000 -> 6,000 MB | 1.50x |" in text

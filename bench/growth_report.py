"""The growth run's section of docs/benchmarks.md (bench/stream_growth.py): where a running
stream's batch time goes, bucket by bucket, with the figures read from the run."""

from __future__ import annotations

ROWS = (  # (key in a variant's summary, label, indent): the steps that make up each query's batch
    ("aggregates batch ms", "aggregates: batch", 0),
    ("aggregates walCommit ms", "Spark: offset log (walCommit)", 1),
    ("aggregates commitOffsets ms", "Spark: commit log (commitOffsets)", 1),
    ("aggregates addBatch ms", "Spark: the batch (addBatch)", 1),
    ("aggregates.collect", "collect, Delta append, deltas", 2),
    ("write_batch", "the Delta append", 3),
    ("aggregates lock wait", "wait for the sink's write lock", 2),
    ("aggregates.apply", "sink writes", 2),
    ("aggregates rows", "rows per batch", 1),
    ("foldin batch ms", "fold-in: batch", 0),
    ("foldin walCommit ms", "Spark: offset log (walCommit)", 1),
    ("foldin commitOffsets ms", "Spark: commit log (commitOffsets)", 1),
    ("foldin state commit ms", "RocksDB state commit", 1),
    ("foldin addBatch ms", "Spark: the batch (addBatch)", 1),
    ("items.apply", "item fold-in (items.apply)", 2),
    ("foldin rows", "rows per batch", 1),
    ("foldin state rows", "users in the state", 1),
)


LABELS = {
    "filecontext": "filecontext: Spark's default checkpoint file manager (FileContext, which forks "
    "`readlink`/`chmod` per checkpoint file on a local path)",
    "cache": "cache: the stream as it is (checkpoint files through the FileSystem API, the rater cache)",
    "reload": "reload: the item fold-in's former path (every touched movie's raters read back each batch)",
}


def _columns(series: dict) -> list[int]:
    """Every bucket up to 12 of them, else every 6 minutes; up to the last whole bucket (the very
    last one is cut by the stop)."""
    minutes = sorted(int(m) for m in series)
    last = minutes[-2] if len(minutes) > 1 else minutes[-1]
    every = 6 if len(minutes) > 12 else 1
    return sorted({m for m in minutes if m % every == 0 and m <= last} | {last})


def growth_section(g: dict) -> list[str]:
    lines = ["## Where a running stream's batch time goes (`bench/stream_growth.py`)", "",
             f"Measured {g['date']} on {g['machine']}: `python -m bench.stream_growth {g['minutes']:g} "
             f"{' '.join(g['variants'])}`. The soak's load without its faults, retrains or API: one "
             "broker, one model (`train --split-at 0.8`), `replay --loop --rate 500` into the stream "
             "(defaults) in the same process, timers around its steps. Medians per two-minute bucket "
             "(the lock wait: a mean), by minutes since the replay started.", ""]  # fmt: skip
    for name, v in g["variants"].items():
        cols = _columns(v["aggregates batch ms"])
        head = " | ".join(f"min {m}" for m in cols)
        rule = "|---|" + "---:|" * (len(cols) + 1)
        lines += [
            f"**{LABELS.get(name, name)}**",
            "",
            f"| ms (median) | {head} | growth from min {cols[1] if len(cols) > 2 else cols[0]} |",
            rule,
        ]
        for key, label, indent in ROWS:
            s = {int(m): x for m, x in v.get(key, {}).items()}
            if not s:
                continue
            a, b = s.get(cols[1] if len(cols) > 2 else cols[0]), s.get(cols[-1])  # after the warm-up
            growth = f"{b / a - 1:+.0%}" if a and b is not None else ""
            cells = " | ".join("" if s.get(m) is None else f"{s[m]:,.0f}" for m in cols)
            lines.append(f"| {'&nbsp;' * 3 * indent}{label} | {cells} | {growth} |")
        lines.append("")
    if g.get("notes"):
        lines += [g["notes"], ""]
    return lines

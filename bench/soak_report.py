"""The soak section of docs/benchmarks.md (bench/report.py calls it), from the results JSON."""

from __future__ import annotations

from bench.soak_verdicts import GROWTH_TOLERANCE, LATENCY_TOLERANCE, MIN_DISK_MB, MIN_RSS_MB


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:+.1f} %"


def _yes(ok: bool | None) -> str:
    return "-" if ok is None else "yes" if ok else "**no**"


def _value(name: str, x: float) -> str:
    if "per event" in name:  # MB per event
        return f"{x * 2**20:,.1f} B"
    return f"{x:,.0f}" if "files" in name else f"{x:,.1f} MB"


def _fault(e: dict) -> str:
    """One fault or restart in words: its name and its figures."""
    names = {"first_batch_after_s": "first batch after {} s", "stopped_in_s": "stopped in {} s",
             "back_after_s": "back after {} s", "acked": "{} events acknowledged before"}  # fmt: skip
    extra = [names[k].format(v) for k, v in e.items() if k in names and v is not None]
    return e["what"] + (f" ({', '.join(extra)})" if extra else "")


def soak_section(s: dict, img: dict[str, str]) -> list[str]:
    cfg, v = s["settings"], s["verdicts"]
    lost, ret = s.get("loss") or {}, s.get("retrain") or {}
    minutes = s["duration_s"] / 60
    lines = [
        "## Soak (`bench/soak_bench.py`)",
        "",
        f"Measured {s.get('date', '')} on {s.get('machine', 'the same machine')}, **{minutes:.0f} minutes**. "
        "`python -m bench.run_all soak` (`STREAMREC_BENCH_SOAK_MINUTES`, default 60). In one fresh "
        "state directory, each command its own process as a user runs them: a private broker, "
        f"`train --split-at {cfg['split_at']}`, `stream` (defaults), `replay --loop --rate "
        f"{cfg['rate']:g}` (the newest 20 % of the bundled ratings again and again, new user ids each "
        f"pass, event time = send time), `retrain --every {cfg['retrain_every_s']:g}s --force` (hot "
        f"swaps; `--force` because a refused gate would mean no swap to soak, the gate's verdicts "
        f"are recorded below; {_niceness(cfg)}), `serve` with an API key under a light load (a GET "
        f"/recommendations/{{id}} every {cfg['get_every_s']:.2f} s, a POST /events every "
        f"{cfg['post_every_s']:g} s). The stream was SIGKILLed (driver, JVM and workers) at "
        f"{cfg['kill_at'] * minutes:.1f} min and started again; the broker was stopped and started "
        f"at {cfg['broker_restart_at'] * minutes:.1f} min. Sampled every {cfg['sample_s']:g} s.",
        "",
        "| must hold | measured | held |",
        "|---|---|---|",
    ]
    grew = ", ".join(v["grew"]) or "nothing"
    lines.append(
        f"| no unbounded growth apart from the data | beyond {GROWTH_TOLERANCE:.0%} between the two "
        f"quarters of the second half: {grew} | {_yes(v['flat'])} |"
    )
    lat = "; ".join(
        f"{k} {x['start']:,.0f} -> {x['end']:,.0f} ms ({x['ratio']:.2f}x)"
        for k, x in v["latency"].items()
        if x.get("ratio") is not None
    )
    within = f"latency at the end within {LATENCY_TOLERANCE:.0%} of the start"
    lines.append(f"| {within} | {lat} | {_yes(v['latency_ok'])} |")
    if "error" in lost:
        lines.append(f"| 0 events lost | not checked: {lost['error']} | {_yes(v['none_lost'])} |")
    elif lost:
        p, a = lost["producer"], lost["api"]
        lines.append(
            f"| 0 events lost | producer acknowledged {p['expected']:,}, found {p['found']:,} in the event "
            f"log, {lost['lost']} lost, {lost['duplicates']} duplicated; POST /events accepted "
            f"{a['expected']}, found {a['found']}; dead letters {s.get('dead_letters', '?')} | "
            f"{_yes(v['none_lost'])} |"
        )
    ws, we = v["latency_windows"]["start"], v["latency_windows"]["end"]
    lines += _split_lines(v.get("retrain_split"))
    lines += [
        "",
        f"Latency windows: minutes {ws[0] / 60:.1f}-{ws[1] / 60:.1f} (start, after a warm-up as long) "
        f"and {we[0] / 60:.1f}-{we[1] / 60:.1f} (end): the 95th percentile of the stream's per-batch "
        "p95 end-to-end latency (Kafka record time to sink commit) per query, and the API's p99 "
        "(client side, every request). Growth: each process's resident memory (by role: the "
        "command's Python process, its Spark JVM, its Python workers), each store that is not data "
        "and the event log's file count, peak of the run's third quarter against the fourth; the "
        f"stores that are data ({', '.join(s.get('data_stores', []))}) and the processes that hold "
        f"data ({', '.join(s.get('data_roles', []))}: what the retrain trains on and writes, the API's "
        f"ratings index) by bytes per event in the log. Below {MIN_RSS_MB:g} MB (a process) or "
        f"{MIN_DISK_MB:g} MB (a store) not judged.",
        "",
    ]
    if s.get("notes"):  # the reading of this run, kept with its figures
        lines += [s["notes"], ""]
    if "soak" in img:
        lines += [f"![Soak over time]({img['soak']})", ""]
    lines += [
        "| resource | third quarter peak | fourth quarter peak | growth | trend (Theil-Sen, per hour) |",
        "|---|---|---|---|---|",
    ]
    for name, g in v["growth"].items():
        if g["early_peak"] is None:
            continue
        mark = ("" if g["ok"] else " **grew**") + ("" if g["judged"] else " (too small to judge)")
        lines.append(
            f"| {name} | {_value(name, g['early_peak'])} | {_value(name, g['late_peak'])} | "
            f"{_pct(g['growth'])}{mark} | {_pct(g['slope_per_h'])} |"
        )
    faults = "; ".join(
        f"{e['t'] / 60:.1f} min: {_fault(e)}" for e in sorted(s.get("events", []), key=lambda e: e["t"])
    )
    models = ret.get("models", [])
    refused = [m["version"] for m in models if m.get("gate_passed") is False]
    api = s.get("api", {})
    lines += [
        "",
        f"Faults and restarts: {faults or 'none'}. Retrains: {ret.get('published', 0)} published, "
        f"{ret.get('failed', 0)} failed; {ret.get('hot_swaps', 0)} hot swaps seen by the stream; the "
        f"gate would have refused {', '.join(refused) if refused else 'none'} of the {len(models)} "
        f"versions kept. API: {api.get('requests', 0):,} requests, {api.get('errors', 0)} not 2xx "
        f"({', '.join(f'{k}: {n}' for k, n in sorted(api.get('by_status', {}).items()))}). The stream "
        f"drained in {s.get('drain_s', 0):.0f} s after the producer stopped. v1 trained in "
        f"{s.get('train_s', 0):.0f} s.",
        "",
        f"Summary: {s.get('summary', '')}",
        "",
    ]
    return lines


def _split_lines(split: dict | None) -> list[str]:
    """The judged latency read apart (not judged): outside the retrain's runs and during them."""
    if not split:
        return []

    def change(x: dict) -> str:
        if x.get("ratio") is None:
            return "-"
        n = f"{x['n_start']} / {x['n_end']} batches"
        return f"{x['start']:,.0f} -> {x['end']:,.0f} ms ({x['ratio']:.2f}x; {n})"

    r = split["retrain_s"]
    lines = [
        "",
        f"Read apart (not judged): a retrain ran {r['start']:.0f} s of the start window and "
        f"{r['end']:.0f} s of the end one (from each model's publish time and run time).",
        "",
        "| query | p95 outside the retrain's runs | p95 during them |",
        "|---|---|---|",
    ]
    for name, x in split.items():
        if name != "retrain_s":
            lines.append(f"| {name} | {change(x['outside'])} | {change(x['during'])} |")
    return lines


def _niceness(cfg: dict) -> str:
    if cfg.get("retrain_idle"):  # runs before 2026-12-03 13:55 recorded none: they ran without
        return "at Linux's idle CPU priority (SCHED_IDLE: only CPU time no other process wants)"
    n = cfg.get("retrain_nice", 0)  # runs before 2026-12-02 19:00 recorded none: they ran at 0
    return f"under `nice -n {n}`, below the stream's CPU priority" if n else "at the stream's CPU priority"

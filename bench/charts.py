"""PNG charts for docs/benchmarks.md, drawn from the same results JSON as its tables."""

from __future__ import annotations

from pathlib import Path


def write_charts(results: dict, out: Path) -> dict[str, Path]:
    """Draw every chart the results allow; returns {name: path}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    made: dict[str, Path] = {}

    def save(fig, name: str) -> None:
        path = out / f"{name}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
        made[name] = path

    support = results.get("train", {}).get("support")
    if support:
        x = [r["servable_movies"] for r in support]
        fig, ax = plt.subplots(figsize=(7, 3.6))
        ax.plot(x, [r["precision_at_10"] for r in support], marker="o", label="P@10")
        ax.plot(x, [r["ndcg_at_10"] for r in support], marker="s", label="NDCG@10")
        for r, xi in zip(support, x, strict=True):
            ax.annotate(f"≥{r['min_support']}", (xi, r["ndcg_at_10"]), textcoords="offset points",
                        xytext=(0, 6), ha="center", fontsize=8)  # fmt: skip
        ax.set_xscale("log")
        ax.margins(x=0.08, y=0.15)
        ax.set(title="Ranking quality vs catalogue coverage (--min-support)",
               xlabel="servable movies (log scale)", ylabel="metric @10")  # fmt: skip
        ax.legend()
        save(fig, "quality_vs_coverage")

    evaluation = results.get("quality", {}).get("evaluation")
    if evaluation and "new_users" in evaluation:
        from batch.evaluate import chart

        made["new_users_ndcg"] = chart(evaluation, out / "new_users_ndcg.png")

    runs = results.get("stream", {}).get("throughput")
    if isinstance(runs, list) and runs:
        labels = [f"{r['per_batch'] // 1000}k" if r["per_batch"] else "no cap" for r in runs]
        fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
        left.bar(labels, [r["events_per_s_wall"] for r in runs], color="#3b75af")
        left.set(title="Backlog drain, both queries", xlabel="records per batch", ylabel="events/s")
        queries = ("aggregates", "foldin")
        width = 0.38
        for i, q in enumerate(queries):
            ms = [r["per_query_steady"].get(q, {}).get("ms_per_batch", 0) / 1000 for r in runs]
            right.bar([j + (i - 0.5) * width for j in range(len(runs))], ms, width, label=q)
        right.set_xticks(range(len(runs)), labels)
        right.set(title="Median batch time per query", xlabel="records per batch", ylabel="seconds")
        right.legend(fontsize=8)
        save(fig, "stream_throughput")

    lat = results.get("stream", {}).get("latency", {})
    if all("series" in lat.get(q, {}) for q in ("aggregates", "foldin")):
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharey=True)
        for ax, q, target in zip(axes, ("aggregates", "foldin"), (1.0, 1.5), strict=True):
            series = lat[q]["series"]
            t = [s[0] for s in series]
            ax.plot(t, [s[2] / 1000 for s in series], marker=".", label="batch p95")
            ax.plot(t, [s[1] / 1000 for s in series], marker=".", label="batch p50")
            ax.axhline(target, color="#c44", linestyle="--", linewidth=1, label=f"target p95 {target:g} s")
            ax.set(title=f"{q}: end-to-end latency per batch", xlabel="seconds into the paced replay")
            ax.legend(fontsize=8)
        axes[0].set_ylabel("seconds (Kafka record time -> sink commit)")
        fig.suptitle(f"Paced replay at {lat['rate']:,.0f} events/s, 2 cores, everything running", fontsize=9)
        save(fig, "stream_latency")
    modes = scale_modes(results.get("scale", {}))
    if any(len(runs) > 1 for runs in modes.values()):
        fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
        colors = {"train": "#3b75af", "replay": "#e07b39", "stream": "#1f9d55", "retrain": "#c44e52"}
        for mode, style in (("local", "-"), ("cluster", "--"), ("before", ":")):
            for step, color in colors.items():
                done = [r for r in modes.get(mode, []) if "error" not in r.get(step, {"error": 1})]
                if len(done) < 2:
                    continue
                x = [r["ratings"] for r in done]
                left.plot(x, [r[step]["seconds"] for r in done], style, marker="o", color=color,
                          label=f"{step} ({mode})")  # fmt: skip
                right.plot(x, [r[step]["peak_rss_mb"] / 1024 for r in done], style, marker="o", color=color,
                           label=f"{step} ({mode})")  # fmt: skip
        for ax, what in ((left, "seconds"), (right, "peak memory, GB")):
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set(xlabel="ratings (log scale)", ylabel=f"{what} (log scale)")
        left.set_title("Step time by data size")
        right.set_title("Peak resident memory of the step (all its processes)")
        right.axhline(24, color="#888", linestyle=":", linewidth=1, label="this machine's RAM")
        right.legend(fontsize=7, ncol=2)
        fig.suptitle("Synthetic data in ml-25m's proportions; solid: local mode, dashed: 2-worker cluster, "
                     "dotted: the design before (history on the driver)",
                     fontsize=9)  # fmt: skip
        save(fig, "scale")
    soak = results.get("soak")
    if soak and soak.get("samples"):
        save(_soak_figure(soak, plt), "soak")
    return made


def _soak_figure(soak: dict, plt):
    """The soak over time: resident memory per process, disk per store, the event log's files,
    the stream's batch p95 and the API's p99 per sample; the faults as vertical lines."""
    samples = soak["samples"]
    t = [s["t"] / 60 for s in samples]
    fig, axes = plt.subplots(5, 1, figsize=(9, 13), sharex=True)

    def lines(ax, key: str, scale: float = 1.0) -> None:
        for name in sorted({k for s in samples for k in s[key]}):
            pts = [(s["t"] / 60, s[key][name] * scale) for s in samples if name in s[key]]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], label=name, linewidth=1.2)
        if ax.get_lines():
            ax.legend(fontsize=7, ncol=3, loc="upper left")

    lines(axes[0], "rss_mb")
    axes[0].set(title="Resident memory per process", ylabel="MB")
    lines(axes[1], "disk_mb")
    axes[1].set(title="Disk used per store", ylabel="MB")
    axes[1].set_yscale("symlog", linthresh=1)
    logs = [(s["t"] / 60, s["eventlog"]) for s in samples if s.get("eventlog")]
    axes[2].plot(
        [x for x, _ in logs], [e["data_files"] for _, e in logs], color="#3b75af", label="data files"
    )
    axes[2].set(title="Event log", ylabel="data files")
    events = axes[2].twinx()
    events.plot([x for x, _ in logs], [e["events"] / 1e6 for _, e in logs], color="#e07b39", label="events")
    events.set_ylabel("events (millions)")
    axes[2].legend(fontsize=7, loc="upper left")
    events.legend(fontsize=7, loc="upper right")
    lines(axes[3], "stream_p95_ms", 1 / 1000)
    axes[3].set(title="Stream: p95 of the batches' p95 end-to-end latency, per sample", ylabel="seconds")
    axes[3].set_yscale("log")  # seconds at steady state, a minute after the SIGKILL: both readable
    axes[3].set_yticks([1, 2, 3, 5, 10, 20, 50], minor=False)
    axes[3].yaxis.set_major_formatter("{x:g}")
    axes[3].yaxis.set_minor_formatter("")
    for i, (a, b) in enumerate((soak.get("retrain") or {}).get("runs", [])):  # recorded since 2026-12-03
        label = "retrain running" if i == 0 else None
        axes[3].axvspan(a / 60, b / 60, color="#f2c14e", alpha=0.3, linewidth=0, label=label)
    if (soak.get("retrain") or {}).get("runs"):
        axes[3].legend(fontsize=7, ncol=3, loc="upper left")
    api = [(x, s["api_p99_ms"]) for x, s in zip(t, samples, strict=True) if s.get("api_p99_ms") is not None]
    axes[4].plot([x for x, _ in api], [v for _, v in api], color="#c44e52", label="API p99")
    axes[4].set(title="API: p99 per sample (GET /recommendations, POST /events)", ylabel="ms",
                xlabel="minutes into the soak")  # fmt: skip
    for ax in axes:
        for e in soak.get("events", []):
            if "SIGKILL" in e["what"] or "broker restarted" in e["what"]:
                ax.axvline(e["t"] / 60, color="#888", linestyle="--", linewidth=1)
        for m in _swaps(samples):
            ax.axvline(m, color="#1f9d55", linestyle=":", linewidth=0.8)
    rate = soak["settings"]["rate"]
    fig.suptitle(f"Soak, {soak['duration_s'] / 60:.0f} min at {rate:,.0f} events/s; dashed: stream SIGKILL, "
                 "broker restart; dotted green: a new model version", fontsize=9)  # fmt: skip
    return fig


def _swaps(samples: list[dict]) -> list[float]:
    """Minutes at which CURRENT changed between two samples."""
    return [
        b["t"] / 60 for a, b in zip(samples, samples[1:], strict=False) if a.get("model") != b.get("model")
    ]


def scale_modes(sc: dict) -> dict[str, list[dict]]:
    """{mode: runs}; results from before the cluster run had one mode."""
    return (
        {sc["mode"]: sc["runs"]}
        if "runs" in sc
        else {m: sc[m] for m in ("local", "cluster", "before") if m in sc}
    )

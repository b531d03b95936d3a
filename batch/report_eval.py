"""Markdown tables and the one-line summary of an evaluation result (`streamrec evaluate`, bench)."""

from __future__ import annotations

SERVED, POPULAR = "ranking model (served)", "popularity"


def _methods_table(methods: dict, k: int) -> list[str]:
    lines = [f"| method | P@{k} | R@{k} | NDCG@{k} | MAP@{k} | users |", "|---|---|---|---|---|---|"]
    for name, m in methods.items():
        lines.append(
            f"| {name} | {m[f'precision_at_{k}']:.4f} | {m[f'recall_at_{k}']:.4f} | "
            f"{m[f'ndcg_at_{k}']:.4f} | {m[f'map_at_{k}']:.4f} | {m['users']} |"
        )
    return lines


def markdown_tables(res: dict) -> str:
    k = res["k"]
    out = [
        f"{res['ratings']:,} ratings, {res['users']:,} users, {res['movies']:,} movies; seed {res['seed']}"
    ]
    if "warm" in res:
        w = res["warm"]
        out += ["", f"### Warm users (random split of ratings; explicit model RMSE {w['rmse']:.4f}, "
                f"MAE {w['mae']:.4f})", "", *_methods_table(w["methods"], k)]  # fmt: skip
    if "strong" in res:
        out += ["", "### Strong generalisation (held-out users, 80 % folded in, 20 % scored)", "",
                *_methods_table(res["strong"]["methods"], k)]  # fmt: skip
    if "new_users" in res:
        by_n = res["new_users"]["by_n"]
        ns = list(by_n)
        names = list(by_n[ns[0]])
        out += [
            "",
            f"### New users in stream order: NDCG@{k} after their first n ratings",
            "",
            "| method | " + " | ".join(f"n={n}" for n in ns) + " |",
            "|---|" + "---|" * len(ns),
        ]
        for name in names:
            cells = " | ".join(f"{by_n[n][name][f'ndcg_at_{k}']:.4f}" for n in ns)
            out.append(f"| {name} | {cells} |")
        out.append("| users | " + " | ".join(str(by_n[n][names[0]]["users"]) for n in ns) + " |")
    if "prequential" in res:
        p = res["prequential"]
        out += ["", f"### Prequential replay ({p['scored_events']:,} first-time ratings of "
                f"{p['users']} users, "
                f"{p['new_users']} of them new): hit rate@{k} of the list served just before each event", "",
                f"| method | hit rate@{k} | positive events on a servable movie |",
                "|---|---|---|"]  # fmt: skip
        share = p.get("servable_share", {})
        out += [f"| {name} | {h:.4f} | {share[name]:.1%} |" if name in share else f"| {name} | {h:.4f} | - |"
                for name, h in p["hit_rate"].items()]  # fmt: skip
    if res.get("ease", "computed") != "computed":
        out += ["", f"EASE {res['ease']}."]
    return "\n".join(out)


def summary(res: dict) -> str:
    """One line: the served lists against popularity, per protocol that ran."""
    k, parts = res["k"], []
    if "warm" in res:
        m = res["warm"]["methods"]
        parts.append(
            f"warm NDCG@{k} {m[SERVED][f'ndcg_at_{k}']:.3f} vs popularity {m[POPULAR][f'ndcg_at_{k}']:.3f}"
        )
    if "new_users" in res:
        by_n = res["new_users"]["by_n"]
        wins = sum(v[SERVED][f"ndcg_at_{k}"] >= v[POPULAR][f"ndcg_at_{k}"] for v in by_n.values())
        parts.append(f"new users >= popularity at {wins}/{len(by_n)} n")
    if "prequential" in res:
        h = res["prequential"]["hit_rate"]
        items = h.get("users + items fold-in")
        both = f", users + items {items:.3f}" if items is not None else ""
        static = h["static model (no fold-in)"]
        parts.append(f"prequential hit rate {h['stream fold-in']:.3f}{both} vs static {static:.3f}")
    return f"evaluated in {res['seconds']}s: " + "; ".join(parts)

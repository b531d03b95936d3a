"""Model versions as the API lists them: metrics and data counts per version, one version's metadata."""

from __future__ import annotations

from collections.abc import Callable

from streamrec.errors import NotFound
from streamrec.model_store import ModelStore


class ModelsView:
    def __init__(self, store: ModelStore, live: Callable[[], list[dict]] | None = None):
        self.store = store
        self.live = live  # Stats.live_eval: each version's live hit rate beside its offline NDCG

    def versions(self) -> list[dict]:
        current, candidate = self.store.current_version(), self.store.candidate_version()
        live = _by_version(self.live() if self.live else [])
        out = []
        for v in reversed(self.store.versions()):  # newest first
            problem = self.store.check(v)
            meta = None if problem else self.store.metadata(v)
            m = meta.metrics if meta else {}
            out.append(
                {
                    "version": v,
                    "current": v == current,
                    "candidate": v == candidate,
                    "problem": problem,
                    "created_at": meta and meta.created_at,
                    "rmse": m.get("rmse"),
                    "ndcg_at_10": m.get("ndcg_at_10"),
                    "precision_at_10": m.get("precision_at_10"),
                    "popularity_ndcg_at_10": (m.get("popularity") or {}).get("ndcg_at_10"),
                    "ratings": meta and meta.counts.get("ratings"),
                    **live.get(
                        v, {"live_events": 0, "live_hit_rate": None, "live_popularity_hit_rate": None}
                    ),
                }
            )
        return out

    def info(self, version: str) -> dict:
        if not version.startswith("v") or not (self.store.root / version).is_dir():
            raise NotFound(f"model {version} does not exist")
        problem = self.store.check(version)
        if problem:
            return {"version": version, "current": False, "problem": problem}
        meta = {k: v for k, v in self.store.metadata(version).to_dict().items() if k != "files"}
        return {
            **meta,
            "version": version,
            "current": version == self.store.current_version(),
            "problem": None,
        }


def _by_version(rows: list[dict]) -> dict[str, dict]:
    """Live hit rate per model version over all its list sources (a candidate: its shadow lists)."""
    out: dict[str, dict] = {}
    for r in rows:
        t = out.setdefault(r["model_version"], {"live_events": 0, "hits": 0, "pop": 0.0})
        t["live_events"] += r["events"]
        t["hits"] += r["hits"]
        t["pop"] += (r["popularity_hit_rate"] or 0) * r["events"]
    return {v: {"live_events": t["live_events"],
                "live_hit_rate": t["hits"] / t["live_events"] if t["live_events"] else None,
                "live_popularity_hit_rate": t["pop"] / t["live_events"] if t["live_events"] else None}
            for v, t in out.items()}  # fmt: skip

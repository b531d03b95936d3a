"""Model versions as the API lists them: metrics and data counts per version, one version's metadata."""

from __future__ import annotations

from streamrec.errors import NotFound
from streamrec.model_store import ModelStore


class ModelsView:
    def __init__(self, store: ModelStore):
        self.store = store

    def versions(self) -> list[dict]:
        current = self.store.current_version()
        out = []
        for v in reversed(self.store.versions()):  # newest first
            problem = self.store.check(v)
            meta = None if problem else self.store.metadata(v)
            m = meta.metrics if meta else {}
            out.append(
                {
                    "version": v,
                    "current": v == current,
                    "problem": problem,
                    "created_at": meta and meta.created_at,
                    "rmse": m.get("rmse"),
                    "ndcg_at_10": m.get("ndcg_at_10"),
                    "precision_at_10": m.get("precision_at_10"),
                    "popularity_ndcg_at_10": (m.get("popularity") or {}).get("ndcg_at_10"),
                    "ratings": meta and meta.counts.get("ratings"),
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

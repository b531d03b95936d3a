"""A model version's metadata.json as one typed, versioned object.

`metadata.json` stays plain JSON (readable, diffable, `streamrec model show`), but code reads it
through `ModelMetadata`: one place knows the keys, their types and their defaults for versions
written before a key existed, instead of dict lookups spread over the code base.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import ModelStoreError
from .history import HistorySpec

#: 2: the ranking model and the cold-start blend; versions without "format" are 1 and are
#: refused for serving (they predate the ranking model).
FORMAT = 2


@dataclass(frozen=True)
class BaselineParams:
    mean: float = 0.0
    user_reg: float | None = None
    item_reg: float | None = None  # lambda_i of b_i = sum(r - mu)/(lambda_i + n) (item fold-in)


@dataclass(frozen=True)
class RankingMeta:
    rank: int
    reg: float
    alpha: float
    threshold: float


@dataclass(frozen=True)
class ModelMetadata:
    version: str
    format: int
    created_at: str | None
    history: HistorySpec | None  # None only in hand-made stores (tests); `load` refuses them
    reg: float | None  # the explicit model's regParam (the fold-in uses the same one)
    min_support: int
    baseline: BaselineParams | None
    ranking: RankingMeta | None
    blend: dict | None  # cold-start blend weights (streamrec.scorer.Blend.from_dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    newest_event_ts: int | None = None
    files: dict[str, int] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)  # as stored

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelMetadata:
        try:
            params = d.get("params") or {}
            baseline = params.get("baseline")
            ranking = params.get("ranking")
            return cls(
                version=str(d["version"]),
                format=int(d.get("format", FORMAT if ranking else 1)),
                created_at=d.get("created_at"),
                history=HistorySpec.from_dict(d["history"]) if d.get("history") else None,
                reg=float(params["reg"]) if "reg" in params else None,
                min_support=int(params.get("min_support", 1)),
                baseline=BaselineParams(
                    float(baseline.get("mean", 0.0)), baseline.get("user_reg"), baseline.get("item_reg")
                )
                if baseline
                else None,
                ranking=RankingMeta(
                    int(ranking["rank"]),
                    float(ranking["reg"]),
                    float(ranking["alpha"]),
                    float(ranking["threshold"]),
                )
                if ranking
                else None,  # fmt: skip
                blend=d.get("blend"),
                metrics=d.get("metrics") or {},
                counts=d.get("counts") or {},
                newest_event_ts=d.get("newest_event_ts"),
                files=d.get("files") or {},
                raw=d,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelStoreError(f"model {d.get('version', '?')} has malformed metadata: {exc!r}") from None

    def serving_problem(self) -> str | None:
        """Why this version cannot serve, or None."""
        if self.ranking is None:
            return "it predates the ranking model: train a new version (`streamrec train`)"
        if self.reg is None or self.history is None:
            return "its metadata lacks the parameters or the history it was trained on"
        return None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.raw)

    def metric(self, name: str) -> float | None:
        value = self.metrics.get(name)
        return None if value is None else float(value)

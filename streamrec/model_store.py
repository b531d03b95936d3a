"""Versioned model store: <home>/models/<version>/ and an atomically replaced CURRENT.

A version directory holds metadata.json (params, metrics, counts, the history it was trained
on, newest event time), item_factors/ and user_factors/ as Parquet with Spark's id/features
columns, and factors.npz for fast loading (factors, biases, training ratings per item). It is
written under a temporary name and renamed into place, and metadata.json lists every file with
its size, so a partial or damaged version is detected and never selected. content.npz (when
present) maps a movie's content to the ranking model's item factors (streamrec.content).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from .content import ContentMap
from .errors import ModelStoreError
from .foldin import ItemFactors
from .ids import rows as row_index
from .model_meta import FORMAT, ModelMetadata
from .ranking import ImplicitFactors
from .scorer import Blend, Scorer, Users
from .settings import home

NPZ = "factors.npz"
CONTENT_NPZ = "content.npz"  # the content map; versions written before it have none
META = "metadata.json"
PUBLISH_ATTEMPTS = 100  # concurrent publishers racing for the next version name


@dataclass(frozen=True)
class Model:
    """A loaded model version: factors as NumPy arrays plus its metadata."""

    version: str
    path: Path
    meta: ModelMetadata
    items: ItemFactors
    user_ids: np.ndarray
    user_factors: np.ndarray
    user_bias: np.ndarray
    ranking: ImplicitFactors
    rank_user_factors: np.ndarray  # ranking model's user vectors, rows aligned with user_ids
    user_support: np.ndarray  # training ratings per user (the blend's n for a stored vector)
    content: ContentMap | None = None  # content -> ranking item factors; None in older versions

    @property
    def reg(self) -> float:
        return self.meta.reg

    @cached_property
    def scorer(self) -> Scorer:
        return Scorer(self.items, self.ranking, self.reg, Blend.from_dict(self.meta.blend))

    def stored_users(self, user_id: int) -> Users | None:
        """A trained user's stored vectors of both models, None for a user the model has not seen."""
        pos, known = row_index(self.user_ids, [user_id])
        if known[0]:
            s = slice(int(pos[0]), int(pos[0]) + 1)
            return Users(self.user_ids[s], self.rank_user_factors[s], self.user_support[s],
                         self.user_factors[s], self.user_bias[s].astype(np.float64))  # fmt: skip
        return None


class ModelStore:
    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root else home() / "models"

    @property
    def current_file(self) -> Path:
        return self.root / "CURRENT"

    # -- reading --------------------------------------------------------------------------

    def versions(self) -> list[str]:
        """All version directories, oldest first (complete or not), by number: v10000 after v9999."""
        if not self.root.exists():
            return []
        names = [p.name for p in self.root.iterdir() if p.is_dir() and p.name.startswith("v")]
        return sorted(names, key=_version_key)

    def current_version(self) -> str | None:
        try:
            v = self.current_file.read_text().strip()
        except FileNotFoundError:
            return None
        return v or None

    def check(self, version: str) -> str | None:
        """None when the version is complete and intact, else what is wrong with it."""
        path = self.root / version
        try:
            meta = json.loads((path / META).read_text())
        except FileNotFoundError:
            return "metadata.json is missing (incomplete version)"
        except ValueError:
            return "metadata.json is not valid JSON (corrupt version)"
        for rel, size in meta.get("files", {}).items():
            f = path / rel
            if not f.exists():
                return f"{rel} is missing (incomplete version)"
            if f.stat().st_size != size:
                return f"{rel} has {f.stat().st_size} bytes, expected {size} (corrupt version)"
        if NPZ not in meta.get("files", {}):
            return "factors.npz is not recorded (incomplete version)"
        return None

    def metadata(self, version: str) -> ModelMetadata:
        problem = self.check(version)
        if problem:
            raise ModelStoreError(f"model {version} is unusable: {problem}")
        return ModelMetadata.from_dict(json.loads((self.root / version / META).read_text()))

    def load(self, version: str | None = None) -> Model:
        """Load a version (default: CURRENT)."""
        version = version or self.current_version()
        if version is None:
            raise ModelStoreError(f"no model published yet in {self.root}: run `streamrec train` first")
        if not (self.root / version).is_dir():
            raise ModelStoreError(f"model {version} does not exist in {self.root}")
        meta = self.metadata(version)
        baseline, ranking = meta.baseline, meta.ranking
        if problem := meta.serving_problem():
            raise ModelStoreError(f"model {version} cannot serve: {problem}")
        content = None
        if CONTENT_NPZ in meta.files:  # listed, so `check` above has verified its size
            try:
                content = ContentMap.load(self.root / version / CONTENT_NPZ)
            except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
                raise ModelStoreError(
                    f"model {version} is unusable: {CONTENT_NPZ} is unreadable: {exc}"
                ) from None
        with np.load(self.root / version / NPZ) as z:
            items = ItemFactors(
                z["item_ids"],
                z["item_factors"],
                z["item_bias"] if baseline else None,
                baseline.mean if baseline else 0.0,
                baseline.user_reg if baseline else None,
                z["item_support"] if "item_support" in z.files else None,  # older models: none
                meta.min_support,
            )
            return Model(
                version, self.root / version, meta, items,
                z["user_ids"], z["user_factors"], z["user_bias"],
                ImplicitFactors(z["rank_item_factors"], ranking.reg, ranking.alpha, ranking.threshold),
                z["rank_user_factors"], z["user_support"], content,
            )  # fmt: skip

    # -- writing --------------------------------------------------------------------------

    def staging_dir(self) -> Path:
        """A fresh temporary directory (inside the store, so the final rename is atomic)."""
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".tmp-{os.getpid()}-{time.time_ns()}"
        tmp.mkdir()
        return tmp

    @contextlib.contextmanager
    def staging(self) -> Iterator[Path]:
        """A staging directory that is removed again if anything fails before it is published.
        A full disk becomes one clear ModelStoreError; CURRENT never sees a partial version."""
        staged = None
        try:
            staged = self.staging_dir()
            yield staged
        except BaseException as exc:
            if staged is not None:
                shutil.rmtree(staged, ignore_errors=True)
            if disk_full(exc):
                raise ModelStoreError(
                    f"no space left on the device of the model store {self.root}: nothing published, "
                    f"CURRENT is still {self.current_version() or 'unset'}"
                ) from None
            raise

    def publish(self, staged: Path, meta: dict[str, Any], make_current: bool = True) -> str:
        """Seal a staged directory (npz + Parquet already written) as the next version."""
        np_path = staged / NPZ
        if not np_path.exists():
            raise ModelStoreError(f"{staged} has no {NPZ}: nothing to publish")
        files = {
            str(p.relative_to(staged)): p.stat().st_size
            for p in sorted(staged.rglob("*"))
            if p.is_file() and p.name != META
        }
        for attempt in range(PUBLISH_ATTEMPTS):
            version = self._next_version()
            meta = {**meta, "format": FORMAT, "version": version, "files": files}
            (staged / META).write_text(json.dumps(meta, indent=2, default=json_default))
            try:
                os.rename(staged, self.root / version)  # fails if a concurrent publish took it
                break
            except OSError as exc:
                # Only a lost race for the name is worth another try; a full disk, a permission
                # or a cross-device rename would fail forever.
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY) or attempt == PUBLISH_ATTEMPTS - 1:
                    raise ModelStoreError(
                        f"cannot publish {staged.name} as {version} in {self.root}: {exc.strerror or exc}"
                    ) from None
        if make_current:
            self.set_current(version)
        return version

    def set_current(self, version: str) -> None:
        self._point("CURRENT", version)

    def _point(self, name: str, version: str) -> None:
        """Make the pointer file `name` (CURRENT, CANDIDATE) name `version`: written, then renamed."""
        problem = self.check(version)
        if problem:
            raise ModelStoreError(f"model {version} is unusable: {problem}")
        tmp = self.root / f".{name}.{os.getpid()}.{time.time_ns()}"
        try:
            tmp.write_text(version + "\n")
            os.replace(tmp, self.root / name)
        except OSError:
            tmp.unlink(missing_ok=True)
            raise

    # -- the candidate: published, shadow-scored by the stream, never served until promoted -----

    @property
    def candidate_file(self) -> Path:
        return self.root / "CANDIDATE"

    def candidate_version(self) -> str | None:
        """The candidate being shadow-scored (None: none, or it is CURRENT already, or unusable)."""
        try:
            v = self.candidate_file.read_text().strip()
        except FileNotFoundError:
            return None
        if not v or v == self.current_version() or self.check(v):
            return None
        return v

    def set_candidate(self, version: str) -> None:
        if version == self.current_version():
            raise ModelStoreError(f"model {version} is CURRENT already: nothing to shadow-score")
        self._point("CANDIDATE", version)

    def clear_candidate(self) -> str | None:
        """Drop the candidate (the version stays in the store); returns the one dropped."""
        version = self.candidate_version()
        self.candidate_file.unlink(missing_ok=True)
        return version

    def promote(self, version: str) -> None:
        """Make `version` CURRENT (the stream hot-swaps to it); it stops being the candidate."""
        if not (self.root / version).is_dir():
            raise ModelStoreError(f"model {version} does not exist in {self.root}")
        self.set_current(version)
        if self.candidate_file.exists() and self.candidate_file.read_text().strip() == version:
            self.candidate_file.unlink(missing_ok=True)

    def rollback(self, version: str) -> None:
        if not (self.root / version).is_dir():
            raise ModelStoreError(f"model {version} does not exist in {self.root}")
        self.set_current(version)

    def prune(self, keep: int = 5) -> list[str]:
        """Delete all but the newest `keep` versions (never CURRENT nor the candidate), and stale
        temp dirs."""
        kept = {self.current_version(), self.candidate_version()}
        versions = self.versions()
        doomed = [v for v in versions[: max(0, len(versions) - keep)] if v not in kept]
        for v in doomed:
            shutil.rmtree(self.root / v, ignore_errors=True)
        self.clean_staging()
        return doomed

    def clean_staging(self) -> list[str]:
        """Remove staging left by a publisher that died (its pid is gone), whatever its age, and any
        older than an hour (a live process that failed mid-publish, or a reused pid).

        A killed `train` leaves `.tmp-<pid>-<ns>/` behind; a live publisher's is kept. Returns
        the names removed. Called when training starts and after each publish."""
        removed = []
        for tmp in [*self.root.glob(".tmp-*"), *self.root.glob(".CURRENT.*")] if self.root.is_dir() else []:
            parts = tmp.name.replace(".", "-").split("-")
            pid = next((int(p) for p in parts if p.isdigit()), None)
            if pid is None or not _alive(pid) or time.time() - tmp.stat().st_mtime > 3600:
                (shutil.rmtree if tmp.is_dir() else os.remove)(tmp)
                removed.append(tmp.name)
        return removed

    def _next_version(self) -> str:
        numbers = [int(v[1:]) for v in self.versions() if v[1:].isdigit()]
        return f"v{(max(numbers) + 1) if numbers else 1:04d}"


def write_npz(
    path: Path,
    items: ItemFactors,
    user_ids: np.ndarray,
    user_factors: np.ndarray,
    user_bias: np.ndarray,
    rank_item_factors: np.ndarray,
    rank_user_factors: np.ndarray,
    user_support: np.ndarray,
) -> None:
    """The compact copy of a model that the stream and `recommend` load in milliseconds.

    Both models' factors share the item and user id arrays (rows aligned)."""
    extra = {} if items.support is None else {"item_support": np.asarray(items.support, dtype=np.int64)}
    np.savez(
        path,
        **extra,
        item_ids=items.ids.astype(np.int64),
        item_factors=items.factors.astype(np.float32),
        item_bias=(items.bias if items.bias is not None else np.zeros(len(items.ids))),
        user_ids=np.asarray(user_ids, dtype=np.int64),
        user_factors=np.asarray(user_factors, dtype=np.float32),
        user_bias=np.asarray(user_bias, dtype=np.float64),
        rank_item_factors=np.asarray(rank_item_factors, dtype=np.float32),
        rank_user_factors=np.asarray(rank_user_factors, dtype=np.float32),
        user_support=np.asarray(user_support, dtype=np.int64),
    )


def disk_full(exc: BaseException) -> bool:
    """ENOSPC/EDQUOT from Python, or the same reported by the JVM (Spark's Parquet writers)."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return "No space left on device" in str(exc) or "Disk quota exceeded" in str(exc)


def json_default(value: Any) -> Any:
    """json.dumps default= for NumPy scalars and paths."""
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _version_key(name: str) -> tuple[int, int, str]:
    """Sort key: v<number> by number; anything else after them, by name."""
    digits = name[1:]
    return (0, int(digits), name) if digits.isdigit() else (1, 0, name)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True

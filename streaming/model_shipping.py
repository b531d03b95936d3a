"""CURRENT's model, shipped by the driver to every executor: no executor reads the driver's disk.

The driver (`ModelShipper.sync`, polled by the stream's loop) packs a newly published CURRENT
into one tar file and registers it with `SparkContext.addFile`; Spark hands files added while an
application runs to each executor before its next task. The fold-in's tasks (`shipped_store`)
take the newest tar of their stream's scope, unpack it once per executor, and read it as an
ordinary model store. So a hot swap reaches every executor of a cluster, and the model store
stays a directory on the driver's machine. (`addFile` refuses directories outside local mode,
hence one tar rather than the version directory.)
"""

from __future__ import annotations

import atexit
import contextlib
import io
import os
import shutil
import tarfile
import tempfile
import time
import uuid
from pathlib import Path

from streamrec import logs
from streamrec.model_store import ModelStore

PREFIX = "streamrec-model"
LOG = logs.get("stream")


class ModelShipper:
    """Driver side: ships CURRENT whenever it changes (call `sync` often; it is cheap)."""

    def __init__(self, sc, store: ModelStore, candidate: bool = False, scope: str | None = None):
        self.sc, self.store = sc, store
        # this stream's files only (a session may run several); the candidate's beside CURRENT's
        self.scope = (scope or uuid.uuid4().hex[:12]) + ("c" if candidate else "")
        self.candidate = candidate  # ship the candidate under shadow scoring instead of CURRENT
        self.staging = _staging()
        self.shipped: str | None = None

    def sync(self) -> str | None:
        """Ship CURRENT (or the candidate) if it is new and complete; returns the version shipped
        now, else None. A candidate that goes away ships an empty store (executors drop it)."""
        version = self.store.candidate_version() if self.candidate else self.store.current_version()
        if self.candidate and version is None and self.shipped not in (None, ""):
            self._ship(None)
            self.shipped = ""
            return None
        if version is None or version == self.shipped or self.store.check(version):
            return None
        self._ship(version)
        if self.shipped:
            LOG.info(f"model {version} shipped to the executors (was {self.shipped})")
        self.shipped = version
        return version

    def _ship(self, version: str | None) -> None:
        self.staging.mkdir(parents=True, exist_ok=True)
        path = self.staging / f"{PREFIX}-{self.scope}-{time.time_ns()}.tar"
        with tarfile.open(path, "w") as tar:  # npz is compressed already
            if version is not None:
                tar.add(self.store.root / version, arcname=version)
            current = f"{version or ''}\n".encode()
            info = tarfile.TarInfo("CURRENT")
            info.size = len(current)
            tar.addfile(info, io.BytesIO(current))
        self.sc.addFile(str(path))


_STAGING: list[Path] = []


def _staging() -> Path:
    """One directory per driver process, removed at its exit and not before: Spark re-fetches
    every file ever added (a new executor, even a new local task set, checks them all against
    their source), so a shipped tar must outlive the stream that shipped it."""
    if not _STAGING:
        _STAGING.append(Path(tempfile.mkdtemp(prefix="streamrec-ship-")))
        atexit.register(shutil.rmtree, _STAGING[0], True)
    return _STAGING[0]


def shipped_store(scope: str) -> ModelStore | None:
    """Executor side: the newest model shipped for `scope`, unpacked locally; None before any."""
    from pyspark import SparkFiles

    try:
        root = Path(SparkFiles.getRootDirectory())
    except AssertionError:  # the driver-side worker that only reads the processor's state schema
        return None
    prefix = f"{PREFIX}-{scope}-"
    tars = [p for p in root.glob(f"{prefix}*.tar") if p.name[len(prefix) : -4].isdigit()]
    if not tars:
        return None
    newest = max(tars, key=lambda p: int(p.name[len(prefix) : -4]))
    target = newest.with_suffix(".d")
    if not target.exists():
        # Python workers of one executor may race here: unpack aside, then one atomic rename wins.
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=".unpack-"))
        with tarfile.open(newest) as tar:
            tar.extractall(tmp, filter="data")
        try:
            os.rename(tmp, target)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
    with contextlib.suppress(OSError):
        for old in root.glob(f"{prefix}*.d"):  # earlier versions of this stream: no longer read
            if old != target and time.time() - old.stat().st_mtime > 600:
                shutil.rmtree(old, ignore_errors=True)
    return ModelStore(target)

"""Readiness: the model is loaded, the sink answers, the broker accepts a connection."""

from __future__ import annotations

import socket
from typing import Any

from streamrec.errors import ModelStoreError

from .lists import Lists
from .sink_reads import SinkReads


class Readiness:
    def __init__(self, lists: Lists, reads: SinkReads, bootstrap: str | None):
        self.lists = lists
        self.reads = reads
        self.bootstrap = bootstrap

    def check(self) -> dict:
        checks: dict[str, Any] = {}
        try:
            checks["model"] = {"ok": True, "version": self.lists.current().model.version}
        except ModelStoreError as exc:
            checks["model"] = {"ok": False, "error": str(exc)}
        try:
            self.reads.sink().query("SELECT 1")
            checks["sink"] = {"ok": True}
        except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
            checks["sink"] = {"ok": False, "error": f"{type(exc).__name__}: {str(exc)[:200]}"}
        checks["broker"] = self.broker_check()
        return {"ready": all(c["ok"] for c in checks.values()), "checks": checks}

    def broker_check(self) -> dict:
        if self.bootstrap is None:
            return {"ok": False, "error": "no Kafka configured"}
        if broker_reachable(self.bootstrap):
            return {"ok": True, "bootstrap": self.bootstrap}
        return {"ok": False, "error": f"no broker answers at {self.bootstrap}"}


def broker_reachable(bootstrap: str, timeout: float = 1.0) -> bool:
    """A TCP connection to one of the bootstrap addresses: a closed port answers at once, so a
    client need not be built (kafka-python's waits for its bootstrap timeout)."""
    for addr in bootstrap.split(","):
        host, _, port = addr.strip().rpartition(":")
        try:
            with socket.create_connection((host or "localhost", int(port)), timeout=timeout):
                return True
        except (OSError, ValueError):
            continue
    return False

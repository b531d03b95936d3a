"""API keys: a file of hashed secrets with a name, scopes and creation time (`streamrec apikey`), and
the server's view of it (who sent this bearer token, may they do this).

A secret is `sr_` + 32 random bytes (secrets.token_urlsafe(32): 256 bits). It is shown once and
stored as its SHA-256. A slow KDF (scrypt, PBKDF2) protects low-entropy passwords against guessing
from a stolen hash; a 256-bit random secret cannot be guessed either way, so a plain hash is as
safe here, and it keeps the check per request in microseconds (scrypt would add tens of ms to
every authenticated request, on a path that serves thousands a second). Hashes are compared with
`hmac.compare_digest`, against every stored key, so the time does not depend on which matched.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from streamrec.errors import StreamrecError

SCOPES = ("read", "write", "admin")
PREFIX = "sr_"
FILE_NAME = "api_keys.json"
RELOAD_S = 1.0  # a revoked key stops working within this long, without a restart


def default_path() -> Path:
    from streamrec.settings import home

    return home() / FILE_NAME


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ApiKey:
    name: str
    scopes: tuple[str, ...]
    created_at: float  # epoch seconds
    sha256: str  # of the secret; the secret itself is never stored

    def to_dict(self) -> dict:
        return {**asdict(self), "scopes": list(self.scopes)}


def parse_scopes(text: str) -> tuple[str, ...]:
    scopes = tuple(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        raise ValueError(f"scopes are a comma-separated subset of {','.join(SCOPES)}, got {text!r}")
    return scopes


class KeyStore:
    """The key file: JSON `{"keys": [{name, scopes, created_at, sha256}]}`, mode 0600, replaced
    atomically (written aside, renamed)."""

    def __init__(self, path: Path | None = None):
        self.path = Path(path) if path is not None else default_path()

    def keys(self) -> list[ApiKey]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            raise StreamrecError(f"API key file {self.path} is unreadable: {exc}") from None
        return [
            ApiKey(k["name"], tuple(k["scopes"]), float(k["created_at"]), k["sha256"])
            for k in data.get("keys", [])
        ]

    def create(self, name: str, scopes: tuple[str, ...]) -> str:
        """A new key's secret (returned once; only its hash is written)."""
        name = name.strip()
        if not name or len(name) > 64 or any(c.isspace() for c in name):
            raise StreamrecError("a key name is 1-64 characters without spaces")
        keys = self.keys()
        if any(k.name == name for k in keys):
            raise StreamrecError(f"an API key named {name!r} exists: revoke it first or pick another name")
        secret = PREFIX + secrets.token_urlsafe(32)
        self._write([*keys, ApiKey(name, tuple(scopes), round(time.time(), 3), digest(secret))])
        return secret

    def revoke(self, name: str) -> None:
        keys = self.keys()
        if not any(k.name == name for k in keys):
            raise StreamrecError(f"no API key named {name!r} in {self.path}")
        self._write([k for k in keys if k.name != name])

    def _write(self, keys: list[ApiKey]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"keys": [k.to_dict() for k in keys]}, f, indent=2)
            f.write("\n")
        os.chmod(tmp, 0o600)  # whatever the umask
        os.replace(tmp, self.path)


class Authenticator:
    """The server's view of a key file, re-read when it changes (checked at most once a second)."""

    def __init__(self, store: KeyStore | None):
        self.store = store  # None: auth off
        self._keys: list[ApiKey] = store.keys() if store else []
        self._stamp = self._file_stamp()
        self._checked = time.monotonic()
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.store is not None

    def _file_stamp(self):
        try:
            st = self.store.path.stat() if self.store else None
        except FileNotFoundError:
            return None
        return st and (st.st_mtime_ns, st.st_size, st.st_ino)

    def _current(self) -> list[ApiKey]:
        if time.monotonic() - self._checked >= RELOAD_S:
            with self._lock:
                stamp = self._file_stamp()
                if stamp != self._stamp:
                    try:
                        self._keys = self.store.keys()
                        self._stamp = stamp
                    except StreamrecError:
                        pass  # being replaced: keep the keys we have, look again soon
                self._checked = time.monotonic()
        return self._keys

    def identify(self, secret: str | None) -> ApiKey | None:
        """The key whose secret this is, or None. Every stored hash is compared, in constant time."""
        if not secret:
            return None
        presented = digest(secret)
        found = None
        for key in self._current():
            if hmac.compare_digest(presented, key.sha256):
                found = key
        return found

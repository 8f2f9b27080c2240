"""API keys: shown once when created, stored only as SHA-256 hashes with their name, scopes and rate in a JSON file."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from features.tables.store import write_json

SCOPES = ("storefront", "crm", "admin")
KEY_PREFIX = "patron_"
KEY_BYTES = 32  # 256 bits of randomness: a plain SHA-256 of the key cannot be brute-forced


@dataclass(frozen=True)
class ApiKey:
    """One key as stored: never the key itself, only its hash."""

    name: str
    sha256: str
    scopes: tuple[str, ...]
    created_at: str
    rate_per_s: float | None = None  # None: the config's auth.rate_per_s


def hash_key(key: str) -> str:
    """The stored form of a key."""
    return hashlib.sha256(key.encode()).hexdigest()


def parse_scopes(text: str | list[str]) -> tuple[str, ...]:
    """Scopes from 'storefront,crm' (or a list); an unknown or missing scope is a ValueError naming it."""
    items = text.split(",") if isinstance(text, str) else text
    scopes = tuple(dict.fromkeys(s.strip() for s in items if s.strip()))
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        raise ValueError(f"scopes: expected one or more of {', '.join(SCOPES)}, got {','.join(unknown) or 'none'}")
    return scopes


def read_keys(path: Path) -> list[ApiKey]:
    """The keys in `path` (none when it does not exist); a malformed file is a ValueError naming it."""
    if not path.exists():
        return []
    try:
        rows = json.loads(path.read_text())["keys"]
        return [
            ApiKey(
                name=r["name"],
                sha256=r["sha256"],
                scopes=parse_scopes(r["scopes"]),
                created_at=r.get("created_at", ""),
                rate_per_s=r.get("rate_per_s"),
            )
            for r in rows
        ]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a valid API keys file ({type(exc).__name__}: {exc})") from exc


def write_keys(path: Path, keys: list[ApiKey]) -> None:
    """Replace the keys file atomically (readers see the old file or the new one; mode 0600)."""
    write_json({"keys": [asdict(key) for key in keys]}, path)


def create_key(
    path: Path, name: str, scopes: str | list[str], rate_per_s: float | None = None, replace: bool = False
) -> str:
    """Add a new random key named `name` and return it (the only time it is shown)."""
    key = KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)
    add_key(path, name, key, scopes, rate_per_s, replace)
    return key


def add_key(
    path: Path, name: str, key: str, scopes: str | list[str], rate_per_s: float | None = None, replace: bool = False
) -> None:
    """Store the hash of `key` under `name`; `replace` swaps a key of that name, else a duplicate name is an error."""
    if not name.strip():
        raise ValueError("name: must not be empty")
    if rate_per_s is not None and rate_per_s <= 0:
        raise ValueError(f"rate: must be above 0 requests/s, got {rate_per_s}")
    keys = read_keys(path)
    if not replace and any(k.name == name for k in keys):
        raise ValueError(f"name: a key named {name!r} exists already (revoke it first)")
    entry = ApiKey(
        name=name,
        sha256=hash_key(key),
        scopes=parse_scopes(scopes),
        rate_per_s=rate_per_s,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    write_keys(path, [k for k in keys if k.name != name] + [entry])


def revoke_key(path: Path, name: str) -> bool:
    """Remove the key named `name`; False when there is none."""
    keys = read_keys(path)
    kept = [k for k in keys if k.name != name]
    if len(kept) == len(keys):
        return False
    write_keys(path, kept)
    return True


class KeyRing:
    """The keys of a file as the service sees them, re-read when the file changes (rotation needs no restart)."""

    def __init__(self, path: Path, check_s: float, on_error: Callable[[str], None] = lambda _: None) -> None:
        self.path = path
        self.check_s = check_s
        self.on_error = on_error
        self._keys: list[ApiKey] = []
        self._signature: tuple | None = None
        self._checked = float("-inf")
        self._lock = threading.Lock()

    def keys(self) -> list[ApiKey]:
        """The keys now; the file is looked at no more often than `check_s` seconds."""
        now = time.monotonic()
        if now - self._checked >= self.check_s:
            with self._lock:
                self._checked = now
                self._refresh()
        return self._keys

    def _refresh(self) -> None:
        try:
            st = self.path.stat()
            signature = (st.st_ino, st.st_mtime_ns, st.st_size)  # a rename-over changes the inode
        except FileNotFoundError:
            signature = None
        if signature == self._signature:
            return
        try:
            self._keys = read_keys(self.path)
        except ValueError as exc:  # a broken file keeps the keys in force; atomic writes make this rare
            self.on_error(str(exc))
        self._signature = signature

    def match(self, presented: str) -> ApiKey | None:
        """The key whose hash matches `presented`, compared in constant time against every stored hash."""
        digest = hash_key(presented)
        found = None
        for key in self.keys():
            if hmac.compare_digest(digest, key.sha256):
                found = key
        return found

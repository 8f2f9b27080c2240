"""Pseudonymous customer ids: a keyed SHA-256 under a workspace salt, for the erasure log and for log lines."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from functools import lru_cache
from pathlib import Path

from patron.config import Settings


def salt_path(settings: Settings) -> Path:
    """Where the workspace's salt lives (`privacy.salt_path`, default WORKSPACE/privacy/salt)."""
    return settings.privacy.salt_path or settings.workspace / "privacy" / "salt"


@lru_cache(maxsize=8)
def _salt(path: Path, size: int) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:  # O_EXCL: of several processes starting at once, one creates the salt and the others read it
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        data = path.read_bytes()
        if not data:
            raise RuntimeError(f"{path}: the privacy salt is empty (a creation was interrupted); restore it") from exc
        return data
    data = secrets.token_bytes(size)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return data


def workspace_salt(settings: Settings) -> bytes:
    """The workspace's secret salt, created on first use and never changed afterwards."""
    return _salt(salt_path(settings).resolve(), settings.privacy.salt_bytes)


def customer_key(settings: Settings, customer_id: str) -> str:
    """HMAC-SHA256 of a customer id under the workspace salt (hex): what the erasure log keeps."""
    return hmac.new(workspace_salt(settings), str(customer_id).encode(), hashlib.sha256).hexdigest()


def log_id(settings: Settings, customer_id: str) -> str:
    """How a log line names a customer: the first `privacy.log_id_chars` characters of its salted hash."""
    return "cust:" + customer_key(settings, customer_id)[: settings.privacy.log_id_chars]

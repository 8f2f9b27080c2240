"""Opens the online store the settings name (`online.backend`): SQLite on one machine, Redis shared by several."""

from __future__ import annotations

from patron.config import Settings
from serving.online.redis_store import RedisStore
from serving.online.sqlite_store import SqliteStore
from serving.online.store import OnlineStore


def open_store(settings: Settings) -> OnlineStore:
    """The configured online store (`online.backend`)."""
    if settings.online.backend == "redis":
        return RedisStore(settings.online.redis_url, settings.online.redis_prefix, settings.online.redis_require_fsync)
    return SqliteStore(
        settings.online_db,
        settings.online.sqlite_synchronous,
        checkpoint_s=settings.online.sqlite_checkpoint_s,
        wal_restart_mb=settings.online.sqlite_wal_restart_mb,
    )

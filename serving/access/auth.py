"""Access control as ASGI middleware: API key, scope, rate and body size are checked before any handler runs.

ROUTE_SCOPES is the one map from routes to scopes; a route not in it needs `admin` (deny by default), and only the
PUBLIC_PATHS (health, metrics, the OpenAPI document and its UI, the dashboard's login form) are open.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse

from patron.config import Settings
from serving.access.api_keys import SCOPES, ApiKey, KeyRing
from serving.access.client_errors import KEY_NAME
from serving.access.limits import BodyTooLarge, TokenBuckets, declared_length, read_capped

logger = logging.getLogger("bentoml.patron")

# A pattern ending in "/*" covers everything under that path; other patterns are exact paths.
PUBLIC_PATHS = ("/livez", "/readyz", "/healthz", "/metrics", "/docs.json", "/", "/static_content/*", "/dashboard/login")
ROUTE_SCOPES = (
    ("/recommend", "storefront"),
    ("/similar_items", "storefront"),
    ("/events", "storefront"),
    ("/churn", "crm"),
    ("/retention/plan", "crm"),
    ("/campaigns", "crm"),
    ("/campaigns/*", "crm"),
    ("/alerts", "crm"),
    ("/dashboard", "crm"),
    ("/dashboard/*", "crm"),
    ("/items/stock", "admin"),
    ("/rules", "admin"),
    ("/rules/*", "admin"),
    ("/reload", "admin"),
    ("/status", "admin"),
    ("/admin/*", "admin"),
)
DEFAULT_SCOPE = "admin"
COOKIE = "patron_api_key"
HOW_TO_SEND = "send it as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"


def _matches(path: str, pattern: str) -> bool:
    return path.startswith(pattern[:-1]) if pattern.endswith("/*") else path == pattern


def is_public(path: str) -> bool:
    """Whether `path` is open without a key."""
    return ".." not in path and any(_matches(path, p) for p in PUBLIC_PATHS)


def required_scope(path: str) -> str:
    """The scope a request to `path` needs; `admin` for any path not in ROUTE_SCOPES or with dot segments."""
    path = path.rstrip("/") or "/"
    if ".." in path or "//" in path:
        return DEFAULT_SCOPE
    return next((scope for pattern, scope in ROUTE_SCOPES if _matches(path, pattern)), DEFAULT_SCOPE)


def presented_key(conn: HTTPConnection) -> str | None:
    """The key from 'Authorization: Bearer', 'X-API-Key' or the dashboard's cookie, in that order; '' if malformed."""
    auth = conn.headers.get("authorization")
    if auth is not None:
        scheme, _, value = auth.partition(" ")
        return value.strip() if scheme.lower() == "bearer" else ""
    return conn.headers.get("x-api-key") or conn.cookies.get(COOKIE)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class AccessControl:
    """ASGI middleware: 401 without a valid key, 403 without the route's scope, 429 over the key's rate, 413 over
    the body size; all before the handler, so a refusal never depends on (or reveals) what the request asks for."""

    def __init__(self, app: Any, settings: Settings) -> None:
        self.app = app
        self.auth = settings.auth
        self.workers = settings.serving.workers
        self.keys = KeyRing(
            settings.api_keys_file,
            settings.auth.reload_check_s,
            on_error=lambda msg: logger.warning("API keys file rejected, keys kept: %s", msg),
        )
        self.buckets = TokenBuckets()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or is_public(scope["path"]):
            return await self.app(scope, receive, send)
        conn = HTTPConnection(scope)
        refusal = self._refusal(conn)
        if refusal is None:
            try:
                if declared_length(conn.headers, self.auth.max_body_bytes) is None:
                    receive = await read_capped(receive, self.auth.max_body_bytes)
            except BodyTooLarge as exc:
                refusal = _error(413, f"{exc} (auth.max_body_bytes)")
            except ValueError as exc:
                refusal = _error(400, str(exc))
        if refusal is not None:
            return await refusal(scope, receive, send)
        return await self.app(scope, receive, send)

    def _refusal(self, conn: HTTPConnection) -> JSONResponse | None:
        needed = required_scope(conn.url.path)
        route = f"{conn.scope.get('method', 'GET')} {conn.url.path}"
        presented = presented_key(conn)
        keys = self.keys.keys()
        challenge = {"WWW-Authenticate": 'Bearer realm="patron"'}
        if not keys:
            return _error(
                401,
                "no API keys are configured on this server: an operator creates one with "
                "`patron keys create --name NAME --scopes " + ",".join(SCOPES) + "`",
                challenge,
            )
        if presented is None:
            return _error(401, f"missing API key: {HOW_TO_SEND}", challenge)
        key = self.keys.match(presented) if presented else None
        if key is None:
            what = (
                "malformed Authorization header (expected 'Bearer <key>')"
                if presented == ""
                else "invalid API key (unknown or revoked)"
            )
            return _error(401, f"{what}: {HOW_TO_SEND}", challenge)
        conn.scope.setdefault("state", {})[KEY_NAME] = key.name  # for the client-error log line
        if needed not in key.scopes:
            return _error(
                403,
                f"API key {key.name!r} lacks the scope {needed!r} needed for {route} (it has: {', '.join(key.scopes)})",
            )
        return self._over_rate(key)

    def _over_rate(self, key: ApiKey) -> JSONResponse | None:
        rate = (key.rate_per_s or self.auth.rate_per_s) / self.workers  # each worker keeps its own buckets
        wait = self.buckets.take(key.name, rate, max(1.0, rate * self.auth.burst_s))
        if wait <= 0:
            return None
        retry = max(1, math.ceil(wait))
        return _error(
            429,
            f"rate limit of {key.rate_per_s or self.auth.rate_per_s:g} requests/s for API key "
            f"{key.name!r} exceeded: retry after {retry} s",
            {"Retry-After": str(retry)},
        )

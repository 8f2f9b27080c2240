"""Which request bodies the service reads: JSON in UTF-8 on every API, a form on the dashboard's login. Anything else is
refused before a handler parses it: 415 for another media type or charset, 400 for a multipart form without its
boundary (BentoML would otherwise hand it to its multipart parser and answer 500)."""

from __future__ import annotations

from typing import Any

from starlette.datastructures import Headers
from starlette.responses import JSONResponse

JSON = "application/json"
FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")
FORM_ROUTES = ("/dashboard/login",)  # the one route that takes a form; every other body is JSON
BODY_METHODS = ("POST", "PUT", "PATCH")


def _parse(header: str) -> tuple[str, dict[str, str]]:
    """A Content-Type header as its media type (lower case) and its parameters."""
    media, *params = header.split(";")
    options = {}
    for param in params:
        name, _, value = param.partition("=")
        options[name.strip().lower()] = value.strip().strip('"')
    return media.strip().lower(), options


def content_type_problem(method: str, path: str, header: str | None) -> tuple[int, str] | None:
    """(status, message naming the problem) when a request's Content-Type is not what `path` reads, else None; a body
    sent without a Content-Type is read as JSON."""
    if method not in BODY_METHODS or header is None:
        return None
    media, options = _parse(header)
    if path in FORM_ROUTES:
        if media not in FORMS:
            return 415, f"Content-Type: {path} takes a form ({' or '.join(FORMS)}), got {media or header!r}"
        if media == "multipart/form-data" and not options.get("boundary"):
            return 400, "Content-Type: multipart/form-data needs its boundary parameter"
        return None
    if media != JSON:
        return 415, f"Content-Type: the body must be {JSON}, got {media or header!r}"
    charset = options.get("charset")
    if charset is not None and charset.lower() not in ("utf-8", "utf8"):
        return 415, f"Content-Type: a JSON body must be UTF-8, got charset={charset!r}"
    return None


class ContentTypeGuard:
    """ASGI middleware: refuses a body of a media type or charset the route does not read, before any handler."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            header = Headers(scope=scope).get("content-type")
            problem = content_type_problem(scope.get("method", "GET"), scope["path"], header)
            if problem is not None:
                status, message = problem
                return await JSONResponse({"error": message}, status_code=status)(scope, receive, send)
        return await self.app(scope, receive, send)

"""The OpenAPI document says what the service enforces, no less: BentoML generates it from the request models but
leaves out what they cannot say (a body is required; /events needs at least one row; the offer types a plan takes;
the dashboard's filter values), so GET /docs.json is completed on its way out. And a method a path does not take is a
405 whose Allow header lists every method the path does take (Starlette names only its first route's), and a query
parameter a route does not declare is refused (a typo such as `?limt=5` must not be silently ignored)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from features.pit.segments import LIFECYCLE_STAGES
from patron.config import Settings

SCHEMA_PATH = "/docs.json"  # where BentoML serves the document
AT_LEAST_ONE = {"/events": ("events", "tickets", "surveys")}  # bodies that need one of these lists non-empty


def complete_document(doc: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """`doc` with what the service enforces beyond BentoML's generated schemas."""
    for path, item in doc.get("paths", {}).items():
        for operation in item.values():
            body = operation.get("requestBody") if isinstance(operation, dict) else None
            schema = (body or {}).get("content", {}).get("application/json", {}).get("schema", {})
            if path in AT_LEAST_ONE:
                schema["anyOf"] = [{"required": [k], "properties": {k: {"minItems": 1}}} for k in AT_LEAST_ONE[path]]
                schema["description"] = "At least one of " + ", ".join(AT_LEAST_ONE[path]) + " is non-empty."
            if body is not None and (schema.get("required") or "anyOf" in schema):
                body["required"] = True  # an empty body is refused: the document must not call it valid
    offer = doc.get("components", {}).get("schemas", {}).get("RetentionOffer", {}).get("properties", {})
    if "offer_type" in offer:
        offer["offer_type"]["enum"] = sorted(settings.retention.offers)
    for param in doc.get("paths", {}).get("/dashboard", {}).get("get", {}).get("parameters", []):
        values = {"segment": list(LIFECYCLE_STAGES), "tier": sorted(settings.churn.risk_tiers)}.get(param["name"])
        if values is not None:
            param["schema"]["enum"] = ["", *values]  # "": no filter
    return doc


class OpenAPIDocument:
    """ASGI middleware: GET /docs.json as BentoML generates it, completed by `complete_document`."""

    def __init__(self, app: Any, settings: Settings) -> None:
        self.app, self.settings = app, settings

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != SCHEMA_PATH:
            return await self.app(scope, receive, send)
        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def keep(message: dict) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, keep)
        body = b"".join(chunks)
        if start.get("status") == 200:
            body = json.dumps(complete_document(json.loads(body), self.settings)).encode()
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        await send({**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def _methods(routes: list, path: str) -> set[str]:
    """The methods of every route in `routes` (included routers walked) whose path pattern matches `path`."""
    found: set[str] = set()
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            found |= _methods(inner.routes, path)
        elif getattr(route, "path_regex", None) is not None and route.path_regex.match(path):
            found |= set(getattr(route, "methods", None) or ())
    return found


def allow_every_method(app: FastAPI) -> None:
    """Make `app`'s 405 answers list in Allow the methods of every route on the path."""

    async def handler(request: Request, exc: HTTPException):
        if exc.status_code == 405:
            methods = _methods(app.routes, request.url.path)
            exc.headers = {**(exc.headers or {}), "Allow": ", ".join(sorted(methods))}
        return await http_exception_handler(request, exc)

    app.add_exception_handler(HTTPException, handler)


def known_query_parameters(request: Request) -> None:
    """A FastAPI dependency: 422 naming the first query parameter the route does not declare."""
    route = request.scope.get("route")
    declared = {p.alias for p in route.dependant.query_params} - {"self"} if route is not None else set()
    unknown = [name for name in request.query_params if name not in declared]
    if unknown:
        takes = ", ".join(sorted(declared)) or "none"
        raise RequestValidationError(
            [
                {
                    "type": "extra_forbidden",
                    "loc": ("query", unknown[0]),
                    "msg": f"unknown query parameter (takes: {takes})",
                }
            ]
        )

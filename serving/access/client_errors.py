"""Client errors in the server log: one INFO line per 4xx answer (route, status, the field at fault, the API key's
name; never a body or a customer id), and no ERROR with a traceback for them. BentoML logs every refused request at
ERROR with its traceback (`Exception on /churn [POST]`); that stays for server faults (5xx) only."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from bentoml.exceptions import BentoMLException
from pydantic import ValidationError

logger = logging.getLogger("bentoml.patron")
BENTOML_REQUEST_LOGGER = "bentoml._internal.server.http_app"  # where BentoML's `log_exception` writes
KEY_NAME = "patron_api_key_name"  # scope["state"] entry set by the access control once a key is matched
MAX_BODY = 4096  # bytes of a 4xx answer read for its field
_FIELD = re.compile(r"\s*([A-Za-z_][\w.\[\]-]{0,60}):")
# Routes whose path carries an identifier: logged by their template.
_TEMPLATES = (("/dashboard/customer/", "/dashboard/customer/{customer_id}"),)


def is_client_error(exc: BaseException | None) -> bool:
    """Whether a handler's exception is answered with a 4xx (invalid input, or a BentoML error below 500)."""
    if isinstance(exc, ValidationError):
        return True
    return isinstance(exc, BentoMLException) and int(exc.error_code) < 500


class WithoutClientErrorTracebacks(logging.Filter):
    """Drops BentoML's ERROR record (with traceback) of a request refused with a 4xx."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and is_client_error(record.exc_info[1]))


_FILTER = WithoutClientErrorTracebacks()


def quiet_client_error_tracebacks() -> None:
    """Install the filter on BentoML's request logger (once per process)."""
    logging.getLogger(BENTOML_REQUEST_LOGGER).addFilter(_FILTER)


def route_of(path: str) -> str:
    """The path as logged: identifiers in it replaced by their parameter's name."""
    return next((template for prefix, template in _TEMPLATES if path.startswith(prefix)), path)


def field_of(body: bytes) -> str:
    """The field an error answer names: the first validation error's location, else the `field:` its message starts
    with; '-' when it names none."""
    try:
        data = json.loads(body)
    except ValueError:
        return "-"
    if isinstance(data, list) and data:
        data = data[0]
    if not isinstance(data, dict):
        return "-"
    detail = data.get("detail")
    if isinstance(detail, list) and detail and isinstance(detail[0], dict) and "loc" in detail[0]:
        loc = [str(p)[:60] for p in detail[0]["loc"] if p not in ("body", "query", "path", "header")]
        if loc:
            return ".".join(loc)
        data = {"error": str(detail[0].get("msg", "")).removeprefix("Value error, ")}  # a rule over the whole body
    match = _FIELD.match(str(data.get("error", "")))
    return match.group(1) if match else "-"


class ClientErrorLog:
    """ASGI middleware (outermost): logs each 4xx answer as one INFO line."""

    def __init__(self, app: Any) -> None:
        self.app = app
        quiet_client_error_tracebacks()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status, body = 0, bytearray()
        state = scope.setdefault("state", {})  # shared with the access control below, which names the key

        async def watched(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and 400 <= status < 500 and len(body) < MAX_BODY:
                body.extend(message.get("body", b"")[: MAX_BODY - len(body)])
            await send(message)

        await self.app(scope, receive, watched)
        if 400 <= status < 500:
            logger.info(
                "client error: %s %s %d field=%s key=%s",
                scope.get("method", "GET"),
                route_of(scope["path"]),
                status,
                field_of(bytes(body)),
                state.get(KEY_NAME, "-"),
            )

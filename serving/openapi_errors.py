"""The error answers the service declares in its OpenAPI document, in the shapes it really sends.

BentoML declares 400, 404 and 500 for every API with `detail` as a string and the body as one object, but a
validation error's `detail` is pydantic's list of errors and an error raised in a handler comes back as a one-element
list `[{"error": ...}]`; the access control (serving/access/auth.py) answers 401, 403, 413 and 429, and a model or
store that is not there yet 503. Declaring them all keeps the document true (schemathesis checks every answer against
it).
"""

from __future__ import annotations

from typing import Any

# One error body: a message, and for validation errors pydantic's details.
_ERROR_OBJECT = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string", "title": "Message"}, "detail": {"title": "Error Detail"}},
}
ERROR_BODY = {"anyOf": [_ERROR_OBJECT, {"type": "array", "items": _ERROR_OBJECT, "minItems": 1}]}
ERROR_STATUSES = {
    400: "Bad request: the message (and `detail`, for validation errors) names the field",
    401: "Missing, malformed or unknown API key",
    403: "The API key lacks the scope this route needs",
    404: "Not found (e.g. an unknown item)",
    413: "Request body larger than auth.max_body_bytes",
    415: "A body of a media type or charset the route does not read (JSON in UTF-8; the login form: a form)",
    429: "Over the API key's rate limit; Retry-After says when to retry",
    500: "Internal server error (a bug: never expected)",
    503: "Not ready yet, or a model or the online store it needs is unavailable; the message says which",
}


def error_responses(plain_text_404: bool = False, html_400: bool = False) -> dict[int, dict[str, Any]]:
    """OpenAPI `responses` entries for every error status the service may answer, as plain dicts (FastAPI routes);
    `plain_text_404`: a path Starlette cannot route also answers its own plain-text 404; `html_400`: a form's 400 is
    the form again, as HTML."""
    responses = {
        status: {"description": text, "content": {"application/json": {"schema": ERROR_BODY}}}
        for status, text in ERROR_STATUSES.items()
    }
    if plain_text_404:
        responses[404]["content"]["text/plain"] = {"schema": {"type": "string"}}
    if html_400:
        responses[400]["content"]["text/html"] = {"schema": {"type": "string"}}
    return responses


def declare_error_responses() -> None:
    """Make BentoML declare `error_responses()` on every API it generates (its own table, read at each request
    for /docs.json)."""
    from _bentoml_sdk.service import openapi as bentoml_openapi
    from bentoml._internal.service.openapi.specification import MediaType, Response, Schema
    from bentoml._internal.utils.cattr import bentoml_cattr

    schema = bentoml_cattr.structure(ERROR_BODY, Schema)
    bentoml_openapi.error_responses.clear()
    bentoml_openapi.error_responses.update(
        {
            status: Response(description=text, content={"application/json": MediaType(schema=schema)})
            for status, text in ERROR_STATUSES.items()
        }
    )

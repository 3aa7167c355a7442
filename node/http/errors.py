"""HTTP error responses: every error is JSON `{"error": {"code", "message"}}` with a 4xx status.

API-level codes beside those of R12 (docs/api.md): `not_found` (unknown route, block,
transaction), `invalid_query` (a path or query parameter that does not parse),
`body_too_large` (413), `unsupported_media_type` (415), `method_not_allowed` (405),
`request_timeout` (408: headers or body not sent in time; the connection is closed),
`rate_limited` (429, with `Retry-After` when waiting helps), `pruned` (410: data this node
no longer keeps or, after state sync, never had; R40), `syncing` (503, with `Retry-After`: the
node is joining by state sync and has no state to read yet; node/http/state_sync_gate.py)
and, for a node bug only, `internal` (500). A 405 answer carries an `Allow` header listing the methods its path supports.
"""

from __future__ import annotations

import json
import logging
from typing import TypeVar

from aiohttp import web

from marketplace_tx.primitives.errors import MarketchainError

log = logging.getLogger("marketchain.http")

MAX_BODY_KEY = web.AppKey("max_body_bytes", int)
"""Application key holding the request body limit, for the 413 message."""


class ApiError(Exception):
    """An error to return to the client with a status and stable code."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        """HTTP status (4xx)."""
        self.code = code
        """Stable error code."""
        self.message = message
        """What went wrong, naming the parameter or field."""
        self.headers = headers or {}
        """Headers of the answer (`Retry-After` of a 429)."""


Record = TypeVar("Record")


def found(record: Record | None, what: str) -> Record:
    """`record`, or the 404 `not_found` answer "no WHAT" when it does not exist."""
    if record is None:
        raise ApiError(404, "not_found", f"no {what}")
    return record


def pruned(message: str) -> ApiError:
    """The 410 `pruned` answer (R40): `message` says what is asked and what the node keeps
    (node/pruning.py `kept_blocks_message`), never a wrong or empty answer."""
    return ApiError(410, "pruned", message)


def error_response(status: int, code: str, message: str) -> web.Response:
    """A JSON error response."""
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


async def allowed_methods(request: web.Request) -> set[str]:
    """The methods of the route that serves `request`'s path, for the `Allow` header of a 405
    answer (RFC 9110 §15.5.6). Where two routes match a path (`/txs/batch` is also a
    `/txs/{hash}`), the first registered, the most specific, is the one documented."""
    for resource in request.app.router.resources():
        _, allowed = await resource.resolve(request)
        if allowed:
            return set(allowed)
    return set()


_STATUS_CODES = {
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "body_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


@web.middleware
async def error_middleware(request: web.Request, handler):  # type: ignore[no-untyped-def]
    """Turn every failure into the JSON error shape; nothing escapes as an HTML page."""
    try:
        return await handler(request)
    except ApiError as error:
        response = error_response(error.status, error.code, error.message)
        response.headers.update(error.headers)
        if error.status == 408:
            response.force_close()
        return response
    except MarketchainError as error:
        return error_response(400, error.code, error.message)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        code = _STATUS_CODES.get(error.status, "bad_request")
        message = error.reason
        if error.status == 404:
            message = f"no route for {request.method} {request.path}"
        elif error.status == 413:
            message = f"request body exceeds {request.app[MAX_BODY_KEY]} bytes"
        response = error_response(error.status if error.status < 500 else 400, code, message)
        if isinstance(error, web.HTTPMethodNotAllowed):
            response.headers["Allow"] = ", ".join(sorted(await allowed_methods(request)))
        return response
    except json.JSONDecodeError as error:
        return error_response(400, "malformed", f"body is not valid JSON: {error}")
    except Exception:  # a node bug: log it, answer without leaking internals
        log.exception("internal error on %s %s", request.method, request.path)
        return error_response(500, "internal", "internal error; see the node's log")

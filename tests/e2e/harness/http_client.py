"""HTTP for tests: urllib requests that return 4xx/5xx answers instead of raising.

`http_get` / `http_post` give `(status, body)` with the body parsed as JSON when the
node says it is JSON, raw bytes otherwise. A test that checks an answer byte for byte
(429 included) uses them as they are. The harness's own checks are good clients:
they pass `patience_s`, and a 429 `rate_limited` answer with a `Retry-After` header
is then retried after the delay the node asked for, as long as the waits add up to
no more than `patience_s` (PROTOCOL §10; node/http/limits.py).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

JSON_TYPE = "application/json"
"""Media type of JSON bodies."""

MSGPACK_TYPE = "application/msgpack"
"""Media type of canonical transaction bytes."""

RATE_LIMITED = 429
"""The status of an answer that asks the client to come back after `Retry-After` seconds."""

POLITE_PATIENCE_S = 60.0
"""How long in all the harness's checks wait on `Retry-After` before giving up."""


@dataclass(frozen=True)
class HttpResponse:
    """One HTTP answer."""

    status: int
    """The HTTP status."""
    content_type: str
    """The media type without parameters, e.g. `application/json`."""
    body: Any
    """Parsed JSON for `application/json`, raw bytes otherwise."""
    raw: bytes
    """The body bytes as received."""
    headers: Mapping[str, str] = field(default_factory=dict)
    """The response headers (names as sent)."""

    @property
    def retry_after_s(self) -> float | None:
        """The delay a 429 answer asks for (its `Retry-After` seconds), else None."""
        if self.status != RATE_LIMITED:
            return None
        value = next((text for name, text in self.headers.items() if name.lower() == "retry-after"), None)
        try:
            return max(0.0, float(value)) if value is not None else None
        except ValueError:
            return None


def _send_once(url: str, method: str, body: bytes | None, content_type: str | None, timeout: float) -> HttpResponse:
    request = urllib.request.Request(url, data=body, method=method)
    if content_type is not None:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status = response.status
            media_type = response.headers.get_content_type()
            headers = dict(response.headers.items())
            raw = response.read()
    except urllib.error.HTTPError as error:
        status = error.code
        media_type = error.headers.get_content_type() if error.headers else ""
        headers = dict(error.headers.items()) if error.headers else {}
        raw = error.read()
        error.close()
    parsed: Any = raw
    if media_type == JSON_TYPE:
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = raw
    return HttpResponse(status, media_type, parsed, raw, headers)


def http_request(
    url: str,
    method: str = "GET",
    body: bytes | None = None,
    content_type: str | None = None,
    timeout: float = 30.0,
    patience_s: float = 0.0,
) -> HttpResponse:
    """Send one request; 4xx and 5xx come back as responses, not exceptions.

    With `patience_s` > 0, a 429 carrying `Retry-After` is sent again after that delay,
    while the delays add up to at most `patience_s`; the last answer is returned (a 429
    when the node keeps refusing). Connection failures (no node listening, reset) raise
    OSError.
    """
    waited = 0.0
    while True:
        response = _send_once(url, method, body, content_type, timeout)
        delay = response.retry_after_s
        if delay is None or waited + delay > patience_s:
            return response
        time.sleep(delay)  # the node asked for this pause (Retry-After)
        waited += delay


def http_get(url: str, timeout: float = 30.0, patience_s: float = 0.0) -> tuple[int, Any]:
    """GET `url`: `(status, JSON value or bytes)`; see `http_request` for `patience_s`."""
    response = http_request(url, "GET", timeout=timeout, patience_s=patience_s)
    return response.status, response.body


def http_post(
    url: str, body: bytes | Any, content_type: str | None = None, timeout: float = 30.0, patience_s: float = 0.0
) -> tuple[int, Any]:
    """POST `body` to `url`: `(status, JSON value or bytes)`.

    `bytes` go as they are (default type `application/msgpack`); any other value is
    sent as JSON. See `http_request` for `patience_s`.
    """
    if isinstance(body, (bytes, bytearray)):
        data = bytes(body)
        content_type = content_type or MSGPACK_TYPE
    else:
        data = json.dumps(body).encode()
        content_type = content_type or JSON_TYPE
    response = http_request(url, "POST", data, content_type, timeout=timeout, patience_s=patience_s)
    return response.status, response.body


def is_error_body(body: Any) -> bool:
    """True iff `body` is exactly `{"error": {"code": str, "message": str}}` (PROTOCOL §10)."""
    return (
        isinstance(body, dict)
        and set(body) == {"error"}
        and isinstance(body["error"], dict)
        and set(body["error"]) == {"code", "message"}
        and isinstance(body["error"]["code"], str)
        and isinstance(body["error"]["message"], str)
        and body["error"]["code"] != ""
    )

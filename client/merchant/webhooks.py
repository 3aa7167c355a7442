"""Signed webhooks of the merchant agent (issue 16): settings, bodies and the signature scheme.

Every event is POSTed as a JSON body `{"id", "type", "created", "data"}` with the headers

    Marketchain-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, f"{t}." + body)>
    Marketchain-Event-Id: <id>
    Content-Type: application/json

(the Stripe convention). A receiver recomputes the HMAC over the raw body it got and
the header's timestamp, compares in constant time and refuses a timestamp too far
from its clock (a replayed old request). docs/webhooks.md describes every event type.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

SIGNATURE_HEADER = "Marketchain-Signature"
"""The header carrying `t=<unix seconds>,v1=<hex HMAC-SHA256>`."""

EVENT_ID_HEADER = "Marketchain-Event-Id"
"""The header carrying the event's idempotency id (the body's `id`): receivers dedupe by it."""

SIGNATURE_VERSION = "v1"
"""The scheme name of HMAC-SHA256 over `f"{t}." + body` in the signature header."""

DEFAULT_TOLERANCE_S = 300.0
"""How far (seconds) a receiver should accept a signature's timestamp from its own clock."""

MAX_EVENT_BYTES = 65_536
"""Largest webhook body (bytes); an order's JSON is a few KiB (the sealed shipping address
is at most 1,024 bytes, R13), so only a hostile node could make an event larger."""

WEBHOOK_KEYS = frozenset({
    "url", "secret", "secret_env", "retry_for_s", "first_backoff_s", "max_backoff_s", "timeout_s",
})
"""The keys `[webhook]` of merchant.toml accepts; any other is an error."""


@dataclass(frozen=True)
class WebhookSettings:
    """Where and how the merchant agent POSTs its events (merchant.toml `[webhook]`)."""

    url: str
    """The receiver's http(s) URL."""
    secret: bytes = field(repr=False)
    """HMAC-SHA256 key: the UTF-8 bytes of the configured secret (`whsec_...` as written);
    left out of the settings' repr, so that a log line or a traceback never shows it."""
    retry_for_s: float = 86_400.0
    """An event still not delivered this long after its first attempt goes to the dead letters."""
    first_backoff_s: float = 1.0
    """Ceiling of the first retry's delay; it doubles per attempt (full jitter below it)."""
    max_backoff_s: float = 3_600.0
    """Largest ceiling of a retry's delay."""
    timeout_s: float = 10.0
    """A POST not answered within this long counts as failed."""

    @classmethod
    def from_table(cls, table: Mapping[str, Any], environ: Mapping[str, str]) -> WebhookSettings:
        """Settings from merchant.toml's `[webhook]` table; `secret_env` names an environment
        variable of `environ` holding the secret. ValueError names the bad key (the message
        follows `[webhook] `: "url must be ...")."""
        unknown = sorted(set(table) - WEBHOOK_KEYS)
        if unknown:
            raise ValueError(f"has no option {unknown[0]!r} "
                             f"(it takes {', '.join(sorted(WEBHOOK_KEYS))})")
        url = table.get("url")
        if not isinstance(url, str) or not valid_url(url):
            raise ValueError(f"url must be an http:// or https:// URL with a host, not {url!r}")
        secret = webhook_secret(table, environ)
        numbers = {name: positive_seconds(table, name) for name in
                   ("retry_for_s", "first_backoff_s", "max_backoff_s", "timeout_s") if name in table}
        settings = cls(url=url, secret=secret, **numbers)
        if settings.max_backoff_s < settings.first_backoff_s:
            raise ValueError("max_backoff_s must be at least first_backoff_s")
        return settings


def valid_url(url: str) -> bool:
    """Whether `url` is an absolute http(s) URL with a host."""
    parts = urllib.parse.urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def webhook_secret(table: Mapping[str, Any], environ: Mapping[str, str]) -> bytes:
    """The HMAC key from `secret` or from the variable `secret_env` names (exactly one of them)."""
    if ("secret" in table) == ("secret_env" in table):
        raise ValueError("needs exactly one of secret or secret_env")
    if "secret" in table:
        secret, origin = table["secret"], "secret"
    else:
        name = table["secret_env"]
        if not isinstance(name, str) or not name:
            raise ValueError("secret_env must name an environment variable")
        secret, origin = environ.get(name), f"the environment variable {name} (secret_env)"
        if secret is None:
            raise ValueError(f"{origin} is not set")
    if not isinstance(secret, str) or not secret:
        raise ValueError(f"{origin} must be a non-empty string")
    return secret.encode("utf-8")


def positive_seconds(table: Mapping[str, Any], name: str) -> float:
    """`table[name]` as a finite positive number of seconds, or ValueError naming it."""
    value = table[name]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or value <= 0:
        raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")
    return float(value)


def event_body(event_id: str, event_type: str, created_ms: int, data: Mapping[str, Any]) -> bytes:
    """The POST body of an event: the same bytes on every attempt and every replay."""
    document = {"id": event_id, "type": event_type, "created": created_ms, "data": data}
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def compute_signature(secret: bytes, body: bytes, timestamp: int) -> str:
    """Hex HMAC-SHA256 of `f"{timestamp}."` followed by the raw body, keyed by `secret`."""
    return hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signature_header(secret: bytes, body: bytes, timestamp: int) -> str:
    """The `Marketchain-Signature` value: `t=<timestamp>,v1=<signature>`."""
    return f"t={timestamp},{SIGNATURE_VERSION}={compute_signature(secret, body, timestamp)}"


def request_headers(event_id: str, secret: bytes, body: bytes, timestamp: int) -> dict[str, str]:
    """Every header of one POST of an event, signed at `timestamp` (unix seconds)."""
    return {
        SIGNATURE_HEADER: signature_header(secret, body, timestamp),
        EVENT_ID_HEADER: event_id,
        "Content-Type": "application/json",
    }


def verify_signature(secret: bytes, body: bytes, header: str, tolerance_s: float, now: float) -> bool:
    """Whether `header` signs `body` with `secret` at a timestamp within `tolerance_s` of `now`
    (unix seconds). Any `v1=` entry may match (a sender rotating secrets sends two)."""
    timestamp, signatures = None, []
    for part in header.split(","):
        name, separator, value = part.strip().partition("=")
        if not separator:
            return False
        if name == "t":
            if timestamp is not None or not value.isdigit() or len(value) > 12:
                return False
            timestamp = int(value)
        elif name == SIGNATURE_VERSION:
            signatures.append(value)
    if timestamp is None or not signatures or abs(now - timestamp) > tolerance_s:
        return False
    expected = compute_signature(secret, body, timestamp)
    return any(hmac.compare_digest(expected.encode(), value.encode()) for value in signatures)

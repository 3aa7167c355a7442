"""Path and query parameters of the HTTP API (PROTOCOL §10): the one place they are parsed.

Every route reads its parameters through these functions, so that one rule holds
everywhere and node/http/openapi.py can describe it exactly:

- A parameter that does not parse is 400 `invalid_query`, with a message naming it.
- A query parameter given with an empty value (`?shop=`) is 400 `invalid_query`: it is
  neither absent nor a value. Leave a parameter out to use its default.
- Ids, addresses and hashes are 64 hex characters (32 bytes, R5); either case is read.
- Integers are plain decimal ASCII digits (no sign, no spaces, no other script's digits).
- A page holds 1..`MAX_PAGE` items (`limit`, default `DEFAULT_PAGE`); `cursor` is the
  `next` of the previous page of the same list, `CURSOR_CHARS` hex characters.
"""

from __future__ import annotations

from aiohttp import web

from marketplace_tx.rules.schema import ITEM_ID_PATTERN
from node import indexer
from node.http.errors import ApiError

HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
"""Characters of a hex parameter."""
DECIMAL_DIGITS = frozenset("0123456789")
"""Characters of an integer parameter."""
MAX_INTEGER_DIGITS = 20
"""Longest integer parameter read (a uint64 has at most 20 digits)."""
DEFAULT_PAGE = 20
"""Items in a page when `limit` is not given."""
MAX_PAGE = 100
"""Most items one page of a list returns."""
CURSOR_CHARS = 2 * indexer.POSITION_BYTES
"""Length of a list cursor (`next`), in hex characters."""
CURSOR_PATTERN = f"^[0-9a-fA-F]{{{CURSOR_CHARS}}}$"
"""The shape of a cursor, as the OpenAPI document states it."""
UINT64_MAX = 2**64 - 1
"""Largest amount or price."""
HEIGHT_MAX = 2**63 - 1
"""Largest block height a parameter may name."""
MAX_QUERY_WORDS = 8
"""Most distinct words the listing search `q` may hold."""
MAX_QUERY_BYTES = 256
"""Longest listing search `q`, in UTF-8 bytes."""
MAX_TAG_BYTES = 32
"""Longest listing search `tag`, in UTF-8 bytes."""
DEFAULT_STATS_DAYS = 30
"""Days in a `/shops/{id}/stats` series when `days` is not given."""
MAX_STATS_DAYS = 365
"""Most days in a `/shops/{id}/stats` series."""


def invalid(name: str, message: str) -> ApiError:
    """The 400 `invalid_query` error of parameter `name`."""
    return ApiError(400, "invalid_query", f"{name} {message}")


def parse_hex32(text: str, name: str) -> bytes:
    """A 32-byte id or address given as 64 hex characters (R5), or 400 `invalid_query`."""
    if len(text) != 64 or not HEX_DIGITS.issuperset(text):
        raise invalid(name, "must be 64 hex characters")
    return bytes.fromhex(text)


def parse_integer(text: str, name: str, minimum: int, maximum: int) -> int:
    """A decimal integer within [minimum, maximum], or 400 `invalid_query`."""
    if text == "" or len(text) > MAX_INTEGER_DIGITS or not DECIMAL_DIGITS.issuperset(text):
        raise invalid(name, "must be a non-negative integer")
    value = int(text)
    if not minimum <= value <= maximum:
        raise invalid(name, f"must be between {minimum} and {maximum}")
    return value


def query_text(request: web.Request, name: str) -> str | None:
    """The raw value of query parameter `name`; None if absent, 400 if given empty."""
    text = request.query.get(name)
    if text == "":
        raise invalid(name, "must not be empty (leave it out instead)")
    return text


def query_integer(request: web.Request, name: str, default: int, minimum: int, maximum: int) -> int:
    """An optional integer query parameter within bounds (`default` if absent)."""
    text = query_text(request, name)
    return default if text is None else parse_integer(text, name, minimum, maximum)


def query_hex32(request: web.Request, name: str) -> bytes | None:
    """An optional 32-byte id or address query parameter (None if absent)."""
    text = query_text(request, name)
    return None if text is None else parse_hex32(text, name)


def query_string(request: web.Request, name: str, max_bytes: int) -> str | None:
    """An optional text query parameter of at most `max_bytes` UTF-8 bytes (None if absent)."""
    text = query_text(request, name)
    if text is None:
        return None
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise invalid(name, "is not valid UTF-8") from None
    if size > max_bytes:
        raise invalid(name, f"must be at most {max_bytes} bytes")
    return text


def query_boolean(request: web.Request, name: str) -> bool | None:
    """An optional `true`/`false` (or `1`/`0`, any case) query parameter (None if absent)."""
    text = query_text(request, name)
    if text is None:
        return None
    if text.lower() in ("true", "1"):
        return True
    if text.lower() in ("false", "0"):
        return False
    raise invalid(name, "must be true or false")


def query_choice(request: web.Request, name: str, choices: tuple[str, ...]) -> str | None:
    """An optional query parameter that must be one of `choices` (None if absent)."""
    text = query_text(request, name)
    if text is not None and text not in choices:
        raise invalid(name, f"must be one of {', '.join(choices)}")
    return text


def page_limit(request: web.Request) -> int:
    """The `limit` of a page: 1..`MAX_PAGE`, `DEFAULT_PAGE` if absent."""
    return query_integer(request, "limit", DEFAULT_PAGE, 1, MAX_PAGE)


def page_cursor(request: web.Request) -> bytes | None:
    """The `cursor` of a page (the `next` of the previous one), None for the first page."""
    text = query_text(request, "cursor")
    if text is None:
        return None
    if len(text) != CURSOR_CHARS or not HEX_DIGITS.issuperset(text):
        raise invalid("cursor", "is not a cursor this node gave out")
    return bytes.fromhex(text)


def path_hex32(request: web.Request, name: str) -> bytes:
    """A 32-byte id, hash or address path segment."""
    return parse_hex32(request.match_info[name], name)


def path_height(request: web.Request) -> int:
    """The `{height}` path segment: a block height ≥ 1."""
    return parse_integer(request.match_info["height"], "height", 1, HEIGHT_MAX)


def path_item_id(request: web.Request) -> str:
    """The `{id}` path segment of an item: 1..64 letters, digits and `. _ : -` (R22)."""
    item_id = request.match_info["id"]
    if not ITEM_ID_PATTERN.fullmatch(item_id):
        raise invalid("id", "must be 1..64 characters of letters, digits and . _ : -")
    return item_id

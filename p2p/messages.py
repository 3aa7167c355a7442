"""The message envelope every encrypted frame carries (PROTOCOL R32).

A message is the canonical msgpack map `{body: any, kind: str}`. The transport knows
the kinds but not their meaning: every body is opaque to p2p except `peers` (peer
exchange) and `status` (the peer's height), which it reads itself, and `ping` /
`pong`, which keep the connection alive and never reach the application.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from marketplace_tx.primitives.codec import decode, encode
from marketplace_tx.primitives.errors import CodecError
from p2p.errors import MessageError

APPLICATION_KINDS = (
    "txs",
    "proposal",
    "block",
    "vote",
    "evidence",
    "status",
    "peers",
    "block_request",
    "block_response",
    "snapshots_request",
    "snapshots",
    "manifest_request",
    "manifest",
    "chunk_request",
    "chunk",
    "light_changes_request",
    "light_changes",
    "header_request",
    "header",
)
"""Kinds of R32 and R39 that carry the node's data (`peers` is consumed by p2p itself).

State sync (R39, docs/p2p.md): `snapshots_request` → `snapshots`, `manifest_request` →
`manifest`, `chunk_request` → `chunk`; and, to verify a snapshot's header by the light
client (R37) without HTTP, `light_changes_request` → `light_changes` and
`header_request` → `header` (this implementation's, the page is silent)."""

GOSSIP_KINDS = frozenset({"txs", "proposal", "block", "vote", "evidence"})
"""Kinds flooded through the network: deduplicated by the seen-cache, never relayed twice.

The others (`status`, `peers`, the requests and their answers) are point-to-point:
a repeated request or status is legitimate and is delivered again.
"""

TRANSPORT_KINDS = ("ping", "pong")
"""Keep-alive kinds answered by the connection itself."""

KINDS = frozenset(APPLICATION_KINDS + TRANSPORT_KINDS)
"""Every kind a valid envelope may name."""

MAX_PEX_ADDRESSES = 64
"""Most addresses one `peers` message may carry."""

MAX_ADDRESS_CHARS = 64 + 1 + 255 + 1 + 5
"""Longest `hex@host:port` entry: a 64-character address, a DNS name and a port."""


@dataclass(frozen=True)
class Message:
    """One decoded envelope."""

    kind: str
    """One of `KINDS`."""
    body: Any
    """The canonical-msgpack value the sender attached; opaque to p2p for most kinds."""


def encode_message(kind: str, body: Any) -> bytes:
    """The canonical bytes of the envelope `{body, kind}`; `MessageError` if not encodable."""
    if kind not in KINDS:
        raise MessageError(f"unknown message kind {kind!r}")
    try:
        return encode({"body": body, "kind": kind})
    except CodecError as error:
        raise MessageError(f"body of {kind!r} is not canonical msgpack: {error.message}") from None


def decode_message(data: bytes) -> Message:
    """Decode and check one envelope; anything else raises `MessageError`."""
    try:
        value = decode(data)
    except CodecError as error:
        raise MessageError(f"envelope: {error.message}") from None
    if not isinstance(value, dict) or set(value) != {"body", "kind"}:
        raise MessageError("envelope must be the map {body, kind}")
    kind = value["kind"]
    if not isinstance(kind, str) or kind not in KINDS:
        raise MessageError(f"unknown message kind {kind!r}")
    body = value["body"]
    if kind == "peers":
        peers_addresses(body)
    return Message(kind=kind, body=body)


def peers_body(addresses: list[str]) -> dict[str, Any]:
    """The body of a `peers` message: `{addresses: ["<hex address>@host:port", …]}`."""
    return {"addresses": list(addresses[:MAX_PEX_ADDRESSES])}


def peers_addresses(body: Any) -> list[str]:
    """The address strings of a `peers` body, checked for shape and bounds."""
    if not isinstance(body, dict) or set(body) != {"addresses"}:
        raise MessageError("peers body must be the map {addresses}")
    addresses = body["addresses"]
    if not isinstance(addresses, list) or len(addresses) > MAX_PEX_ADDRESSES:
        raise MessageError(f"peers.addresses must be a list of at most {MAX_PEX_ADDRESSES}")
    for entry in addresses:
        if not isinstance(entry, str) or not 0 < len(entry.encode()) <= MAX_ADDRESS_CHARS:
            raise MessageError("peers.addresses entries are short strings")
    return addresses


def status_height(body: Any) -> int | None:
    """The `height` a `status` body announces, or None if it carries none."""
    if isinstance(body, dict):
        height = body.get("height")
        if isinstance(height, int) and not isinstance(height, bool) and height >= 0:
            return height
    return None

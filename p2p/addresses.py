"""Peer addresses: `host:port`, optionally `<node address hex>@host:port`.

The node address is the peer's Ed25519 public key (R5); when it is given, a dialed
peer that proves another key is refused (R31).
"""

from __future__ import annotations

from dataclasses import dataclass

from marketplace_tx.primitives.crypto import ADDRESS_BYTES
from p2p.errors import MessageError


@dataclass(frozen=True)
class PeerAddress:
    """Where to reach a peer, and optionally who it must be."""

    host: str
    """DNS name or IP address of the peer's listener."""
    port: int
    """TCP port of the peer's listener, 1 … 65535."""
    node_address: bytes | None = None
    """The Ed25519 key the peer must prove, or None to accept whoever answers."""

    @property
    def endpoint(self) -> tuple[str, int]:
        """(host, port): the key under which dial state and bans are kept."""
        return (self.host, self.port)

    def __str__(self) -> str:
        location = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        if self.node_address is None:
            return location
        return f"{self.node_address.hex()}@{location}"


def parse_peer_address(text: str) -> PeerAddress:
    """Parse `host:port` or `hex@host:port` (IPv6 hosts in brackets); `MessageError` if invalid."""
    node_address = None
    if "@" in text:
        key_hex, text = text.split("@", 1)
        if len(key_hex) != 2 * ADDRESS_BYTES or any(c not in "0123456789abcdef" for c in key_hex):
            raise MessageError("node address must be 64 lowercase hex characters")
        node_address = bytes.fromhex(key_hex)
    host, separator, port_text = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not separator or not host or any(character in host for character in " /@[]"):
        raise MessageError(f"peer address {text!r} is not host:port")
    if not (port_text.isascii() and port_text.isdigit()) or port_text != str(int(port_text)):
        raise MessageError(f"port {port_text!r} is not 1 … 65535")
    if not 0 < int(port_text) < 65536:
        raise MessageError(f"port {port_text!r} is not 1 … 65535")
    return PeerAddress(host=host, port=int(port_text), node_address=node_address)

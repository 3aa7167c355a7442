"""The layout of application state keys (documented in docs/state.md).

Every key starts with a one-byte family tag. The layout is part of consensus: the
state root (R23, docs/state.md) commits to these exact keys and values.
"""

from __future__ import annotations

ACCOUNT = b"a"
"""a ‖ address(32) → canonical {balance, nonce}."""
ROLE = b"r"
"""r ‖ address(32) ‖ role name → canonical {evidence_hash?, granted_by?, height}."""
VALIDATORS = b"v"
"""v → canonical {validators: [address, …]}: the current validator set, sorted."""


def account_key(address: bytes) -> bytes:
    """The key of an account record."""
    return ACCOUNT + address


def role_key(address: bytes, role: str) -> bytes:
    """The key recording that `address` holds `role`."""
    return ROLE + address + role.encode("utf-8")


def role_prefix(address: bytes) -> tuple[bytes, bytes]:
    """The [start, end) key range of every role of `address`."""
    start = ROLE + address
    return start, start + b"\xff"

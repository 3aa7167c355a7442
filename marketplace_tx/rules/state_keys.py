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
SHOP = b"s"
"""s ‖ shop_id(32) → canonical shop record (marketplace_tx.rules.shops)."""
LISTING = b"l"
"""l ‖ listing_id(32) → canonical listing record (marketplace_tx.rules.listings)."""
ORDER = b"o"
"""o ‖ order_id(32) → canonical order record with its history (marketplace_tx.rules.orders)."""
DEADLINE = b"d"
"""d ‖ deadline(8, big-endian ms) ‖ order_id(32) → empty: the R15 schedule, in firing order."""
ITEM = b"i"
"""i ‖ item_id (UTF-8) → canonical item record (marketplace_tx.rules.items)."""
ITEM_HISTORY = b"h"
"""h ‖ item_id ‖ 0x00 ‖ sequence(4) → one history entry of the item (append-only, R22)."""
POINTS = b"p"
"""p ‖ account(32) ‖ shop_id(32) → canonical points balance (R21); account first so one
prefix scan lists an account's points at every shop."""
SHOP_REPUTATION = b"q"
"""q ‖ shop_id(32) → canonical reputation and stats of the shop (R20)."""
MERCHANT_REPUTATION = b"m"
"""m ‖ address(32) → canonical reputation of a merchant address (R20)."""


def shop_key(shop_id: bytes) -> bytes:
    """The key of a shop."""
    return SHOP + shop_id


def listing_key(listing_id: bytes) -> bytes:
    """The key of a listing."""
    return LISTING + listing_id


def order_key(order_id: bytes) -> bytes:
    """The key of an order."""
    return ORDER + order_id


def deadline_key(deadline: int, order_id: bytes) -> bytes:
    """The schedule entry of an order's deadline; keys sort by (deadline, order_id) (R15)."""
    return DEADLINE + deadline.to_bytes(8, "big") + order_id


def item_key(item_id: str) -> bytes:
    """The key of an item."""
    return ITEM + item_id.encode("utf-8")


def item_history_key(item_id: str, sequence: int) -> bytes:
    """The key of the `sequence`-th history entry of an item."""
    return ITEM_HISTORY + item_id.encode("utf-8") + b"\x00" + sequence.to_bytes(4, "big")


def item_history_prefix(item_id: str) -> tuple[bytes, bytes]:
    """The [start, end) range of an item's history."""
    start = ITEM_HISTORY + item_id.encode("utf-8") + b"\x00"
    return start, start + b"\xff" * 5


def points_key(shop_id: bytes, account: bytes) -> bytes:
    """The key of an account's points at a shop."""
    return POINTS + account + shop_id


def points_prefix(account: bytes) -> tuple[bytes, bytes]:
    """The [start, end) range of an account's points at every shop."""
    return POINTS + account, POINTS + account + b"\xff" * 33


def shop_reputation_key(shop_id: bytes) -> bytes:
    """The key of a shop's reputation."""
    return SHOP_REPUTATION + shop_id


def merchant_reputation_key(address: bytes) -> bytes:
    """The key of a merchant address's reputation."""
    return MERCHANT_REPUTATION + address
VALIDATOR_SCHEDULE = b"n"
"""n → canonical {changes: [{height, validators}]}: validator sets decided but not yet in force (R34, R27)."""
VALIDATOR_HISTORY = b"y"
"""y ‖ height(8) → canonical {validators}: the set in force from that height, written on each change."""
VALIDATOR_VOTES = b"g"
"""g ‖ action (`add`/`remove`) ‖ 0x00 ‖ validator(32) → canonical {voters: [address]} (R34)."""
PUNISHED = b"x"
"""x ‖ validator(32) → canonical {height, evidence_height}: a validator removed for equivocation (R27)."""


def validator_history_key(height: int) -> bytes:
    """The key of the set that came into force at `height`."""
    return VALIDATOR_HISTORY + height.to_bytes(8, "big")


def validator_vote_key(action: str, validator: bytes) -> bytes:
    """The key of the pending votes to add or remove `validator`."""
    return VALIDATOR_VOTES + action.encode() + b"\x00" + validator


def punished_key(validator: bytes) -> bytes:
    """The key recording a validator's punishment."""
    return PUNISHED + validator

"""Digital goods sealed to the buyer (`client.sealing.seal_content`, R41): only the buyer's
key opens them, and what does not fit the 4096-byte `order_deliver.content` is refused
before anything is signed."""

from __future__ import annotations

import pytest

from client.sealing import (
    MAX_CONTENT_BYTES,
    SEAL_OVERHEAD,
    SealError,
    open_sealed,
    seal_content,
    seal_for,
)
from marketplace_tx.primitives.crypto import KeyPair
from marketplace_tx.rules.schema import MAX_DELIVERY_BYTES, MIN_DELIVERY_BYTES, check_payload

CODE = b"GIFT-7Q2X-94KD-PL0M"


def test_sealed_content_opens_only_with_the_buyers_key() -> None:
    buyer, merchant, stranger = KeyPair.generate(), KeyPair.generate(), KeyPair.generate()
    sealed = seal_content(buyer.address, CODE)
    assert CODE not in sealed and len(sealed) == len(CODE) + SEAL_OVERHEAD
    assert open_sealed(buyer, sealed) == CODE
    for key in (merchant, stranger):
        with pytest.raises(SealError, match="not sealed to"):
            open_sealed(key, sealed)
    assert seal_content(buyer.address, CODE) != sealed, "an ephemeral key per box"


def test_content_bounds_match_order_deliver() -> None:
    buyer = KeyPair.generate()
    assert MAX_CONTENT_BYTES == MAX_DELIVERY_BYTES - SEAL_OVERHEAD == 4048
    largest = seal_content(buyer.address, b"x" * MAX_CONTENT_BYTES)
    smallest = seal_content(buyer.address, b"x")
    assert len(largest) == MAX_DELIVERY_BYTES and len(smallest) == MIN_DELIVERY_BYTES + 1
    for content in (largest, smallest):
        check_payload("order_deliver", {"order_id": bytes(32), "content": content})
    with pytest.raises(SealError, match="at most 4048"):
        seal_content(buyer.address, b"x" * (MAX_CONTENT_BYTES + 1))
    with pytest.raises(SealError, match="empty"):
        seal_content(buyer.address, b"")
    with pytest.raises(SealError, match="32 bytes"):
        seal_content(b"short", CODE)


def test_addresses_keep_their_own_limit() -> None:
    """`seal_for` is unchanged: a 1024-byte box at most, even though content may be larger."""
    merchant = KeyPair.generate()
    with pytest.raises(SealError, match="at most 976"):
        seal_for(merchant.address, b"x" * 977)
    assert open_sealed(merchant, seal_for(merchant.address, b"")) == b""

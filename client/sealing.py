"""Sealed shipping addresses (PROTOCOL R13) and sealed digital goods (R41): only the
recipient's key opens them.

A buyer seals the delivery address to the merchant's X25519 key, derived from the
merchant's Ed25519 address (libsodium sealed box: an ephemeral sender key, so the
box reveals nothing about who sealed it). The merchant opens it with the secret half
of the same derivation and re-seals it to the carrier on `order_ship`. Sealing and
opening happen on the user's machine; nodes store and serve only the sealed bytes.

Digital goods (a licence key, a gift card, a short file) are sealed the same way, to the
buyer's key, by `order_deliver` (R41): the merchant seals, only the buyer opens.
"""

from __future__ import annotations

import nacl.exceptions
import nacl.public

from marketplace_tx.primitives.crypto import KeyPair, x25519_public_key
from marketplace_tx.rules.schema import MAX_DELIVERY_BYTES

SEAL_OVERHEAD = 48
"""Bytes a sealed box adds to its plaintext: a 32-byte ephemeral key and a 16-byte MAC."""

MAX_SEALED_BYTES = 1024
"""Largest `shipping` / `shipping_for_carrier` payload field (§4)."""

MAX_ADDRESS_BYTES = MAX_SEALED_BYTES - SEAL_OVERHEAD
"""Longest plaintext address, in UTF-8 bytes, that still fits once sealed."""

MAX_CONTENT_BYTES = MAX_DELIVERY_BYTES - SEAL_OVERHEAD
"""Longest digital content (4048 bytes) that still fits `order_deliver.content` (4096 bytes) once sealed (R41)."""


class SealError(Exception):
    """A sealed box that this key cannot open, or an address or content that cannot be sealed."""


def seal_for(address: bytes, plaintext: bytes) -> bytes:
    """`plaintext` sealed to the account `address` (its Ed25519 public key, R5)."""
    if len(address) != 32:
        raise SealError("an address is 32 bytes")
    if len(plaintext) > MAX_ADDRESS_BYTES:
        raise SealError(f"the text is {len(plaintext)} bytes; at most {MAX_ADDRESS_BYTES} fit a sealed box of {MAX_SEALED_BYTES}")
    return _seal(address, plaintext)


def seal_content(buyer: bytes, content: bytes) -> bytes:
    """Digital goods sealed to the order's `buyer` (its address, R5) for `order_deliver` (R41).

    `SealError` if `content` is empty or longer than `MAX_CONTENT_BYTES`, or `buyer` is
    not an address with an X25519 key. The box is 48 bytes longer than `content`.
    """
    if len(buyer) != 32:
        raise SealError("the buyer's address is 32 bytes")
    if not content:
        raise SealError("the content is empty: there is nothing to deliver")
    if len(content) > MAX_CONTENT_BYTES:
        raise SealError(f"the content is {len(content)} bytes; at most {MAX_CONTENT_BYTES} fit the "
                        f"{MAX_DELIVERY_BYTES}-byte order_deliver content once sealed (R41)")
    return _seal(buyer, content)


def _seal(address: bytes, plaintext: bytes) -> bytes:
    """`plaintext` in a libsodium sealed box to the X25519 key derived from `address`."""
    try:
        recipient = nacl.public.PublicKey(x25519_public_key(address))
    except (nacl.exceptions.RuntimeError, nacl.exceptions.ValueError, ValueError) as error:
        raise SealError(f"address {address.hex()} has no X25519 key: {error}") from None
    return nacl.public.SealedBox(recipient).encrypt(plaintext)


def open_sealed(keypair: KeyPair, sealed: bytes) -> bytes:
    """The plaintext of a box sealed to `keypair.address`; `SealError` if it was sealed to someone else."""
    box = nacl.public.SealedBox(nacl.public.PrivateKey(keypair.x25519_secret_key()))
    try:
        return box.decrypt(sealed)
    except (nacl.exceptions.CryptoError, nacl.exceptions.ValueError, ValueError):
        raise SealError(f"this box was not sealed to {keypair.address.hex()}") from None

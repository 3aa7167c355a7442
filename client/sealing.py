"""Sealed shipping addresses (PROTOCOL R13): only the merchant, then the carrier, can read them.

A buyer seals the delivery address to the merchant's X25519 key, derived from the
merchant's Ed25519 address (libsodium sealed box: an ephemeral sender key, so the
box reveals nothing about who sealed it). The merchant opens it with the secret half
of the same derivation and re-seals it to the carrier on `order_ship`. Sealing and
opening happen on the user's machine; nodes store and serve only the sealed bytes.
"""

from __future__ import annotations

import nacl.exceptions
import nacl.public

from marketplace_tx.primitives.crypto import KeyPair, x25519_public_key

SEAL_OVERHEAD = 48
"""Bytes a sealed box adds to its plaintext: a 32-byte ephemeral key and a 16-byte MAC."""

MAX_SEALED_BYTES = 1024
"""Largest `shipping` / `shipping_for_carrier` payload field (§4)."""

MAX_ADDRESS_BYTES = MAX_SEALED_BYTES - SEAL_OVERHEAD
"""Longest plaintext address, in UTF-8 bytes, that still fits once sealed."""


class SealError(Exception):
    """A sealed box that this key cannot open, or an address that cannot be sealed."""


def seal_for(address: bytes, plaintext: bytes) -> bytes:
    """`plaintext` sealed to the account `address` (its Ed25519 public key, R5)."""
    if len(address) != 32:
        raise SealError("an address is 32 bytes")
    if len(plaintext) > MAX_ADDRESS_BYTES:
        raise SealError(f"the text is {len(plaintext)} bytes; at most {MAX_ADDRESS_BYTES} fit a sealed box of {MAX_SEALED_BYTES}")
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

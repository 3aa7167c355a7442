"""Hashes, Ed25519 keys and domain-separated signatures (PROTOCOL R3, R4, R5).

Signing keys come from 32-byte seeds; an address is the 32-byte Ed25519 public key.
Every signature covers `b"marketchain/<kind>/v1\\x00"` followed by canonical bytes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import nacl.bindings
import nacl.exceptions
import nacl.signing

from marketplace_tx.primitives import codec

SIGNATURE_KINDS = ("tx", "vote", "proposal", "handshake")
"""The domain tags of R4."""

ADDRESS_BYTES = 32
SIGNATURE_BYTES = 64
SEED_BYTES = 32


def sha256(data: bytes) -> bytes:
    """SHA-256 of `data` (R3)."""
    return hashlib.sha256(data).digest()


def domain_tag(kind: str) -> bytes:
    """The prefix every signature of `kind` covers (R4)."""
    if kind not in SIGNATURE_KINDS:
        raise ValueError(f"unknown signature kind {kind!r}")
    return b"marketchain/" + kind.encode() + b"/v1\x00"


_DOMAIN_TAGS = {kind: domain_tag(kind) for kind in SIGNATURE_KINDS}


def signing_bytes(kind: str, value: Any) -> bytes:
    """The exact bytes an Ed25519 signature of `kind` covers: tag + canonical(value) (R4)."""
    return _DOMAIN_TAGS[kind] + codec.encode(value)


def verify_signature(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True iff `signature` is a valid Ed25519 signature of `message` by `public_key` (R3).

    libsodium's `crypto_sign_verify_detached` rejects non-canonical S, small-order and
    non-canonical public keys and R values.
    """
    if len(public_key) != ADDRESS_BYTES or len(signature) != SIGNATURE_BYTES:
        return False
    try:
        nacl.bindings.crypto_sign_open(signature + message, public_key)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, ValueError):
        return False
    return True


def x25519_public_key(address: bytes) -> bytes:
    """The X25519 public key derived from an Ed25519 address (used for sealed boxes, R13)."""
    return nacl.bindings.crypto_sign_ed25519_pk_to_curve25519(address)


@dataclass(frozen=True)
class KeyPair:
    """An Ed25519 key pair derived from a 32-byte seed."""

    seed: bytes = field(repr=False)
    """The 32-byte secret seed; whoever holds it can sign for the address."""
    address: bytes
    """The 32-byte Ed25519 public key, which is the account's address (R5)."""

    @classmethod
    def from_seed(cls, seed: bytes) -> KeyPair:
        """Derive the key pair of a 32-byte seed."""
        if len(seed) != SEED_BYTES:
            raise ValueError("a seed is 32 bytes")
        signing_key = nacl.signing.SigningKey(seed)
        return cls(seed=bytes(seed), address=bytes(signing_key.verify_key))

    @classmethod
    def generate(cls) -> KeyPair:
        """A fresh random key pair (the caller's randomness: this is an edge helper)."""
        return cls.from_seed(bytes(nacl.signing.SigningKey.generate()))

    def sign(self, message: bytes) -> bytes:
        """The 64-byte detached Ed25519 signature of `message`."""
        signing_key = nacl.signing.SigningKey(self.seed)
        return signing_key.sign(message).signature

    def sign_value(self, kind: str, value: Any) -> bytes:
        """Sign the domain-tagged canonical bytes of `value` (R4)."""
        return self.sign(signing_bytes(kind, value))

    def x25519_secret_key(self) -> bytes:
        """The X25519 secret key matching `x25519_public_key(self.address)`."""
        signing_key = nacl.signing.SigningKey(self.seed)
        return bytes(signing_key.to_curve25519_private_key())

"""The authenticated key exchange that opens every connection (PROTOCOL R31).

Both sides run the same steps; only the role (initiator = the side that dialed,
responder = the side that accepted) orders the two ephemeral keys:

1. Each sends a plaintext frame `hello` = canonical `{chain_id, ephemeral_key,
   genesis_hash, listen_port, node_address, version}` with a fresh X25519 key.
2. Each checks the other's hello: protocol version, chain id, genesis hash, not
   itself, and (for a persistent peer given as `address@host:port`) the node address.
3. Both compute the X25519 shared secret and the transcript hash
   `SHA-256("marketchain/p2p-transcript/v1\\0" ‖ initiator hello ‖ responder hello)`
   and derive one key per direction:
   `BLAKE2b-256(transcript hash, key = shared secret, person = "mc-p2p-i2r-v1" or "mc-p2p-r2i-v1")`.
4. Each sends, as its first encrypted frame, `{signature}`: its node key's Ed25519
   signature (R4, kind `handshake`) of `{chain_id, genesis_hash, initiator_key,
   responder_key}`, and checks the other's against the node address of its hello.

Because the hellos (with both node addresses) are in the key derivation, a party that
rewrites either hello ends up with different keys and cannot read or forge frames.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import nacl.bindings
import nacl.exceptions
import nacl.public

from marketplace_tx.primitives.codec import decode, encode
from marketplace_tx.primitives.crypto import (
    ADDRESS_BYTES,
    SIGNATURE_BYTES,
    KeyPair,
    signing_bytes,
    verify_signature,
)
from marketplace_tx.primitives.errors import CodecError
from p2p.channel import SecureChannel
from p2p.errors import ChannelError, ConnectionClosed, FrameError, HandshakeError, SelfConnection
from p2p.framing import MAX_FRAME_BYTES, read_frame, write_frame

PROTOCOL_VERSION = 1
"""Version of this peer-to-peer protocol carried in every hello."""

HANDSHAKE_TIMEOUT_S = 5.0
"""Default time a peer has to complete the whole handshake."""

MAX_PREAUTH_FRAME_BYTES = 1024
"""Largest frame read before the peer's proof is verified (the hello and the proof):
an unauthenticated peer cannot make us buffer more (R31)."""

MAX_HELLO_BYTES = MAX_PREAUTH_FRAME_BYTES
"""Largest plaintext hello frame accepted."""

TRANSCRIPT_TAG = b"marketchain/p2p-transcript/v1\x00"
"""Domain tag of the transcript hash."""

INITIATOR_TO_RESPONDER = b"mc-p2p-i2r-v1"
"""BLAKE2b personalisation of the key the initiator sends with."""

RESPONDER_TO_INITIATOR = b"mc-p2p-r2i-v1"
"""BLAKE2b personalisation of the key the responder sends with."""

HELLO_KEYS = frozenset(
    {"chain_id", "ephemeral_key", "genesis_hash", "listen_port", "node_address", "version"}
)
"""Exactly the keys of a hello."""


class PreAuthFrameTooLarge(HandshakeError):
    """A frame before authentication announced more than `MAX_PREAUTH_FRAME_BYTES`."""

    def __init__(self, message: str) -> None:
        super().__init__(f"frame_too_large: {message}")


class PeerGone(HandshakeError):
    """The peer closed or reset the connection before the handshake ended (no fault of
    substance: a dialer that gave up, a node restarting)."""


class NoFreeSlot(HandshakeError):
    """The connection got no anonymous slot and the peer is not a reserved one."""

    def __init__(self, node_address: bytes) -> None:
        super().__init__(f"no free slot for {node_address.hex()}: only reserved peers are accepted")


@dataclass(frozen=True)
class Hello:
    """The plaintext first frame of each side."""

    node_address: bytes
    """The sender's node key (Ed25519 public key) it will prove."""
    ephemeral_key: bytes
    """A fresh X25519 public key, used for this connection only."""
    chain_id: str
    """The chain the sender follows."""
    genesis_hash: bytes
    """SHA-256 of the sender's genesis document (R33)."""
    version: int = PROTOCOL_VERSION
    """The sender's peer-to-peer protocol version."""
    listen_port: int = 0
    """TCP port where the sender accepts peers (0: none); shared by peer exchange."""

    def to_map(self) -> dict[str, Any]:
        """The canonical map sent on the wire."""
        return {
            "chain_id": self.chain_id,
            "ephemeral_key": self.ephemeral_key,
            "genesis_hash": self.genesis_hash,
            "listen_port": self.listen_port,
            "node_address": self.node_address,
            "version": self.version,
        }

    def encode(self) -> bytes:
        """Canonical bytes of the hello."""
        return encode(self.to_map())

    @classmethod
    def decode(cls, data: bytes) -> Hello:
        """Parse a hello frame strictly; anything else raises `HandshakeError`."""
        try:
            value = decode(data, MAX_HELLO_BYTES)
        except CodecError as error:
            raise HandshakeError(f"hello is not canonical msgpack: {error.message}") from None
        if not isinstance(value, dict) or set(value) != HELLO_KEYS:
            raise HandshakeError(f"hello must be the map {{{', '.join(sorted(HELLO_KEYS))}}}")
        for name in ("node_address", "ephemeral_key", "genesis_hash"):
            if not isinstance(value[name], bytes) or len(value[name]) != ADDRESS_BYTES:
                raise HandshakeError(f"hello.{name} must be 32 bytes")
        if not isinstance(value["chain_id"], str):
            raise HandshakeError("hello.chain_id must be text")
        for name, limit in (("version", 2**32 - 1), ("listen_port", 65535)):
            number = value[name]
            if not isinstance(number, int) or isinstance(number, bool) or not 0 <= number <= limit:
                raise HandshakeError(f"hello.{name} must be an integer 0 … {limit}")
        return cls(**value)


@dataclass(frozen=True)
class SessionKeys:
    """The two directional keys of one connection."""

    initiator_to_responder: bytes
    """Key of frames the initiator sends."""
    responder_to_initiator: bytes
    """Key of frames the responder sends."""
    transcript_hash: bytes
    """SHA-256 over the tag and both hellos, initiator's first."""


@dataclass(frozen=True)
class HandshakeResult:
    """An authenticated connection, ready for messages."""

    channel: SecureChannel
    """The encrypted frame stream."""
    peer: Hello
    """The remote side's hello; its node address is proven."""
    initiator: bool
    """True if this side dialed."""


def proof_value(
    chain_id: str, genesis_hash: bytes, initiator_key: bytes, responder_key: bytes
) -> dict[str, Any]:
    """The map both sides sign (R4, kind `handshake`), ephemeral keys in role order."""
    return {
        "chain_id": chain_id,
        "genesis_hash": genesis_hash,
        "initiator_key": initiator_key,
        "responder_key": responder_key,
    }


def derive_session_keys(
    shared_secret: bytes, initiator_hello: Hello, responder_hello: Hello
) -> SessionKeys:
    """Directional keys from the X25519 secret and the transcript of both hellos."""
    transcript = hashlib.sha256(
        TRANSCRIPT_TAG + initiator_hello.encode() + responder_hello.encode()
    ).digest()

    def key(label: bytes) -> bytes:
        return hashlib.blake2b(transcript, key=shared_secret, person=label, digest_size=32).digest()

    return SessionKeys(
        initiator_to_responder=key(INITIATOR_TO_RESPONDER),
        responder_to_initiator=key(RESPONDER_TO_INITIATOR),
        transcript_hash=transcript,
    )


def check_hello(theirs: Hello, ours: Hello, expected_address: bytes | None) -> None:
    """Refuse a peer on another protocol, chain or genesis, ourselves, or an unexpected key."""
    if theirs.version != ours.version:
        raise HandshakeError(
            f"unsupported protocol version {theirs.version} (ours is {ours.version})"
        )
    if theirs.chain_id != ours.chain_id:
        raise HandshakeError(f"wrong chain id {theirs.chain_id!r} (ours is {ours.chain_id!r})")
    if theirs.genesis_hash != ours.genesis_hash:
        raise HandshakeError(f"wrong genesis hash {theirs.genesis_hash.hex()}")
    if theirs.node_address == ours.node_address:
        raise SelfConnection()
    if theirs.ephemeral_key == ours.ephemeral_key:
        raise HandshakeError("peer reflected our ephemeral key")
    if expected_address is not None and theirs.node_address != expected_address:
        raise HandshakeError(
            f"peer is {theirs.node_address.hex()}, expected {expected_address.hex()}"
        )


async def handshake(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    node_key: KeyPair,
    chain_id: str,
    genesis_hash: bytes,
    initiator: bool,
    listen_port: int = 0,
    expected_address: bytes | None = None,
    timeout_s: float = HANDSHAKE_TIMEOUT_S,
    max_frame_bytes: int = MAX_FRAME_BYTES,
    on_hello: Callable[[Hello], None] | None = None,
) -> HandshakeResult:
    """Run the handshake on a fresh TCP stream; `HandshakeError` (with the reason) on any failure.

    The deadline `timeout_s` covers everything from the first byte on; every frame read
    before the peer's proof is verified is at most `MAX_PREAUTH_FRAME_BYTES` (R31), a
    larger one raises `PreAuthFrameTooLarge` at once. `on_hello`, if given (a responder
    only), sees the peer's still unproven hello before we make a key or send a byte, and
    may refuse it by raising `HandshakeError`; the initiator sends first, so nothing waits.
    The caller closes the stream on failure.
    """
    try:
        async with asyncio.timeout(timeout_s):
            return await _exchange(
                reader,
                writer,
                node_key,
                chain_id,
                genesis_hash,
                initiator,
                listen_port,
                expected_address,
                max_frame_bytes,
                on_hello,
            )
    except TimeoutError:
        raise HandshakeError(f"handshake timed out after {timeout_s:g} s") from None
    except FrameError as error:
        if error.code == "frame_too_large":
            raise PreAuthFrameTooLarge(error.message) from None
        raise HandshakeError(f"{error.code}: {error.message}") from None
    except ChannelError as error:
        raise HandshakeError(f"{error.code}: {error.message}") from None
    except ConnectionClosed as error:
        raise PeerGone(f"{error.code}: {error.message}") from None
    except OSError as error:
        raise PeerGone(f"socket error: {error}") from None


async def _exchange(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    node_key: KeyPair,
    chain_id: str,
    genesis_hash: bytes,
    initiator: bool,
    listen_port: int,
    expected_address: bytes | None,
    max_frame_bytes: int,
    on_hello: Callable[[Hello], None] | None,
) -> HandshakeResult:
    early = None
    if on_hello is not None:  # past the limits: no key is made nor a byte sent before this check
        early = Hello.decode(await read_frame(reader, MAX_PREAUTH_FRAME_BYTES))
        on_hello(early)
    ephemeral = nacl.public.PrivateKey.generate()
    ours = Hello(
        node_address=node_key.address,
        ephemeral_key=bytes(ephemeral.public_key),
        chain_id=chain_id,
        genesis_hash=genesis_hash,
        listen_port=listen_port,
    )
    write_frame(writer, ours.encode())
    await writer.drain()
    theirs = early or Hello.decode(await read_frame(reader, MAX_PREAUTH_FRAME_BYTES))
    check_hello(theirs, ours, expected_address)

    first, second = (ours, theirs) if initiator else (theirs, ours)
    try:
        shared_secret = nacl.bindings.crypto_scalarmult(bytes(ephemeral), theirs.ephemeral_key)
    except (nacl.exceptions.RuntimeError, nacl.exceptions.ValueError, RuntimeError, ValueError):
        raise HandshakeError("peer's ephemeral key is a low-order point") from None
    keys = derive_session_keys(shared_secret, first, second)
    send_key, receive_key = (
        (keys.initiator_to_responder, keys.responder_to_initiator)
        if initiator
        else (keys.responder_to_initiator, keys.initiator_to_responder)
    )
    channel = SecureChannel(reader, writer, send_key, receive_key, max_frame_bytes)

    proof = proof_value(chain_id, genesis_hash, first.ephemeral_key, second.ephemeral_key)
    await channel.send(encode({"signature": node_key.sign_value("handshake", proof)}))
    signature = _parse_auth(channel.open(await read_frame(reader, MAX_PREAUTH_FRAME_BYTES)))
    if not verify_signature(theirs.node_address, signing_bytes("handshake", proof), signature):
        raise HandshakeError(f"bad handshake signature from {theirs.node_address.hex()}")
    return HandshakeResult(channel=channel, peer=theirs, initiator=initiator)


def _parse_auth(data: bytes) -> bytes:
    try:
        value = decode(data, MAX_HELLO_BYTES)
    except CodecError as error:
        raise HandshakeError(f"handshake proof is not canonical msgpack: {error.message}") from None
    if not isinstance(value, dict) or set(value) != {"signature"}:
        raise HandshakeError("handshake proof must be the map {signature}")
    signature = value["signature"]
    if not isinstance(signature, bytes) or len(signature) != SIGNATURE_BYTES:
        raise HandshakeError("handshake proof signature must be 64 bytes")
    return signature

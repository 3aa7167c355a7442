"""The encrypted, authenticated frame stream that follows the handshake (R31).

Each direction has its own 32-byte key and its own 64-bit message counter. Frame
number n of a direction is sealed with XSalsa20-Poly1305 (`nacl.secret.SecretBox`)
under that direction's key and the 24-byte nonce `n` (big-endian, zero-padded).
The nonce is implicit: the receiver expects exactly the next counter, so a replayed,
reordered, dropped or modified frame fails authentication and the channel is dead.
"""

from __future__ import annotations

import asyncio

import nacl.exceptions
import nacl.secret

from p2p.errors import ChannelError
from p2p.framing import MAX_FRAME_BYTES, read_frame, write_frame

KEY_BYTES = nacl.secret.SecretBox.KEY_SIZE
"""Size of each directional session key (32)."""

TAG_BYTES = nacl.secret.SecretBox.MACBYTES
"""Poly1305 authenticator added to every frame (16)."""

MAX_COUNTER = 2**64 - 1
"""Frames per direction before the channel refuses to go on (never reached in practice)."""


def counter_nonce(counter: int) -> bytes:
    """The 24-byte nonce of frame number `counter`."""
    return counter.to_bytes(nacl.secret.SecretBox.NONCE_SIZE, "big")


class SecureChannel:
    """Seals outgoing and opens incoming frames of one connection."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        send_key: bytes,
        receive_key: bytes,
        max_frame_bytes: int = MAX_FRAME_BYTES,
    ) -> None:
        if len(send_key) != KEY_BYTES or len(receive_key) != KEY_BYTES:
            raise ValueError("session keys are 32 bytes")
        self.reader = reader
        """The TCP stream frames are read from."""
        self.writer = writer
        """The TCP stream frames are written to."""
        self.max_frame_bytes = max_frame_bytes
        """Largest encrypted frame accepted or sent."""
        self._send_box = nacl.secret.SecretBox(send_key)
        self._receive_box = nacl.secret.SecretBox(receive_key)
        self._send_counter = 0
        self._receive_counter = 0

    @property
    def max_plaintext_bytes(self) -> int:
        """Largest payload `send` accepts (the frame limit minus the authenticator)."""
        return self.max_frame_bytes - TAG_BYTES

    def seal(self, plaintext: bytes) -> bytes:
        """Encrypt the next outgoing frame; consumes one send counter value."""
        if self._send_counter > MAX_COUNTER:
            raise ChannelError("send counter exhausted")
        nonce = counter_nonce(self._send_counter)
        self._send_counter += 1
        return self._send_box.encrypt(plaintext, nonce).ciphertext

    def open(self, ciphertext: bytes) -> bytes:
        """Decrypt the next incoming frame or raise `ChannelError` (tampered, replayed, reordered)."""
        if self._receive_counter > MAX_COUNTER:
            raise ChannelError("receive counter exhausted")
        try:
            plaintext = self._receive_box.decrypt(ciphertext, counter_nonce(self._receive_counter))
        except (nacl.exceptions.CryptoError, nacl.exceptions.ValueError, ValueError, TypeError):
            raise ChannelError(
                f"frame {self._receive_counter} does not authenticate (tampered, replayed or reordered)"
            ) from None
        self._receive_counter += 1
        return plaintext

    async def send(self, plaintext: bytes) -> None:
        """Seal and write one frame, then wait for the socket buffer to drain."""
        write_frame(self.writer, self.seal(plaintext), self.max_frame_bytes)
        await self.writer.drain()

    async def receive(self) -> bytes:
        """Read and open one frame (`ConnectionClosed`, `FrameError` or `ChannelError` on failure)."""
        return self.open(await read_frame(self.reader, self.max_frame_bytes))

    async def close(self) -> None:
        """Close the TCP stream (aborting it if the peer does not take the last bytes)."""
        await close_writer(self.writer)


CLOSE_GRACE_S = 1.0
"""How long a closing stream may take to flush before it is aborted."""


async def close_writer(writer: asyncio.StreamWriter) -> None:
    """Close a TCP stream; a peer that does not read cannot hold it open."""
    writer.close()
    try:
        async with asyncio.timeout(CLOSE_GRACE_S):
            await writer.wait_closed()
    except (OSError, TimeoutError):
        writer.transport.abort()

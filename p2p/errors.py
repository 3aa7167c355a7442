"""Errors of the peer-to-peer layer (PROTOCOL §8).

Every failure a remote peer can cause is one of these values with a stable `code`;
the connection that raised it is closed or the message dropped, never the node.
"""

from __future__ import annotations

from marketplace_tx.primitives.errors import MarketchainError


class P2PError(MarketchainError):
    """Base of every transport error: a stable `code` and a human `message`."""


class ConnectionClosed(P2PError):
    """The remote side closed the TCP stream cleanly between two frames."""

    def __init__(self, message: str = "connection closed by the peer") -> None:
        super().__init__("connection_closed", message)


class FrameError(P2PError):
    """A frame that is oversized (`frame_too_large`) or cut short (`frame_truncated`) (R31)."""


class HandshakeError(P2PError):
    """The authenticated key exchange failed (R31); `message` is the logged reason."""

    def __init__(self, message: str) -> None:
        super().__init__("handshake_failed", message)


class SelfConnection(HandshakeError):
    """The peer proved our own node key: we dialed ourselves."""

    def __init__(self) -> None:
        super().__init__("connected to self")


class ChannelError(P2PError):
    """An encrypted frame that does not authenticate: tampered, replayed or reordered."""

    def __init__(self, message: str) -> None:
        super().__init__("bad_frame", message)


class MessageError(P2PError):
    """A decrypted payload that is not a valid message envelope or known body (R32)."""

    def __init__(self, message: str) -> None:
        super().__init__("malformed", message)

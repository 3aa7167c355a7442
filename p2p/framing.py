"""Length-prefixed frames over a byte stream (PROTOCOL R31).

A frame is a 4-byte big-endian payload length followed by the payload. The length
may not exceed `MAX_FRAME_BYTES` (8 MiB), or a lower limit the caller configures.
Reading an oversized or truncated frame raises `FrameError`; a stream that ends
cleanly between frames raises `ConnectionClosed`.
"""

from __future__ import annotations

import asyncio

from p2p.errors import ConnectionClosed, FrameError

MAX_FRAME_BYTES = 8 * 1024 * 1024
"""The protocol's upper bound on one frame's payload (R31)."""

HEADER_BYTES = 4
"""Size of the big-endian length prefix."""


def _check_limit(max_bytes: int) -> None:
    if not 0 < max_bytes <= MAX_FRAME_BYTES:
        raise ValueError(f"frame limit must be in 1 … {MAX_FRAME_BYTES}")


def parse_length(header: bytes, max_bytes: int = MAX_FRAME_BYTES) -> int:
    """The payload length a 4-byte header announces, or `FrameError` if above `max_bytes`."""
    if len(header) != HEADER_BYTES:
        raise FrameError("frame_truncated", f"a frame header is {HEADER_BYTES} bytes")
    length = int.from_bytes(header, "big")
    if length > max_bytes:
        raise FrameError("frame_too_large", f"frame of {length} bytes exceeds {max_bytes}")
    return length


def encode_frame(payload: bytes, max_bytes: int = MAX_FRAME_BYTES) -> bytes:
    """The frame (header + payload) carrying `payload`; `FrameError` if it is too large."""
    _check_limit(max_bytes)
    if len(payload) > max_bytes:
        raise FrameError("frame_too_large", f"payload of {len(payload)} bytes exceeds {max_bytes}")
    return len(payload).to_bytes(HEADER_BYTES, "big") + payload


def split_frame(buffer: bytes, max_bytes: int = MAX_FRAME_BYTES) -> tuple[bytes, bytes]:
    """Split one complete frame off the front of `buffer`: (payload, rest).

    Raises `FrameError` if the buffer holds less than one whole frame or announces
    more than `max_bytes`.
    """
    _check_limit(max_bytes)
    length = parse_length(bytes(buffer[:HEADER_BYTES]), max_bytes)
    end = HEADER_BYTES + length
    if len(buffer) < end:
        raise FrameError(
            "frame_truncated",
            f"frame announces {length} bytes, {len(buffer) - HEADER_BYTES} present",
        )
    return bytes(buffer[HEADER_BYTES:end]), bytes(buffer[end:])


async def read_frame(reader: asyncio.StreamReader, max_bytes: int = MAX_FRAME_BYTES) -> bytes:
    """Read one frame's payload from `reader`.

    `ConnectionClosed` if the stream ends before the first header byte, `FrameError`
    if it ends inside a frame or announces more than `max_bytes`.
    """
    _check_limit(max_bytes)
    try:
        header = await reader.readexactly(HEADER_BYTES)
    except asyncio.IncompleteReadError as error:
        if not error.partial:
            raise ConnectionClosed() from None
        raise FrameError("frame_truncated", "stream ended inside a frame header") from None
    length = parse_length(header, max_bytes)
    try:
        return await reader.readexactly(length)
    except asyncio.IncompleteReadError as error:
        raise FrameError(
            "frame_truncated", f"stream ended after {len(error.partial)} of {length} payload bytes"
        ) from None


def write_frame(
    writer: asyncio.StreamWriter, payload: bytes, max_bytes: int = MAX_FRAME_BYTES
) -> None:
    """Queue one frame on `writer` (the caller drains)."""
    writer.write(encode_frame(payload, max_bytes))

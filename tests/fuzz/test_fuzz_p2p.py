"""Fuzzing of the peer-to-peer decoders (PROTOCOL R31, R32): envelopes, hellos, handshake
proofs, peer lists, peer addresses, frames and sealed frames.

Each refuses only with its own error (MessageError, HandshakeError, FrameError or
ConnectionClosed, ChannelError); what it accepts re-encodes to the input.
"""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from marketplace_tx.primitives.crypto import sha256
from p2p.channel import SecureChannel
from p2p.errors import ChannelError, ConnectionClosed, FrameError, HandshakeError, MessageError
from p2p.framing import encode_frame, parse_length, read_frame, split_frame
from p2p.handshake import Hello, _parse_auth, derive_session_keys
from p2p.messages import decode_message, encode_message, peers_addresses, status_height
from tests.fuzz.strategies import (
    CHAIN,
    COUNTS,
    KEYS,
    TEXT,
    codec_values,
    either,
    fuzz_settings,
    hello_bytes,
    iteration_report,
    loose_msgpack,
    maybe_missing_map,
    message_bytes,
    mutated,
)

print_iteration_counts = iteration_report("tests/fuzz/test_fuzz_p2p.py")


@fuzz_settings(600)
@given(data=st.binary(max_size=120) | loose_msgpack | mutated(message_bytes) | mutated(hello_bytes))
def test_p2p_message_and_hello_decoders(data: bytes) -> None:
    """R31, R32: envelopes, hellos and handshake proofs are refused only with their P2P errors."""
    COUNTS["p2p decode_message / Hello.decode / handshake proof"] += 1
    try:
        message = decode_message(data)
    except MessageError as error:
        assert error.code == "malformed"
    else:
        assert encode_message(message.kind, message.body) == data
        height = status_height(message.body)
        assert height is None or (type(height) is int and height >= 0)
    try:
        hello = Hello.decode(data)
    except HandshakeError as error:
        assert error.code == "handshake_failed"
    else:
        assert hello.encode() == data
    try:
        assert len(_parse_auth(data)) == 64
    except HandshakeError as error:
        assert error.code == "handshake_failed"


@fuzz_settings(300)
@given(body=maybe_missing_map({"addresses": either(st.lists(TEXT | st.sampled_from(
    ["ab" * 32 + "@127.0.0.1:26656", "h:0", "[::1]:1", "x" * 400]), max_size=70))}) | codec_values)
def test_p2p_peers_and_status_bodies(body: Any) -> None:
    COUNTS["p2p peers / status bodies"] += 1
    try:
        addresses = peers_addresses(body)
    except MessageError as error:
        assert error.code == "malformed"
    else:
        assert all(isinstance(address, str) for address in addresses)
    height = status_height(body)
    assert height is None or (isinstance(height, int) and height >= 0)


@fuzz_settings(300)
@given(text=TEXT | st.builds(lambda a, b, c: f"{a}@{b}:{c}", st.sampled_from(["ab" * 32, "AB" * 32, ""]) | TEXT,
                             st.sampled_from(["127.0.0.1", "[::1]", "host", "[::1", "::1", "h h"]) | TEXT,
                             st.integers(-1, 70000).map(str) | TEXT))
def test_peer_address_parser(text: str) -> None:
    from p2p.addresses import parse_peer_address

    COUNTS["p2p parse_peer_address"] += 1
    try:
        address = parse_peer_address(text)
    except MessageError as error:
        assert error.code == "malformed"
        return
    assert 1 <= address.port <= 65535


@fuzz_settings(500)
@given(data=st.binary(max_size=80) | mutated(st.binary(max_size=40).map(encode_frame)),
       limit=st.integers(1, 64))
def test_frame_decoders(data: bytes, limit: int) -> None:
    """R31: frame headers and streams fail only with FrameError or ConnectionClosed."""
    COUNTS["p2p frames (parse_length, split_frame, read_frame)"] += 1
    try:
        length = parse_length(data[:4], limit)
    except FrameError as error:
        announced = int.from_bytes(data[:4], "big")
        assert (len(data) < 4 and error.code == "frame_truncated") or (announced > limit and error.code == "frame_too_large")
    else:
        assert len(data) >= 4 and length == int.from_bytes(data[:4], "big") <= limit
    try:
        payload, rest = split_frame(data, limit)
    except FrameError as error:
        assert error.code in ("frame_truncated", "frame_too_large")
    else:
        assert encode_frame(payload, limit) + rest == data

    async def read_all() -> list[bytes]:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        frames: list[bytes] = []
        while True:
            try:
                frames.append(await read_frame(reader, limit))
            except (FrameError, ConnectionClosed):
                return frames

    read = b"".join(encode_frame(payload, limit) for payload in asyncio.run(read_all()))
    assert data.startswith(read)  # the frames read are exactly the stream's first bytes


SESSION = derive_session_keys(b"\x07" * 32, Hello(KEYS[0].address, KEYS[1].address, CHAIN, sha256(b"g")),
                              Hello(KEYS[2].address, KEYS[3].address, CHAIN, sha256(b"g")))


@fuzz_settings(300)
@given(data=st.data())
def test_encrypted_frames(data: st.DataObject) -> None:
    """R31: a tampered, truncated or foreign sealed frame fails only with ChannelError."""
    COUNTS["p2p SecureChannel.open"] += 1
    sender = SecureChannel(None, None, SESSION.initiator_to_responder, SESSION.responder_to_initiator)  # type: ignore[arg-type]
    receiver = SecureChannel(None, None, SESSION.responder_to_initiator, SESSION.initiator_to_responder)  # type: ignore[arg-type]
    sealed = sender.seal(data.draw(st.binary(max_size=64)))
    frame = data.draw(mutated(st.just(sealed)) | st.binary(max_size=80))
    try:
        receiver.open(frame)
    except ChannelError as error:
        assert error.code == "bad_frame"
        return
    assert frame == sealed

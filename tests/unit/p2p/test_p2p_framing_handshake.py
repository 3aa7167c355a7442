"""Frames, messages, the authenticated handshake and the encrypted channel (PROTOCOL R31).

Real sockets on 127.0.0.1 with ephemeral ports. Every misbehaving connection must be
closed with a logged reason, and the listener must keep accepting good peers after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from marketplace_tx.primitives.crypto import KeyPair, sha256
from p2p.addresses import PeerAddress, parse_peer_address
from p2p.channel import SecureChannel
from p2p.config import PeerManagerConfig
from p2p.errors import (
    ChannelError,
    ConnectionClosed,
    FrameError,
    HandshakeError,
    MessageError,
    SelfConnection,
)
from p2p.framing import encode_frame, read_frame, split_frame
from p2p.handshake import HandshakeResult, Hello, derive_session_keys, handshake
from p2p.messages import KINDS, MAX_PEX_ADDRESSES, decode_message, encode_message, peers_body
from p2p.peer_manager import PeerManager

CHAIN = "p2p-test"
GENESIS = sha256(b"p2p test genesis")
FAST = PeerManagerConfig(
    handshake_timeout_s=0.5,
    backoff_initial_s=0.05,
    backoff_max_s=0.5,
    pex=False,
    max_frame_bytes=64 * 1024,
)


async def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll `condition` until it holds; fail after a generous deadline."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


class Server:
    """A PeerManager listener that records what it delivers."""

    def __init__(self, config: PeerManagerConfig = FAST, **kwargs: Any) -> None:
        self.key = KeyPair.generate()
        self.received: list[tuple[bytes, str, Any]] = []
        self.manager = PeerManager(
            self.key,
            CHAIN,
            GENESIS,
            "127.0.0.1",
            0,
            on_message=self._on_message,
            config=config,
            **kwargs,
        )

    def _on_message(self, peer: bytes, kind: str, body: Any) -> None:
        self.received.append((peer, kind, body))

    @property
    def port(self) -> int:
        return self.manager.listen_port


@pytest.fixture
async def server() -> Any:
    instance = Server()
    await instance.manager.start()
    yield instance
    await instance.manager.stop()


RAW_WRITERS: list[asyncio.StreamWriter] = []
"""Raw client connections of the running test, closed when it ends."""


async def open_raw(server: Server) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    RAW_WRITERS.append(writer)
    return reader, writer


@pytest.fixture(autouse=True)
async def close_raw_clients() -> Any:
    yield
    while RAW_WRITERS:
        writer = RAW_WRITERS.pop()
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def client_handshake(server: Server, key: KeyPair | None = None) -> HandshakeResult:
    reader, writer = await open_raw(server)
    return await handshake(
        reader,
        writer,
        node_key=key or KeyPair.generate(),
        chain_id=CHAIN,
        genesis_hash=GENESIS,
        initiator=True,
    )


async def assert_closed_by_server(reader: asyncio.StreamReader) -> None:
    """Read until the server closes the stream (EOF or reset), within a generous deadline."""
    async with asyncio.timeout(10):
        try:
            while await reader.read(65536):
                pass
        except ConnectionResetError:
            pass


async def assert_accepts_good_peer(server: Server) -> None:
    good = PeerManager(
        KeyPair.generate(),
        CHAIN,
        GENESIS,
        persistent_peers=[f"127.0.0.1:{server.port}"],
        config=FAST,
    )
    await good.start()
    try:
        await wait_until(
            lambda: any(p.node_address == good.node_address for p in server.manager.peers())
        )
        assert good.peers()[0].node_address == server.key.address
    finally:
        await good.stop()


def hello(**changes: Any) -> Hello:
    fields: dict[str, Any] = {
        "node_address": KeyPair.generate().address,
        "ephemeral_key": bytes(32 * [9]),
        "chain_id": CHAIN,
        "genesis_hash": GENESIS,
    }
    fields.update(changes)
    return Hello(**fields)


class TamperingKeyPair(KeyPair):
    """A node key whose handshake proofs have one bit flipped."""

    def sign_value(self, kind: str, value: Any) -> bytes:
        signature = bytearray(super().sign_value(kind, value))
        signature[0] ^= 1
        return bytes(signature)


# --------------------------------------------------------------------------- framing


async def stream_of(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


async def test_frames_round_trip_over_a_stream() -> None:
    payloads = [b"", b"x", bytes(range(256)) * 300]
    reader = await stream_of(b"".join(encode_frame(p) for p in payloads))
    assert [await read_frame(reader) for _ in payloads] == payloads
    with pytest.raises(ConnectionClosed):
        await read_frame(reader)
    buffer = encode_frame(b"one") + encode_frame(b"two")
    first, rest = split_frame(buffer)
    assert (first, split_frame(rest)) == (b"one", (b"two", b""))


async def test_oversized_and_truncated_frames_are_clean_errors() -> None:
    with pytest.raises(FrameError) as error:
        await read_frame(await stream_of((8 * 1024 * 1024 + 1).to_bytes(4, "big")))
    assert error.value.code == "frame_too_large"
    with pytest.raises(FrameError) as error:
        await read_frame(await stream_of(encode_frame(b"x" * 101)), max_bytes=100)
    assert error.value.code == "frame_too_large"
    for cut in (b"\x00\x00", encode_frame(b"hello")[:-1]):
        with pytest.raises(FrameError) as error:
            await read_frame(await stream_of(cut))
        assert error.value.code == "frame_truncated"
        with pytest.raises(FrameError):
            split_frame(cut)
    with pytest.raises(FrameError):
        encode_frame(b"x" * 11, max_bytes=10)
    with pytest.raises(ValueError):
        encode_frame(b"x", max_bytes=9 * 1024 * 1024)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=64), limit=st.integers(min_value=1, max_value=40))
def test_frame_decoders_fuzz(data: bytes, limit: int) -> None:
    try:
        payload, rest = split_frame(data, limit)
    except FrameError:
        payload = None
    else:
        assert encode_frame(payload, limit) + rest == data

    async def read_all() -> list[bytes]:
        reader = await stream_of(data)
        frames = []
        while True:
            try:
                frames.append(await read_frame(reader, limit))
            except (FrameError, ConnectionClosed):
                return frames

    frames = asyncio.run(read_all())
    if payload is not None:
        assert frames[0] == payload


# --------------------------------------------------------------------------- messages


def test_messages_round_trip_and_strict_decoding() -> None:
    for kind in sorted(KINDS):
        body = (
            peers_body(["ab" * 32 + "@127.0.0.1:1"]) if kind == "peers" else {"n": 1, "b": b"\x00"}
        )
        message = decode_message(encode_message(kind, body))
        assert (message.kind, message.body) == (kind, body)
    bad = [
        msgpack.packb({"kind": "txs", "body": 1}),  # keys not sorted
        msgpack.packb({"body": 1, "kind": "gossip"}),  # unknown kind
        msgpack.packb({"body": 1, "extra": 2, "kind": "txs"}),
        msgpack.packb(["txs", 1]),
        msgpack.packb({"body": 1.5, "kind": "txs"}),
        msgpack.packb({"body": {"addresses": ["x"] * (MAX_PEX_ADDRESSES + 1)}, "kind": "peers"}),
        msgpack.packb({"body": {"addresses": [7]}, "kind": "peers"}),
        encode_message("txs", []) + b"\x00",
        b"",
    ]
    for data in bad:
        with pytest.raises(MessageError):
            decode_message(data)
    with pytest.raises(MessageError):
        encode_message("nonsense", {})


msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.binary(max_size=40)
    | st.text(max_size=20)
    | st.sampled_from(sorted(KINDS)),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["body", "kind", "addresses", "x"]) | st.text(max_size=5),
            children,
            max_size=4,
        )
    ),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.binary(max_size=200) | msgpack_values.map(lambda v: msgpack.packb(v, use_bin_type=True))
)
def test_message_and_hello_decoders_fuzz(data: bytes) -> None:
    try:
        message = decode_message(data)
    except MessageError:
        pass
    else:
        assert encode_message(message.kind, message.body) == data
    try:
        decoded = Hello.decode(data)
    except HandshakeError:
        pass
    else:
        assert decoded.encode() == data


def test_peer_addresses_parse_strictly() -> None:
    key = "ab" * 32
    assert parse_peer_address("127.0.0.1:26656") == PeerAddress("127.0.0.1", 26656)
    assert parse_peer_address(f"{key}@node-1.example:1") == PeerAddress(
        "node-1.example", 1, bytes.fromhex(key)
    )
    assert parse_peer_address("[::1]:80").host == "::1"
    assert str(parse_peer_address(f"{key}@[::1]:80")) == f"{key}@[::1]:80"
    for text in (
        "127.0.0.1",
        ":80",
        "h:0",
        "h:65536",
        "h:08",
        "h:²",
        f"{key.upper()}@h:1",
        "zz@h:1",
        "a b:1",
    ):
        with pytest.raises(MessageError):
            parse_peer_address(text)


# --------------------------------------------------------------------------- handshake and channel


async def test_handshake_round_trip_and_directional_keys() -> None:
    server_key, client_key = KeyPair.generate(), KeyPair.generate()
    accepted: asyncio.Future[HandshakeResult] = asyncio.get_running_loop().create_future()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        result = await handshake(
            reader,
            writer,
            node_key=server_key,
            chain_id=CHAIN,
            genesis_hash=GENESIS,
            initiator=False,
            listen_port=4242,
        )
        accepted.set_result(result)
        await result.channel.send(b"from responder")
        assert await result.channel.receive() == b"from initiator"

    listener = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    client = await handshake(
        reader, writer, node_key=client_key, chain_id=CHAIN, genesis_hash=GENESIS, initiator=True
    )
    server = await asyncio.wait_for(accepted, 10)
    assert (client.peer.node_address, client.peer.listen_port) == (server_key.address, 4242)
    assert server.peer.node_address == client_key.address
    assert await client.channel.receive() == b"from responder"
    await client.channel.send(b"from initiator")
    # the same plaintext under the two directional keys differs
    assert client.channel.seal(b"same") != server.channel.seal(b"same")
    await client.channel.close()
    await server.channel.close()
    listener.close()
    await listener.wait_closed()


def test_channel_rejects_replayed_reordered_and_tampered_frames() -> None:
    first, second = hello(), hello(ephemeral_key=bytes(32 * [7]))
    keys = derive_session_keys(bytes(32 * [1]), first, second)
    sender = SecureChannel(None, None, keys.initiator_to_responder, keys.responder_to_initiator)  # type: ignore[arg-type]
    receiver = SecureChannel(None, None, keys.responder_to_initiator, keys.initiator_to_responder)  # type: ignore[arg-type]
    frames = [sender.seal(b"frame %d" % n) for n in range(3)]
    assert receiver.open(frames[0]) == b"frame 0"
    for bad in (frames[0], frames[2], frames[1][:-1] + bytes([frames[1][-1] ^ 1]), b""):
        with pytest.raises(ChannelError):
            receiver.open(bad)
    assert receiver.open(frames[1]) == b"frame 1"
    other = derive_session_keys(bytes(32 * [1]), first, hello(ephemeral_key=bytes(32 * [8])))
    assert other.initiator_to_responder != keys.initiator_to_responder


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=100))
def test_channel_open_fuzz(data: bytes) -> None:
    keys = derive_session_keys(bytes(32), hello(), hello())
    receiver = SecureChannel(None, None, keys.responder_to_initiator, keys.initiator_to_responder)  # type: ignore[arg-type]
    with pytest.raises(ChannelError):
        receiver.open(data)


# --------------------------------------------------------------------------- misbehaving peers


async def send_hello(server: Server, **changes: Any) -> asyncio.StreamReader:
    reader, writer = await open_raw(server)
    writer.write(encode_frame(hello(**changes).encode()))
    return reader


async def wrong_chain(server: Server) -> asyncio.StreamReader:
    return await send_hello(server, chain_id="another-chain")


async def wrong_genesis(server: Server) -> asyncio.StreamReader:
    return await send_hello(server, genesis_hash=sha256(b"another genesis"))


async def wrong_version(server: Server) -> asyncio.StreamReader:
    return await send_hello(server, version=2)


async def own_address(server: Server) -> asyncio.StreamReader:
    return await send_hello(server, node_address=server.key.address)


async def tampered_proof(server: Server) -> asyncio.StreamReader:
    key = TamperingKeyPair.from_seed(bytes(32 * [5]))
    result = await client_handshake(server, key)  # our side sees a valid proof from the server
    return result.channel.reader


async def garbage_http(server: Server) -> asyncio.StreamReader:
    reader, writer = await open_raw(server)
    writer.write(b"GET / HTTP/1.1\r\nHost: example\r\n\r\n")
    return reader


async def garbage_small_frame(server: Server) -> asyncio.StreamReader:
    reader, writer = await open_raw(server)
    writer.write(encode_frame(b"\xc1\xff\x00 not msgpack"))
    return reader


async def silence(server: Server) -> asyncio.StreamReader:
    reader, _ = await open_raw(server)
    return reader


MISBEHAVIOURS: dict[str, tuple[Callable[[Server], Awaitable[asyncio.StreamReader]], str]] = {
    "wrong chain": (wrong_chain, "wrong chain id"),
    "wrong genesis": (wrong_genesis, "wrong genesis hash"),
    "wrong version": (wrong_version, "unsupported protocol version"),
    "own address": (own_address, "connected to self"),
    "tampered proof": (tampered_proof, "bad handshake signature"),
    "garbage": (garbage_http, "frame_too_large"),
    "garbage frame": (garbage_small_frame, "hello is not canonical msgpack"),
    "silence": (silence, "timed out"),
}


@pytest.mark.parametrize("case", sorted(MISBEHAVIOURS))
async def test_bad_handshakes_are_closed_and_the_listener_goes_on(
    server: Server, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="p2p")
    misbehave, reason = MISBEHAVIOURS[case]
    reader = await misbehave(server)
    await assert_closed_by_server(reader)
    await wait_until(lambda: reason in caplog.text)
    assert server.manager.peers() == []
    assert server.manager.counters.handshakes_failed == 1
    await assert_accepts_good_peer(server)


async def test_client_refuses_wrong_chain_and_itself(server: Server) -> None:
    reader, writer = await open_raw(server)
    with pytest.raises(HandshakeError, match="wrong chain id"):
        await handshake(
            reader,
            writer,
            node_key=KeyPair.generate(),
            chain_id="other",
            genesis_hash=GENESIS,
            initiator=True,
        )
    reader, writer = await open_raw(server)
    with pytest.raises(SelfConnection):
        await handshake(
            reader,
            writer,
            node_key=server.key,
            chain_id=CHAIN,
            genesis_hash=GENESIS,
            initiator=True,
        )


async def test_dialing_itself_or_an_unexpected_key_is_refused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="p2p")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    lonely = Server()
    lonely.manager = PeerManager(
        lonely.key, CHAIN, GENESIS, "127.0.0.1", port, [f"127.0.0.1:{port}"], config=FAST
    )
    await lonely.manager.start()
    other = Server()
    await other.manager.start()
    wrong = KeyPair.generate().address.hex()
    expecting = PeerManager(
        KeyPair.generate(),
        CHAIN,
        GENESIS,
        persistent_peers=[f"{wrong}@127.0.0.1:{other.port}"],
        config=FAST,
    )
    await expecting.start()
    try:
        await wait_until(lambda: "connected to self" in caplog.text)
        await wait_until(lambda: f"expected {wrong}" in caplog.text)
        assert lonely.manager.peers() == [] and expecting.peers() == []
        await assert_accepts_good_peer(other)
    finally:
        for manager in (expecting, other.manager, lonely.manager):
            await manager.stop()


async def test_replayed_frame_closes_the_connection(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="p2p")
    key = KeyPair.generate()
    client = await client_handshake(server, key)
    frame = encode_frame(client.channel.seal(encode_message("txs", [b"tx-1"])))
    client.channel.writer.write(frame)
    await wait_until(lambda: server.received == [(key.address, "txs", [b"tx-1"])])
    client.channel.writer.write(frame)  # the same bytes again
    await assert_closed_by_server(client.channel.reader)
    assert len(server.received) == 1
    assert "does not authenticate" in caplog.text
    await assert_accepts_good_peer(server)


async def test_modified_frame_closes_the_connection(server: Server) -> None:
    client = await client_handshake(server)
    sealed = bytearray(client.channel.seal(encode_message("txs", [b"tx-1"])))
    sealed[-1] ^= 0x40
    client.channel.writer.write(encode_frame(bytes(sealed)))
    await assert_closed_by_server(client.channel.reader)
    assert server.received == []
    assert server.manager.counters.penalties == 1
    await assert_accepts_good_peer(server)


async def test_oversized_or_truncated_frame_after_handshake_closes(server: Server) -> None:
    client = await client_handshake(server)
    client.channel.writer.write((FAST.max_frame_bytes + 1).to_bytes(4, "big"))
    await assert_closed_by_server(client.channel.reader)
    client = await client_handshake(server)
    client.channel.writer.write((100).to_bytes(4, "big") + b"short")
    client.channel.writer.write_eof()
    await assert_closed_by_server(client.channel.reader)
    await wait_until(lambda: server.manager.counters.penalties == 2)
    await assert_accepts_good_peer(server)


async def test_invalid_message_is_penalized_but_the_connection_survives(server: Server) -> None:
    client = await client_handshake(server)
    await client.channel.send(b"\x93not an envelope")
    await client.channel.send(msgpack.packb({"body": 1, "kind": "unknown-kind"}))
    await client.channel.send(encode_message("vote", {"round": 0}))
    await wait_until(lambda: len(server.received) == 1)
    assert server.received[0][1:] == ("vote", {"round": 0})
    assert server.manager.counters.penalties == 2
    [info] = server.manager.peers()
    assert info.score == pytest.approx(FAST.initial_score - 2 * FAST.penalty_invalid_message, abs=1)
    await client.channel.close()


async def test_idle_connection_is_closed_but_pings_keep_peers_alive(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="p2p")
    config = PeerManagerConfig(idle_timeout_s=0.4, ping_interval_s=0.1, pex=False)
    server = Server(config)
    await server.manager.start()
    friend = PeerManager(
        KeyPair.generate(),
        CHAIN,
        GENESIS,
        persistent_peers=[f"127.0.0.1:{server.port}"],
        config=config,
    )
    await friend.start()
    try:
        await wait_until(lambda: len(server.manager.peers()) == 1)
        quiet = await client_handshake(server)  # never sends a frame, never answers
        await assert_closed_by_server(quiet.channel.reader)
        assert "idle for 0.4 s" in caplog.text
        assert [p.node_address for p in server.manager.peers()] == [friend.node_address]
        assert friend.counters.dials == 1
    finally:
        await friend.stop()
        await server.manager.stop()

"""An attacking peer: the real handshake with a free node key, then whatever it likes.

    identity = ChainIdentity.of_home(net.node(0).home)
    attacker = AttackerPeer(identity, "127.0.0.1", node.p2p_port, source_host="127.11.0.2")
    await attacker.connect()                       # p2p/handshake.py, a fresh node key
    await attacker.send("block_request", {"height": 3})
    closed = await attacker.closed_by_node(10.0)   # the node hung up on it
    refused = await is_refused(identity, "127.0.0.1", node.p2p_port, "127.11.0.2")

Every attacker connects from its own loopback address (`source_address`): honest nodes
run on 127.0.0.1, each attack gets a /16 of 127.0.0.0/8 of its own, so that per-IP and
per-/24 limits and IP bans of one attack never touch the honest nodes or another attack.
"""

from __future__ import annotations

import asyncio
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nacl.public

from marketplace_tx.chain.genesis import genesis_from_json
from marketplace_tx.primitives.crypto import KeyPair
from p2p.channel import SecureChannel
from p2p.errors import ChannelError, ConnectionClosed, FrameError, HandshakeError
from p2p.framing import HEADER_BYTES, MAX_FRAME_BYTES, read_frame, write_frame
from p2p.handshake import MAX_HELLO_BYTES, Hello, handshake
from p2p.messages import Message, decode_message, encode_message

CONNECT_TIMEOUT_S = 10.0
"""Time a TCP connect plus handshake may take on a loaded machine."""

REFUSAL_WAIT_S = 3.0
"""How long a refused reconnect may stay open before the node closes it."""

READ_CHUNK_BYTES = 64 * 1024
"""Bytes read at a time while waiting for the node to hang up."""


def source_address(attack: int, host: int = 0) -> str:
    """Loopback address number `host` of attack number `attack` (1 … 245): 127.(10+attack).x.y.

    Hosts 0 … 249 share one /24; host 250 starts the next /24, so that an attack that
    wants many subnets asks for hosts 0, 250, 500, …
    """
    if not 1 <= attack <= 245 or not 0 <= host < 250 * 250:
        raise ValueError("attack is 1 … 245, host 0 … 62,499")
    return f"127.{10 + attack}.{host // 250}.{2 + host % 250}"


@dataclass(frozen=True)
class ChainIdentity:
    """What a hello must carry to pass `check_hello`: the chain id and genesis hash (R31)."""

    chain_id: str
    """The testnet's chain id."""
    genesis_hash: bytes
    """SHA-256 of the canonical genesis (R33)."""

    @classmethod
    def of_home(cls, home: Path) -> ChainIdentity:
        """The identity of the chain a node home follows (its genesis.json)."""
        path = home / "genesis.json"
        genesis = genesis_from_json(path.read_bytes(), str(path))
        return cls(genesis.chain_id, genesis.hash)


async def open_from(host: str, port: int, source_host: str,
                    receive_buffer: int | None = None) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TCP connection to `host:port` bound to `source_host` (an ephemeral port).

    `receive_buffer` shrinks the kernel's receive buffer (SO_RCVBUF, set before the
    connection opens): a peer that does not read then pushes back on the node at once.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if receive_buffer is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.bind((source_host, 0))
        sock.setblocking(False)
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            await asyncio.get_running_loop().sock_connect(sock, (host, port))
            return await asyncio.open_connection(sock=sock)
    except BaseException:
        sock.close()
        raise


async def wait_for_hangup(reader: asyncio.StreamReader, timeout_s: float) -> bool:
    """Read and discard whatever arrives; True once the far end closes or resets within `timeout_s`."""
    try:
        async with asyncio.timeout(timeout_s):
            while await reader.read(READ_CHUNK_BYTES):
                pass
    except TimeoutError:
        return False
    except OSError:
        return True
    return True


class AttackerPeer:
    """One connection of an attacker: a fresh node key, the real handshake, then anything."""

    def __init__(self, identity: ChainIdentity, host: str, port: int, source_host: str,
                 node_key: KeyPair | None = None, receive_buffer: int | None = None) -> None:
        self.identity = identity
        """The chain it claims to follow (the real one, so that the handshake passes)."""
        self.host = host
        """The honest node's P2P host."""
        self.port = port
        """The honest node's P2P port."""
        self.source_host = source_host
        """The loopback address it connects from."""
        self.node_key = node_key or KeyPair.generate()
        """Its node key: free, a new one per connection unless given."""
        self.receive_buffer = receive_buffer
        """SO_RCVBUF of its socket (None: the kernel's default)."""
        self.reader: asyncio.StreamReader | None = None
        """The TCP stream, once connected."""
        self.writer: asyncio.StreamWriter | None = None
        """The TCP stream, once connected."""
        self.channel: SecureChannel | None = None
        """The encrypted stream, once the handshake passed."""

    async def open(self) -> None:
        """Only the TCP connection: nothing is sent (a silent socket)."""
        self.reader, self.writer = await open_from(self.host, self.port, self.source_host, self.receive_buffer)
        OPEN_PEERS.add(self)

    async def connect(self) -> None:
        """TCP, then the whole handshake (p2p/handshake.py); `HandshakeError` or OSError if
        refused (the socket is then closed)."""
        await self.open()
        assert self.reader is not None and self.writer is not None
        try:
            result = await handshake(
                self.reader, self.writer, node_key=self.node_key, chain_id=self.identity.chain_id,
                genesis_hash=self.identity.genesis_hash, initiator=True, timeout_s=CONNECT_TIMEOUT_S,
            )
        except BaseException:
            self.abort()
            raise
        self.channel = result.channel

    async def hello_only(self) -> None:
        """TCP and our plaintext hello; the node's hello is read, the proof never sent."""
        await self.open()
        assert self.reader is not None and self.writer is not None
        hello = Hello(node_address=self.node_key.address,
                      ephemeral_key=bytes(nacl.public.PrivateKey.generate().public_key),
                      chain_id=self.identity.chain_id, genesis_hash=self.identity.genesis_hash)
        write_frame(self.writer, hello.encode())
        await self.writer.drain()
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            await read_frame(self.reader, MAX_HELLO_BYTES)

    async def send(self, kind: str, body: Any) -> None:
        """Seal and send one message, waiting for the socket to take it."""
        await self.send_encoded(encode_message(kind, body))

    async def send_encoded(self, data: bytes) -> None:
        """Seal and send an encoded envelope (or any plaintext at all)."""
        assert self.channel is not None, "connect first"
        await self.channel.send(data)

    def queue(self, kind: str, body: Any) -> None:
        """Seal and write one message without waiting for the socket (the caller drains)."""
        assert self.channel is not None and self.writer is not None, "connect first"
        write_frame(self.writer, self.channel.seal(encode_message(kind, body)))

    def closing(self) -> bool:
        """True once the connection is closed (by either side)."""
        return self.writer is None or self.writer.transport.is_closing()

    def buffered(self) -> int:
        """Bytes written but not yet taken by the socket."""
        return self.writer.transport.get_write_buffer_size() if self.writer is not None else 0

    async def drain(self) -> None:
        """Wait until the socket took what `queue` wrote."""
        assert self.writer is not None
        await self.writer.drain()

    async def send_raw(self, data: bytes) -> None:
        """Write raw bytes on the TCP stream: no frame, no encryption."""
        assert self.writer is not None, "open first"
        self.writer.write(data)
        await self.writer.drain()

    async def send_garbage_frame(self, size: int) -> None:
        """A well-framed payload of random bytes that cannot authenticate (R31)."""
        size = min(size, MAX_FRAME_BYTES)
        await self.send_raw(size.to_bytes(HEADER_BYTES, "big") + os.urandom(size))

    async def receive(self) -> Message:
        """The next message from the node."""
        assert self.channel is not None, "connect first"
        return decode_message(await self.channel.receive())

    async def closed_by_node(self, timeout_s: float) -> bool:
        """True if the node closes the connection within `timeout_s` (what it sends is discarded)."""
        if self.reader is None:
            return True
        return await wait_for_hangup(self.reader, timeout_s)

    def abort(self) -> None:
        """Drop the connection at once (RST)."""
        OPEN_PEERS.discard(self)
        if self.writer is not None:
            self.writer.transport.abort()


OPEN_PEERS: set[AttackerPeer] = set()
"""Attacking connections opened and not yet aborted (a cancelled attack leaves some)."""


def abort_all() -> int:
    """Abort every attacking connection still open; how many there were."""
    peers = list(OPEN_PEERS)
    for peer in peers:
        peer.abort()
    return len(peers)


async def is_refused(identity: ChainIdentity, host: str, port: int, source_host: str,
                     wait_s: float = REFUSAL_WAIT_S) -> bool:
    """True if a fresh node key from `source_host` cannot stay connected: the TCP connect,
    the handshake or the first `wait_s` seconds after it fail (a ban that covers the IP)."""
    comer = AttackerPeer(identity, host, port, source_host)
    try:
        await comer.connect()
    except (HandshakeError, OSError, TimeoutError, ConnectionClosed, FrameError, ChannelError):
        comer.abort()
        return True
    try:
        return await comer.closed_by_node(wait_s)
    finally:
        comer.abort()

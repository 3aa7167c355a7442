"""Send and receive queues bounded in bytes, per peer and in total (issue 13, attack 1; R32).

First the queues of p2p/buffers.py alone, then a real `PeerManager` on 127.0.0.1 against
an attacker that completes the real handshake and then never reads its socket (or
floods it while the application is slow). Every wait is on a condition with a generous
deadline.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import pytest

from marketplace_tx.primitives.crypto import KeyPair, sha256
from p2p.buffers import ByteBudget, ReceiveQueue, SendQueue
from p2p.channel import SecureChannel
from p2p.config import PeerManagerConfig
from p2p.handshake import handshake
from p2p.messages import encode_message
from p2p.peer import Peer
from p2p.peer_manager import PeerManager
from tests.unit.p2p.polling import wait_until

CHAIN = "p2p-memory-test"
GENESIS = sha256(b"p2p memory genesis")
MIB = 1024 * 1024
CONFIG = PeerManagerConfig(
    handshake_timeout_s=5.0, pex=False, idle_timeout_s=120.0,
    send_queue_bytes=1 * MIB, total_send_bytes=3 * MIB,
    receive_queue_bytes=1 * MIB, total_receive_bytes=3 * MIB,
)
"""Small budgets, so that a test crosses them with little traffic."""


# --- the queues alone --------------------------------------------------------------------


def test_send_queue_refuses_once_its_bytes_are_reached_overshooting_by_one_message_at_most() -> None:
    queue = SendQueue(max_messages=4096, max_bytes=1000, max_streamed=4, budget=ByteBudget(10_000))
    assert queue.put(b"v" * 100)  # a vote waits
    assert queue.put(bytes(5000))  # a block larger than the peer's limit still goes after it
    assert not queue.put(b"x")  # full: 5,100 ≥ 1,000 although only 2 of 4,096 messages
    assert queue.bytes == 5100 and queue.budget.used == 5100


def test_send_queues_share_a_total_budget() -> None:
    budget = ByteBudget(2500)
    queues = [SendQueue(4096, 1000, 4, budget) for _ in range(5)]
    messages = [[bytes([index, part]) * 250 for part in range(2)] for index in range(5)]  # distinct objects
    taken = sum(len(data) for queue, pair in zip(queues, messages, strict=True) for data in pair if queue.put(data))
    assert taken == 2500 and budget.used == 2500
    queues[0].close()
    assert budget.used == 1500 and queues[4].put(b"x" * 1)  # a closed queue gives its bytes back


def test_one_message_queued_for_many_peers_counts_once_in_the_total() -> None:
    budget = ByteBudget(2500)
    queues = [SendQueue(4096, 1000, 4, budget) for _ in range(10)]
    gossip = b"g" * 900  # one object in memory, queued for ten peers
    assert all(queue.put(gossip) for queue in queues)
    assert budget.used == 900 and all(queue.bytes == 900 for queue in queues)
    for queue in queues[:9]:
        queue.close()
    assert budget.used == 900  # the last holder still has it
    queues[9].close()
    assert budget.used == 0


def test_send_queue_full_for_counts_from_the_first_refusal_until_a_write() -> None:
    now = [100.0]
    queue = SendQueue(4096, 1000, 4, ByteBudget(10_000), clock=lambda: now[0])
    assert queue.put(b"x" * 1000) and queue.full_for() == 0.0
    assert not queue.put(b"x")
    now[0] += 7.0
    assert queue.full_for() == 7.0
    item = queue._items.popleft()
    queue.written(item)
    assert queue.full_for() == 0.0 and queue.bytes == 0


def test_streamed_items_hold_no_bytes_until_produced_and_are_capped() -> None:
    queue = SendQueue(4096, 1000, max_streamed=3, budget=ByteBudget(10_000))
    assert all(queue.put_streamed(lambda: b"block") for _ in range(3))
    assert not queue.put_streamed(lambda: b"block")
    assert queue.bytes == 0 and queue.streamed == 3


async def test_receive_queue_is_full_by_bytes_and_by_the_total() -> None:
    budget = ByteBudget(3000)
    first: ReceiveQueue[str] = ReceiveQueue(1024, 1000, budget)
    first.put("a", 999)
    assert not first.full
    first.put("b", 1)
    assert first.full  # 2 messages of 1,024, but 1,000 bytes
    second: ReceiveQueue[str] = ReceiveQueue(1024, 5000, budget)
    second.put("c", 2000)
    assert second.full  # its own limit is far, the node's total is reached
    waiter = asyncio.ensure_future(second.wait_for_room())
    await asyncio.sleep(0.01)
    assert not waiter.done()
    item, size = await first.get()
    first.handled(size)  # 999 bytes handled: the total has room again
    await asyncio.wait_for(waiter, 5)


# --- a real peer manager against a peer that does not read --------------------------------


class Attacker:
    """A peer that completes the real handshake, then only does what the test says."""

    def __init__(self, channel: SecureChannel, key: KeyPair) -> None:
        self.channel = channel
        self.key = key

    @classmethod
    async def connect(cls, port: int, receive_buffer: int = 16 * 1024) -> Attacker:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)  # a small window
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock)
        key = KeyPair.generate()
        result = await handshake(reader, writer, node_key=key, chain_id=CHAIN, genesis_hash=GENESIS,
                                 initiator=True, timeout_s=10.0)
        return cls(result.channel, key)


@pytest.fixture
async def manager() -> AsyncIterator[PeerManager]:
    received: list[tuple[bytes, str, Any]] = []
    instance = PeerManager(KeyPair.generate(), CHAIN, GENESIS, "127.0.0.1", 0, (),
                           lambda peer, kind, body: received.append((peer, kind, body)), CONFIG)
    instance.received = received  # type: ignore[attr-defined]
    await instance.start()
    yield instance
    await instance.stop()


def live_peer(manager: PeerManager, address: bytes) -> Peer | None:
    return manager._peers.get(address)


async def connected(manager: PeerManager) -> tuple[Attacker, Peer]:
    attacker = await Attacker.connect(manager.listen_port)
    await wait_until(lambda: live_peer(manager, attacker.key.address) is not None)
    peer = live_peer(manager, attacker.key.address)
    assert peer is not None
    return attacker, peer


async def test_a_peer_that_does_not_read_gets_at_most_its_byte_budget_queued(manager: PeerManager) -> None:
    attacker, peer = await connected(manager)
    body = {"blob": b"\x07" * (128 * 1024)}
    accepted = 0
    for _ in range(400):  # 50 MiB: far below the old 4,096-message cap
        accepted += manager.send(attacker.key.address, "txs", body)
        await asyncio.sleep(0)  # let the writer fill the socket buffers
    kernel_slack = 6 * MIB  # what the two sockets' buffers can hold on loopback
    assert accepted * 128 * 1024 <= CONFIG.send_queue_bytes + 128 * 1024 + kernel_slack, accepted
    assert peer.send_queue_bytes < CONFIG.send_queue_bytes + 128 * 1024 + 64
    assert manager.queue_budgets.send.used <= CONFIG.total_send_bytes


async def test_peers_that_do_not_read_share_the_total_send_budget(manager: PeerManager) -> None:
    attackers = [await connected(manager) for _ in range(4)]
    for _ in range(40):
        for _, peer in attackers:
            peer.send_encoded(encode_message("txs", {"blob": b"\x07" * (256 * 1024)}))  # distinct objects
        await asyncio.sleep(0)
    held = sum(peer.send_queue_bytes for _, peer in attackers)
    assert held <= CONFIG.total_send_bytes, held  # 4 × 1 MiB per peer would be 4 MiB
    assert manager.queue_budgets.send.used == held


async def test_a_peer_whose_queue_stays_full_is_disconnected() -> None:
    config = replace(CONFIG, send_stall_timeout_s=0.5, ping_interval_s=0.2)
    manager = PeerManager(KeyPair.generate(), CHAIN, GENESIS, "127.0.0.1", 0, (), None, config)
    await manager.start()
    try:
        attacker, peer = await connected(manager)
        body = {"blob": b"\x07" * (256 * 1024)}
        for _ in range(100):
            manager.send(attacker.key.address, "txs", body)
            await asyncio.sleep(0)
        await wait_until(lambda: peer.is_closing)
        assert peer.close_reason is not None and "not reading" in peer.close_reason
        await peer.wait_closed()
        assert manager.queue_budgets.send.used == 0  # its queue's bytes were given back
    finally:
        await manager.stop()


async def test_reading_pauses_while_the_receive_queue_holds_its_bytes() -> None:
    release = asyncio.Event()
    handled: list[str] = []

    async def slow(peer: bytes, kind: str, body: Any) -> None:
        await release.wait()
        handled.append(kind)

    manager = PeerManager(KeyPair.generate(), CHAIN, GENESIS, "127.0.0.1", 0, (), slow, CONFIG)
    await manager.start()
    try:
        attacker, peer = await connected(manager)
        frame = encode_message("status", {"blob": b"\x07" * (128 * 1024)})

        async def flood() -> None:
            for _ in range(40):  # 5 MiB, well under the rate limit's 32 MiB burst
                await attacker.channel.send(frame)

        flooding = asyncio.ensure_future(flood())
        await wait_until(lambda: peer.messages_in >= 8)
        await asyncio.sleep(0.3)  # give the reader every chance to read on (it must not)
        assert peer.messages_in <= CONFIG.receive_queue_bytes // len(frame) + 2, peer.messages_in
        assert peer.receive_queue_bytes <= CONFIG.receive_queue_bytes + len(frame)
        release.set()
        await wait_until(lambda: len(handled) == 40)  # nothing was lost: only delayed
        await asyncio.wait_for(flooding, 30)
    finally:
        await manager.stop()


async def test_streamed_messages_are_produced_only_when_written(manager: PeerManager) -> None:
    attacker, peer = await connected(manager)
    produced: list[int] = []

    def producer(index: int) -> Callable[[], bytes]:
        def make() -> bytes:
            produced.append(index)
            return encode_message("block_response", {"blob": b"\x07" * (512 * 1024)})
        return make

    queued = [manager.send_streamed(attacker.key.address, producer(index)) for index in range(200)]
    assert queued.count(True) == CONFIG.max_streamed_per_peer  # the rest are refused
    await wait_until(lambda: len(produced) >= 2)
    await asyncio.sleep(0.5)  # the attacker reads nothing: production stops at the socket
    assert len(produced) <= 2 + (6 * MIB) // (512 * 1024), len(produced)
    assert peer.send_queue_bytes <= 512 * 1024 + 64

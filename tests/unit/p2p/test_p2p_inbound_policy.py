"""Inbound connection policy (issue 13, attack 4; R31, R32).

Real sockets on loopback: an attacker binds 127.0.0.2, 127.0.0.3… as its source
address, so per-IP and per-subnet limits are tested on one machine. The handshake
timeout is long (30 s) so that a connection closed within a few seconds was closed by
the policy, not by the deadline. Every wait is on a condition with a generous deadline.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import nacl.public
import pytest

from marketplace_tx.primitives.crypto import KeyPair, sha256
from p2p.config import PeerManagerConfig
from p2p.errors import HandshakeError
from p2p.framing import encode_frame, read_frame
from p2p.handshake import MAX_PREAUTH_FRAME_BYTES, Hello, handshake
from p2p.inbound_policy import RESERVED_ONLY_SPARE
from p2p.messages import encode_message
from p2p.peer_manager import PeerManager
from tests.unit.p2p.polling import wait_until

CHAIN = "p2p-inbound-test"
GENESIS = sha256(b"p2p inbound genesis")
SLOW_HANDSHAKE = PeerManagerConfig(
    handshake_timeout_s=30.0, backoff_initial_s=0.05, backoff_max_s=0.3, pex=False
)
CLOSED_AT_ONCE_S = 10.0
"""Far below the 30 s handshake deadline: a connection closed sooner was refused."""


def unused_port() -> int:
    """A port nothing listens on (for a persistent peer that cannot be dialed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Harness:
    """Managers and raw client streams, all closed at the end of the test."""

    def __init__(self) -> None:
        self.managers: list[PeerManager] = []
        self.writers: list[asyncio.StreamWriter] = []

    async def manager(
        self, config: PeerManagerConfig, persistent: list[str] = (), key: KeyPair | None = None
    ) -> PeerManager:
        manager = PeerManager(
            key or KeyPair.generate(), CHAIN, GENESIS, "127.0.0.1", 0, persistent, None, config
        )
        await manager.start()
        self.managers.append(manager)
        return manager

    async def raw(
        self, target: PeerManager, source: str
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", target.listen_port, local_addr=(source, 0)
        )
        self.writers.append(writer)
        return reader, writer

    async def join(self, target: PeerManager, source: str) -> KeyPair:
        """A fresh identity completes the handshake from `source` (and then stays silent)."""
        reader, writer = await self.raw(target, source)
        key = KeyPair.generate()
        await handshake(
            reader, writer, node_key=key, chain_id=CHAIN, genesis_hash=GENESIS,
            initiator=True, timeout_s=CLOSED_AT_ONCE_S,
        )
        return key

    async def close(self) -> None:
        for writer in self.writers:
            writer.transport.abort()
        await asyncio.gather(*(manager.stop() for manager in self.managers))


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    instance = Harness()
    yield instance
    await instance.close()


async def greeted(reader: asyncio.StreamReader) -> bool:
    """True if the node sent its hello, False if it closed the connection without a byte."""
    return await asyncio.wait_for(reader.read(1), CLOSED_AT_ONCE_S) != b""


async def test_one_ip_holds_at_most_max_inbound_per_ip_connections(harness: Harness) -> None:
    node = await harness.manager(replace(SLOW_HANDSHAKE, max_inbound_per_ip=2))
    silent = [(await harness.raw(node, "127.0.0.2"))[0] for _ in range(2)]
    assert all([await greeted(reader) for reader in silent])  # in the handshake: counted
    third, _ = await harness.raw(node, "127.0.0.2")
    assert not await greeted(third)  # refused at accept, before any byte or crypto
    other, _ = await harness.raw(node, "127.0.0.3")
    assert await greeted(other)
    # connected peers count too
    for _ in range(2):
        await harness.join(node, "127.0.0.4")
    await wait_until(lambda: len(node.peers()) == 2)
    late, _ = await harness.raw(node, "127.0.0.4")
    assert not await greeted(late)
    assert node.counters.rejected == 2


async def test_one_subnet_holds_at_most_max_inbound_per_subnet(harness: Harness) -> None:
    config = replace(SLOW_HANDSHAKE, max_inbound_per_ip=2, max_inbound_per_subnet=3)
    node = await harness.manager(config)
    for source in ("127.0.0.2", "127.0.0.2", "127.0.0.3"):
        reader, _ = await harness.raw(node, source)
        assert await greeted(reader)
    same_subnet, _ = await harness.raw(node, "127.0.0.4")
    assert not await greeted(same_subnet)
    other_subnet, _ = await harness.raw(node, "127.0.1.4")
    assert await greeted(other_subnet)


async def test_a_persistent_peer_gets_in_when_one_host_fills_every_slot(harness: Harness) -> None:
    honest_key = KeyPair.generate()
    # the node names the honest peer but cannot dial it: the peer must come in
    persistent = [f"{honest_key.address.hex()}@127.0.0.1:{unused_port()}"]
    node = await harness.manager(replace(SLOW_HANDSHAKE, max_inbound=3), persistent)
    for source in ("127.0.0.1", "127.0.0.1", "127.0.0.2"):  # fresh (free) identities
        await harness.join(node, source)
    await wait_until(lambda: len(node.peers()) == 3)
    # and more silent sockets than may wait past the limits (RESERVED_ONLY_SPARE + 1)
    silent = [(await harness.raw(node, "127.0.0.1"))[0] for _ in range(RESERVED_ONLY_SPARE + 3)]
    honest = await harness.manager(SLOW_HANDSHAKE, [f"{node.node_address.hex()}@127.0.0.1:"
                                                    f"{node.listen_port}"], honest_key)
    await wait_until(lambda: honest_key.address in {info.node_address for info in node.peers()})
    assert len(node.peers()) == 4
    # one more fresh identity is still refused: reserved slots are for reserved keys only
    with pytest.raises(HandshakeError):
        await harness.join(node, "127.0.0.3")
    assert honest.peers()[0].node_address == node.node_address
    del silent


async def test_unconditional_peers_are_reserved_too(harness: Harness) -> None:
    honest_key = KeyPair.generate()
    config = replace(SLOW_HANDSHAKE, max_inbound=1, reserved_peers=frozenset({honest_key.address}))
    node = await harness.manager(config)
    await harness.join(node, "127.0.0.2")
    await wait_until(lambda: len(node.peers()) == 1)
    address = f"{node.node_address.hex()}@127.0.0.1:{node.listen_port}"
    await harness.manager(SLOW_HANDSHAKE, [address], honest_key)
    await wait_until(lambda: len(node.peers()) == 2)


async def test_a_ban_covers_the_ip_but_not_a_reserved_peer_on_it(harness: Harness) -> None:
    honest_key = KeyPair.generate()
    persistent = [f"{honest_key.address.hex()}@127.0.0.1:{unused_port()}"]
    node = await harness.manager(SLOW_HANDSHAKE, persistent)
    attacker = await harness.join(node, "127.0.0.1")
    await wait_until(lambda: len(node.peers()) == 1)
    node.report(attacker.address, 1_000, "invalid block")
    await wait_until(lambda: node.peers() == [])
    # a fresh identity from the banned IP is refused …
    with pytest.raises(HandshakeError):
        await harness.join(node, "127.0.0.1")
    # … an honest persistent peer on the same IP is not
    address = f"{node.node_address.hex()}@127.0.0.1:{node.listen_port}"
    await harness.manager(SLOW_HANDSHAKE, [address], honest_key)
    await wait_until(lambda: [info.node_address for info in node.peers()] == [honest_key.address])
    # and other IPs are not banned
    await harness.join(node, "127.0.0.2")
    await wait_until(lambda: len(node.peers()) == 2)


async def test_failed_handshakes_cost_the_ip_until_it_is_banned(harness: Harness) -> None:
    node = await harness.manager(SLOW_HANDSHAKE)
    for _ in range(3):  # a 4 GiB hello: 50 points each (penalty_bad_frame); banned below 0
        reader, writer = await harness.raw(node, "127.0.0.5")
        writer.write(b"\xff\xff\xff\xff")
        await asyncio.wait_for(reader.read(), CLOSED_AT_ONCE_S)  # its hello, then EOF at once
    await wait_until(lambda: node.counters.handshakes_failed == 3)
    banned, _ = await harness.raw(node, "127.0.0.5")
    assert not await greeted(banned)
    other, _ = await harness.raw(node, "127.0.0.6")
    assert await greeted(other)


async def test_a_peer_that_merely_hangs_up_costs_its_ip_nothing(harness: Harness) -> None:
    node = await harness.manager(SLOW_HANDSHAKE)
    for _ in range(20):  # e.g. dialers that gave up while this node was paused
        reader, writer = await harness.raw(node, "127.0.0.9")
        assert await greeted(reader)
        writer.transport.abort()
    await wait_until(lambda: node.counters.handshakes_failed == 20)
    reader, _ = await harness.raw(node, "127.0.0.9")
    assert await greeted(reader)
    assert node._inbound.ip_scores.score("127.0.0.9") == pytest.approx(100)


async def test_the_proof_frame_is_limited_to_1024_bytes_before_authentication(
    harness: Harness,
) -> None:
    node = await harness.manager(SLOW_HANDSHAKE)
    reader, writer = await harness.raw(node, "127.0.0.7")
    ephemeral = nacl.public.PrivateKey.generate()
    ours = Hello(KeyPair.generate().address, bytes(ephemeral.public_key), CHAIN, GENESIS)
    writer.write(encode_frame(ours.encode()))
    await read_frame(reader, MAX_PREAUTH_FRAME_BYTES)  # the node's hello
    writer.write((MAX_PREAUTH_FRAME_BYTES + 1).to_bytes(4, "big"))  # a proof of 1,025 bytes …
    await writer.drain()
    rest: list[Any] = []

    async def until_closed() -> None:
        while chunk := await reader.read(65536):  # the node's proof, then EOF
            rest.append(chunk)

    await asyncio.wait_for(until_closed(), CLOSED_AT_ONCE_S)  # … is refused before its body
    await wait_until(lambda: node.counters.handshakes_failed == 1)
    assert node._inbound.ip_scores.score("127.0.0.7") == pytest.approx(50, abs=1)


async def test_a_peer_exchange_flood_bans_the_sender_and_its_ip(harness: Harness) -> None:
    node = await harness.manager(replace(SLOW_HANDSHAKE, pex=True))
    reader, writer = await harness.raw(node, "127.0.0.8")
    key = KeyPair.generate()
    result = await handshake(reader, writer, node_key=key, chain_id=CHAIN, genesis_hash=GENESIS,
                             initiator=True, timeout_s=CLOSED_AT_ONCE_S)
    await wait_until(lambda: len(node.peers()) == 1)
    for number in range(16):  # 16 × 64 private addresses and a DNS name: the poisoning
        entries = [f"{KeyPair.generate().address.hex()}@10.{number}.{n}.1:26656" for n in range(63)]
        entries.append(f"{KeyPair.generate().address.hex()}@seed.example.com:26656")
        await result.channel.send(encode_message("peers", {"addresses": entries}))
    await wait_until(lambda: node.is_banned(key.address) and node.peers() == [])
    assert node.known_addresses() == []
    late, _ = await harness.raw(node, "127.0.0.8")  # the ban covers the IP
    assert not await greeted(late)


def test_the_node_config_carries_the_connection_policy(tmp_path: Path) -> None:
    from node.config import ConfigError, load_config

    key = KeyPair.generate().address.hex()
    (tmp_path / "config.toml").write_text(
        f'[p2p]\nunconditional_peers = ["{key}"]\nmax_inbound_per_ip = 2\n'
        "max_inbound_per_subnet = 5\nallow_private_peers = true\n"
    )
    p2p = load_config(tmp_path).p2p
    assert (p2p.unconditional_peers, p2p.max_inbound_per_ip) == ((key,), 2)
    assert (p2p.max_inbound_per_subnet, p2p.allow_private_peers) == (5, True)
    for bad in ('unconditional_peers = ["not-a-key"]', "max_inbound_per_ip = 0"):
        (tmp_path / "config.toml").write_text(f"[p2p]\n{bad}\n")
        with pytest.raises(ConfigError):
            load_config(tmp_path)

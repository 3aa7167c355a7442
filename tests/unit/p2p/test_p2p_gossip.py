"""Gossip among several peer managers in one event loop (PROTOCOL R32).

Real sockets on 127.0.0.1 with ephemeral ports; every wait is on a condition with a
generous deadline. The application here relays every gossip message it receives,
as the node will once it has validated it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import pytest

from marketplace_tx.primitives.crypto import KeyPair, sha256
from p2p.config import PeerManagerConfig
from p2p.messages import GOSSIP_KINDS
from p2p.peer import INBOUND, OUTBOUND
from p2p.peer_manager import PeerManager

CHAIN = "p2p-gossip-test"
GENESIS = sha256(b"p2p gossip genesis")
FAST = PeerManagerConfig(
    handshake_timeout_s=2.0,
    backoff_initial_s=0.05,
    backoff_max_s=0.3,
    pex=False,
    pex_interval_s=0.1,
    allow_private_peers=True,  # every node is on 127.0.0.1
)


async def wait_until(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    """Poll `condition` until it holds; fail after a generous deadline."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


class Node:
    """A peer manager and an application that records and relays what it receives."""

    def __init__(
        self,
        config: PeerManagerConfig,
        persistent: list[str],
        relay: bool,
        key: KeyPair | None,
        port: int,
    ) -> None:
        self.key = key or KeyPair.generate()
        self.relay = relay
        self.received: list[tuple[bytes, str, Any]] = []
        self.manager = PeerManager(
            self.key, CHAIN, GENESIS, "127.0.0.1", port, persistent, self.on_message, config
        )

    def on_message(self, peer: bytes, kind: str, body: Any) -> None:
        self.received.append((peer, kind, body))
        if self.relay and kind in GOSSIP_KINDS:
            self.manager.broadcast(kind, body, exclude=peer)

    @property
    def address(self) -> str:
        return f"{self.key.address.hex()}@127.0.0.1:{self.manager.listen_port}"

    def peer_ids(self) -> set[bytes]:
        return {info.node_address for info in self.manager.peers()}

    def bodies(self, kind: str = "txs") -> Counter[Any]:
        return Counter(repr(body) for _, got_kind, body in self.received if got_kind == kind)


class Network:
    """Starts nodes and stops every one of them at the end of the test."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []

    async def start(
        self,
        persistent: tuple[Node, ...] | list[str] = (),
        config: PeerManagerConfig = FAST,
        relay: bool = True,
        key: KeyPair | None = None,
        port: int = 0,
    ) -> Node:
        addresses = [peer if isinstance(peer, str) else peer.address for peer in persistent]
        node = Node(config, addresses, relay, key, port)
        await node.manager.start()
        self.nodes.append(node)
        return node

    async def stop(self, node: Node) -> None:
        await node.manager.stop()
        self.nodes.remove(node)


@pytest.fixture
async def network() -> AsyncIterator[Network]:
    instance = Network()
    yield instance
    await asyncio.gather(*(node.manager.stop() for node in instance.nodes))


async def barrier(origin: Node, others: list[Node], tag: str) -> None:
    """Gossip one more message and wait until everyone has it: earlier traffic has settled."""
    origin.manager.broadcast("txs", {"barrier": tag})
    await wait_until(lambda: all(node.bodies()[repr({"barrier": tag})] == 1 for node in others))


async def test_broadcast_in_a_line_reaches_every_node_exactly_once(network: Network) -> None:
    a = await network.start()
    b = await network.start((a,))
    c = await network.start((b,))
    d = await network.start((c,))
    await wait_until(lambda: [len(n.peer_ids()) for n in (a, b, c, d)] == [1, 2, 2, 1])
    bodies = [{"tx": n} for n in range(20)]
    for body in bodies:
        assert a.manager.broadcast("txs", body) == 1
    await wait_until(lambda: len(d.bodies()) == 20)
    await barrier(a, [b, c, d], "line")
    for node, sender in ((b, a), (c, b), (d, c)):
        assert all(node.bodies()[repr(body)] == 1 for body in bodies)
        assert {peer for peer, _, _ in node.received} == {sender.key.address}
    assert a.received == []  # its own messages never come back
    assert a.manager.broadcast("txs", bodies[0]) == 0  # never relayed twice


async def test_pex_builds_a_mesh_and_gossip_is_still_delivered_once(network: Network) -> None:
    config = replace(FAST, pex=True, max_outbound=3)
    hub = await network.start(config=config)
    spokes = [await network.start((hub,), config=config) for _ in range(3)]
    nodes = [hub, *spokes]
    await wait_until(lambda: all(len(node.peer_ids()) == 3 for node in nodes))
    origin, others = spokes[0], [hub, *spokes[1:]]
    kinds = sorted(GOSSIP_KINDS)
    for n in range(10):
        origin.manager.broadcast(kinds[n % len(kinds)], {"n": n})
    await wait_until(lambda: all(len(node.received) == 10 for node in others))
    await barrier(origin, others, "mesh")
    for node in others:
        assert Counter(kind for _, kind, _ in node.received) == Counter(
            [kinds[n % len(kinds)] for n in range(10)] + ["txs"]
        )
    assert origin.received == []


async def test_the_same_message_from_two_peers_is_delivered_once(network: Network) -> None:
    a = await network.start(relay=False)
    b = await network.start((a,), relay=False)
    c = await network.start((a,), relay=False)
    await wait_until(lambda: len(a.peer_ids()) == 2)
    assert b.manager.send(a.key.address, "vote", {"round": 1})
    await wait_until(lambda: len(a.received) == 1)
    assert c.manager.send(a.key.address, "vote", {"round": 1})
    await wait_until(lambda: a.manager.counters.duplicates == 1)
    # point-to-point kinds are not deduplicated: a repeated status or request is legitimate
    for _ in range(2):
        b.manager.send(a.key.address, "status", {"height": 7})
    await wait_until(lambda: len(a.received) == 3)
    assert [kind for _, kind, _ in a.received] == ["vote", "status", "status"]
    assert {info.node_address: info.height for info in a.manager.peers()}[b.key.address] == 7


async def test_reconnects_with_backoff_after_a_peer_restarts(network: Network) -> None:
    a = await network.start()
    key, port = a.key, a.manager.listen_port
    b = await network.start((a,))
    await wait_until(lambda: b.peer_ids() == {key.address})
    await network.stop(a)
    await wait_until(lambda: b.manager.peers() == [])
    dials = b.manager.counters.dials
    await wait_until(lambda: b.manager.counters.dials >= dials + 2)  # refused while a is down
    restarted = await network.start(key=key, port=port)
    await wait_until(lambda: b.peer_ids() == {key.address} and len(restarted.peer_ids()) == 1)
    restarted.manager.broadcast("block", {"height": 2})
    await wait_until(lambda: len(b.received) == 1)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def test_a_peer_connected_twice_keeps_one_connection(network: Network) -> None:
    key_a, key_b = KeyPair.generate(), KeyPair.generate()
    port_a, port_b = free_port(), free_port()
    # a and b dial each other at once: they settle on one connection, seen from both ends
    a = await network.start([f"{key_b.address.hex()}@127.0.0.1:{port_b}"], key=key_a, port=port_a)
    b = await network.start([f"{key_a.address.hex()}@127.0.0.1:{port_a}"], key=key_b, port=port_b)
    await wait_until(
        lambda: (
            len(a.manager.peers()) == 1
            and len(b.manager.peers()) == 1
            and {a.manager.peers()[0].direction, b.manager.peers()[0].direction}
            == {INBOUND, OUTBOUND}
        )
    )
    # the same peer listed under two names: the second connection is refused
    c = await network.start([a.address, f"localhost:{port_a}"])
    await wait_until(lambda: c.manager.counters.rejected >= 1)
    await wait_until(lambda: c.peer_ids() == {key_a.address} and len(a.peer_ids()) == 2)
    assert [p.direction for p in c.manager.peers()] == [OUTBOUND]


async def test_of_two_connections_both_sides_keep_the_one_the_lower_address_dialed(
    network: Network,
) -> None:
    listener = await network.start()
    dialer = await network.start((listener,))
    await wait_until(lambda: len(listener.peer_ids()) == 1)
    # a second process with the listener's key dials the dialer: now two connections
    twin = await network.start((dialer,), key=listener.key)
    if listener.key.address < dialer.key.address:  # the twin's connection wins
        await wait_until(lambda: len(twin.peer_ids()) == 1 and listener.peer_ids() == set())
        assert [p.direction for p in dialer.manager.peers()] == [INBOUND]
    else:  # the dialer's own connection wins; the twin is refused
        await wait_until(lambda: dialer.manager.counters.rejected >= 2)
        assert len(listener.peer_ids()) == 1  # (the twin's refused attempts come and go)
        assert [p.direction for p in dialer.manager.peers()] == [OUTBOUND]


async def test_inbound_and_outbound_limits_hold(network: Network) -> None:
    hub = await network.start(config=replace(FAST, max_inbound=2))
    for _ in range(4):
        await network.start((hub,))
    await wait_until(lambda: len(hub.peer_ids()) == 2 and hub.manager.counters.rejected >= 4)
    assert [info.direction for info in hub.manager.peers()] == [INBOUND, INBOUND]

    sharer = await network.start(config=replace(FAST, pex=True))
    for _ in range(3):
        await network.start((sharer,))
    explorer = await network.start((sharer,), config=replace(FAST, pex=True, max_outbound=2))
    await wait_until(lambda: len(explorer.manager.known_addresses()) >= 3)
    await wait_until(lambda: len(explorer.peer_ids()) == 2)
    seen = explorer.manager.counters.pex_messages
    await wait_until(lambda: explorer.manager.counters.pex_messages >= seen + 3)
    assert [info.direction for info in explorer.manager.peers()] == [OUTBOUND, OUTBOUND]
    assert explorer.manager.counters.dials == 2


async def test_a_flooding_peer_is_throttled_scored_down_and_banned(
    network: Network, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="p2p")
    victim = await network.start(
        config=replace(
            FAST, messages_per_s=50, message_burst=50, penalty_flood=10, ban_duration_s=60
        )
    )
    left = await network.start((victim,))
    right = await network.start((victim,))
    flooder = await network.start((victim,), relay=False)
    await wait_until(lambda: len(victim.peer_ids()) == 3)
    for n in range(400):
        flooder.manager.send(victim.key.address, "txs", {"flood": n})
    await wait_until(lambda: victim.manager.is_banned(flooder.key.address))
    await wait_until(lambda: flooder.key.address not in victim.peer_ids())
    assert "rate limit exceeded" in caplog.text and "banning" in caplog.text
    flooded = sum(1 for peer, _, _ in victim.received if peer == flooder.key.address)
    assert flooded < 400 and victim.manager.counters.penalties >= 10  # ≥ 10 messages dropped
    # the flooder keeps redialing (it is persistent) and is refused while banned
    rejected = victim.manager.counters.rejected
    await wait_until(lambda: victim.manager.counters.rejected >= rejected + 2)
    assert flooder.key.address not in victim.peer_ids()
    # the honest peers are unaffected
    for n in range(20):
        left.manager.broadcast("txs", {"honest": n})
    await wait_until(lambda: sum(1 for body in right.bodies() if "honest" in body) == 20)
    assert victim.peer_ids() == {left.key.address, right.key.address}


async def test_application_reports_lower_the_score_then_ban(network: Network) -> None:
    a = await network.start()
    b = await network.start((a,))
    await wait_until(lambda: len(a.peer_ids()) == 1)
    a.manager.report(b.key.address, 30, "invalid transaction")
    [info] = a.manager.peers()
    assert info.score == pytest.approx(70, abs=1)
    a.manager.report(b.key.address, 80, "invalid block")
    await wait_until(lambda: a.manager.peers() == [] and b.manager.peers() == [])
    assert a.manager.is_banned(b.key.address)
    rejected = a.manager.counters.rejected
    await wait_until(lambda: a.manager.counters.rejected > rejected)
    assert a.manager.peers() == []


# --- evidence floods (issue 13, attack 3) -------------------------------------------
# Honest peers relay one evidence item per equivocation (the pool holds at most one per
# validator), so `evidence_per_s`/`evidence_burst` (p2p/config.py) bound what a peer may
# make the node check: items beyond cost `penalty_flood` each before they are queued.


def test_evidence_limits_must_be_positive() -> None:
    with pytest.raises(ValueError):
        PeerManagerConfig(evidence_per_s=0)
    with pytest.raises(ValueError):
        PeerManagerConfig(evidence_burst=0)


async def test_an_evidence_flood_is_cut_in_the_read_loop(network: Network, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="p2p")
    victim = await network.start(config=replace(FAST, evidence_per_s=2.0, evidence_burst=16.0))
    honest = await network.start((victim,))
    flooder = await network.start((victim,), relay=False)
    await wait_until(lambda: len(victim.peer_ids()) == 2)
    for number in range(800):  # the adversary harness's burst of bogus items
        flooder.manager.send(victim.key.address, "evidence", {"item": number})
    await wait_until(lambda: victim.manager.is_banned(flooder.key.address))
    await wait_until(lambda: flooder.key.address not in victim.peer_ids())
    assert "evidence rate limit exceeded" in caplog.text
    delivered = sum(1 for peer, kind, _ in victim.received if peer == flooder.key.address and kind == "evidence")
    assert delivered <= 16 + 1  # the burst (and what the rate regained meanwhile), never the 800
    # an honest peer's few items still get through
    for number in range(3):
        honest.manager.send(victim.key.address, "evidence", {"honest": number})
    await wait_until(lambda: sum(1 for peer, kind, _ in victim.received
                                 if peer == honest.key.address and kind == "evidence") == 3)
    assert honest.key.address in victim.peer_ids()

"""The message-level attacks of issue 13, each a class with `prepare` and `run`.

Every attack speaks the real handshake with free node keys (attacker.py), from its own
loopback /16 (`Attack.number`), against node0 of the shared testnet unless it says
otherwise. `run` attacks for `duration_s`, then looks at the node's defence: did the
node hang up on every attacking connection within `BAN_DEADLINE_S`, and is a fresh key
from the same IP refused afterwards (a ban that covers the IP)?

- `BlockRequestAmplification`: thousands of `block_request`s, half for the largest block,
  half for every height in turn, never reading the socket (issue 13, attack 1);
- `FutureProposals`: unsigned proposals for the next heights, then unsigned 1 MiB
  proposals for heights far ahead (attack 2);
- `FakeEvidence`: evidence naming real validators with bogus signatures, from several
  connections at once (attack 3);
- `NeverReadyTransactions`: future-nonce transfers of funded accounts plus a 10,000-item
  `txs` message of transfers nobody can pay, then more of those (attack 5, and free
  gossip rejections);
- `FalseHeightClaim`: `status` and a proposal at height 2^62 (/status must not say syncing).

The connection attacks (slot exhaustion, garbage frames, peer-exchange poisoning,
slowloris HTTP) are in attacks_connections.py.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterable, Iterator
from typing import Any

from marketplace_tx.chain.transaction import sign_transaction
from marketplace_tx.primitives.crypto import KeyPair
from marketplace_tx.rules.evidence import make_evidence
from tests.e2e.adversary.attacker import AttackerPeer, is_refused, source_address
from tests.e2e.adversary.battlefield import Battlefield
from tests.e2e.adversary.measure import BAN_DEADLINE_S, AttackReport, LatencyLoad
from tests.e2e.testnet_harness import wait_until

MIB = 1024 * 1024

DRAIN_EVERY = 50
"""Messages written between two waits for the socket to take them."""

DRAIN_ABOVE_BYTES = MIB
"""Bytes written but not yet taken by the socket above which the sender waits."""


class Attack:
    """One attack: `prepare` (not measured), then `run` (measured) returns its report."""

    name = "attack"
    """Its name in reports and the bench."""
    number = 1
    """Its loopback /16: sources are 127.(10+number).x.y."""
    host_offset = 0
    """Added to every host number of `source` (the bench's later rounds move to fresh /24s)."""

    def __init__(self, field: Battlefield, duration_s: float = 6.0, target: int = 0) -> None:
        self.field = field
        """The testnet."""
        self.duration_s = duration_s
        """How long the attack proper lasts."""
        self.target = target
        """Index of the node attacked."""

    def prepare(self) -> None:
        """Nothing to prepare by default."""

    async def run(self) -> AttackReport:
        """The attack and the look at the defence."""
        raise NotImplementedError

    def source(self, host: int = 0) -> str:
        """The attack's loopback address number `host`."""
        return source_address(self.number, host + self.host_offset)

    def peer(self, host: int = 0, receive_buffer: int | None = None) -> AttackerPeer:
        """A fresh attacking peer from address `host`, aimed at the target's P2P port."""
        node = self.field.node(self.target)
        return AttackerPeer(self.field.identity, node.host, node.p2p_port, self.source(host),
                            receive_buffer=receive_buffer)

    async def judge(self, report: AttackReport, peers: list[AttackerPeer], source_host: str) -> AttackReport:
        """Fill `disconnected` (each peer hung up on within the deadline) and `refused`."""
        closed = await asyncio.gather(*(peer.closed_by_node(BAN_DEADLINE_S) for peer in peers))
        report.disconnected = all(closed)
        report.details["connections_closed_by_node"] = f"{sum(closed)}/{len(closed)}"
        for peer in peers:
            peer.abort()
        node = self.field.node(self.target)
        report.refused = await is_refused(self.field.identity, node.host, node.p2p_port, source_host)
        return report


async def paced(peer: AttackerPeer, messages: Iterable[tuple[str, Any]], rate: float, burst: int,
                duration_s: float) -> int:
    """Send `burst` messages at once, then `rate` a second, for at most `duration_s`.

    Stops early when the messages run out or the node hangs up or stops reading;
    returns how many were written.
    """
    start = time.monotonic()
    deadline = start + duration_s
    sent = 0
    try:
        for kind, body in messages:
            now = time.monotonic()
            if now >= deadline or peer.closing():
                break
            due = start + max(0, sent - burst) / rate
            if due > now:
                await asyncio.sleep(min(due, deadline) - now)
            peer.queue(kind, body)
            sent += 1
            if sent % DRAIN_EVERY == 0 or peer.buffered() > DRAIN_ABOVE_BYTES:
                async with asyncio.timeout(max(0.05, deadline - time.monotonic())):
                    await peer.drain()
    except (OSError, TimeoutError, AssertionError):
        pass
    return sent


class BlockRequestAmplification(Attack):
    """Attack 1: `block_request`s, every other one for the largest block, the rest for
    every height in turn, from a socket that is never read (a 4 KiB receive buffer)."""

    name = "block_request amplification"
    number = 1
    requests = 4200
    """Requests sent (the issue's count)."""
    receive_buffer = 4096
    """SO_RCVBUF of the attacker's socket: nothing it is sent gets far."""
    min_head = 150
    """Heights the chain must hold first, so that the distinct heights asked outnumber what
    a node queues for one peer (node/block_serving.py answers a repeat once per window)."""

    def prepare(self) -> None:
        """Let an honest load make blocks until the chain holds `min_head` of them."""
        node = self.field.node(self.target)
        if node.height() >= self.min_head:
            return
        load = LatencyLoad(self.field.net)
        load.start()
        try:
            wait_until(lambda: node.height() >= self.min_head, 180.0, f"{self.min_head} blocks")
        finally:
            load.stop_sending()
            load.close()

    async def run(self) -> AttackReport:
        """Ask within the old per-peer message rate, never read, then judge."""
        peer = self.peer(receive_buffer=self.receive_buffer)
        await peer.connect()
        big = self.field.big_block_height
        head = self.field.node(self.target).height()

        def requests() -> Iterator[tuple[str, Any]]:
            for number in range(self.requests):
                yield "block_request", {"height": big if number % 2 == 0 else 1 + (number // 2) % head}

        sent = await paced(peer, requests(), rate=800.0, burst=1500, duration_s=self.duration_s)
        report = AttackReport(self.name, details={"requests_sent": sent, "big_height": big, "head": head})
        return await self.judge(report, [peer], peer.source_host)


class FutureProposals(Attack):
    """Attack 2: unsigned proposals for the height being decided and the next (only a
    signature check rejects those), then unsigned 1 MiB proposals for heights far ahead
    (the old buffer kept every one of them, unchecked and free)."""

    name = "future-height proposals"
    number = 2
    near = 4
    """Small proposals for the height being decided and the next, round 0, sent first
    (four cost less than a ban before issue 13: 4 × 20)."""
    far = 70
    """1 MiB proposals 90+ heights ahead (the old buffer kept them up to 100 heights ahead)."""

    async def run(self) -> AttackReport:
        """Within the old per-peer byte rate (12 MiB/s), then judge."""
        peer = self.peer()
        await peer.connect()
        chain_id = self.field.identity.chain_id
        head = self.field.node(self.target).height()

        def proposal(height: int, round_number: int, size: int) -> tuple[str, Any]:
            fields = {"block_hash": os.urandom(32), "chain_id": chain_id, "height": height,
                      "pol_round": -1, "round": round_number}
            return "proposal", {"proposal": fields, "signature": os.urandom(64), "block": os.urandom(size)}

        def proposals() -> Iterator[tuple[str, Any]]:
            for number in range(self.near):
                yield proposal(head + 1 + number % 2, 0, 1024)
            for number in range(self.far):
                yield proposal(head + 90 + number % 8, number, MIB)

        sent = await paced(peer, proposals(), rate=12.0, burst=8, duration_s=self.duration_s)
        report = AttackReport(self.name, details={"proposals_sent": sent,
                                                  "far_block_bytes": max(0, sent - self.near) * MIB})
        return await self.judge(report, [peer], peer.source_host)


def fake_evidence(chain_id: str, validator: bytes, height: int, round_number: int) -> dict[str, Any]:
    """Two conflicting prevotes of a real validator, with random signatures (invalid evidence)."""
    def vote() -> dict[str, Any]:
        return {"block_hash": os.urandom(32), "chain_id": chain_id, "height": height, "round": round_number,
                "signature": os.urandom(64), "type": "prevote"}
    return make_evidence(validator, vote(), vote())


class FakeEvidence(Attack):
    """Attack 3: bogus evidence about real validators from several connections."""

    name = "fake evidence"
    number = 3
    connections = 4
    """Attacking connections, each from its own IP of one /24."""
    rate = 800.0
    """Evidence items per second and connection (just under the old per-peer message rate)."""

    async def run(self) -> AttackReport:
        """Flood, then judge every connection."""
        peers = [self.peer(host) for host in range(self.connections)]
        await asyncio.gather(*(peer.connect() for peer in peers))
        top = max(2, self.field.node().height())
        chain_id = self.field.identity.chain_id
        validators = self.field.validators

        def items(offset: int) -> Iterator[tuple[str, Any]]:
            number = offset
            while True:
                number += self.connections
                yield "evidence", fake_evidence(chain_id, validators[number % len(validators)],
                                                1 + number % (top - 1), number)

        sent = await asyncio.gather(*(paced(peer, items(index), self.rate, int(self.rate), self.duration_s)
                                      for index, peer in enumerate(peers)))
        report = AttackReport(self.name, details={"evidence_sent": sum(sent)})
        return await self.judge(report, peers, peers[0].source_host)


class NeverReadyTransactions(Attack):
    """Attack 5: future-nonce transfers that never become ready, and a 10,000-item `txs`
    message of transfers nobody can pay (each costs the node a signature check)."""

    name = "never-ready transactions"
    number = 5
    batch = 10_000
    """Items of the first `txs` message (the old per-message maximum)."""
    later_batches = (4000, 4000, 4000)
    """Sizes of the `txs` messages of unpayable transfers that follow it."""

    def __init__(self, field: Battlefield, duration_s: float = 6.0, target: int = 0) -> None:
        super().__init__(field, duration_s, target)
        self.bodies: list[list[bytes]] = []
        """The `txs` bodies, signed by `prepare`."""

    def prepare(self) -> None:
        """Sign the future-nonce transfers and the batches of unpayable ones."""
        chain_id = self.field.identity.chain_id
        fee = self.field.node().status()["min_fee"]
        recipient = self.field.net.address("alice")
        never_ready = [sign_transaction(key, chain_id, "transfer", {"to": recipient, "amount": 1}, nonce, fee).raw
                       for key in self.field.funded_keys for nonce in range(1, 65)]
        sizes = [self.batch - len(never_ready), *self.later_batches]
        for round_number, size in enumerate(sizes):
            unpayable = [sign_transaction(KeyPair.generate(), chain_id, "transfer",
                                          {"to": recipient, "amount": 1 + round_number}, 0, fee).raw
                         for _ in range(size)]
            self.bodies.append((never_ready if round_number == 0 else []) + unpayable)

    async def run(self) -> AttackReport:
        """Send the batches half a second apart, then judge."""
        peer = self.peer()
        await peer.connect()
        messages = (("txs", body) for body in self.bodies)
        sent = await paced(peer, messages, rate=2.0, burst=1, duration_s=self.duration_s)
        report = AttackReport(self.name, details={"txs_messages": sent,
                                                  "transactions": sum(map(len, self.bodies[:sent]))})
        return await self.judge(report, [peer], peer.source_host)


CLAIMED_HEIGHT = 2**62
"""The false height (issue 13: "one unsigned proposal at height 2^62 set the sync target")."""


class FalseHeightClaim(Attack):
    """A `status` and an unsigned proposal at height 2^62: the node must not start syncing."""

    name = "false height claim"
    number = 9

    async def run(self) -> AttackReport:
        """Claim, watch /status while connected, then judge."""
        peer = self.peer()
        await peer.connect()
        chain_id = self.field.identity.chain_id
        await peer.send("status", {"height": CLAIMED_HEIGHT, "block_hash": os.urandom(32)})
        fields = {"block_hash": os.urandom(32), "chain_id": chain_id, "height": CLAIMED_HEIGHT,
                  "pol_round": -1, "round": 0}
        await peer.send("proposal", {"proposal": fields, "signature": os.urandom(64), "block": os.urandom(1024)})
        seen = await asyncio.to_thread(self._watch_status, self.duration_s)
        report = AttackReport(self.name, details={"status_samples": len(seen),
                                                  "highest_sync_target": max((s[1] for s in seen), default=None)})
        report.checks["/status never says syncing after a 2^62 claim"] = bool(seen) and not any(s[0] for s in seen)
        report.checks["the sync target stays below 2^62"] = all(s[1] < CLAIMED_HEIGHT for s in seen)
        report.disconnected = report.refused = None
        report.details["ban"] = ("does not apply: one unproven claim costs 0.05 (beyond the window) and 5 once "
                                 "its block is not served (node/block_sync.py); it moves nothing")
        peer.abort()
        return report

    def _watch_status(self, seconds: float) -> list[tuple[bool, int]]:
        node = self.field.node(self.target)
        samples = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            status = node.try_status()
            if status is not None:
                samples.append((bool(status["syncing"]), int(status["sync"]["target"])))
            time.sleep(0.2)
        return samples

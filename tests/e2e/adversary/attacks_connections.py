"""The connection-level attacks of issue 13 (see attacks.py for the message-level ones).

- `SlotExhaustion`: every inbound slot of two validators held by free identities from
  many /24s, plus silent TCP sockets; meanwhile one of them is restarted and must
  reconnect to every other validator (reserved slots for persistent peers; attack 4);
- `GarbageFrames`: plaintext garbage instead of a hello, an 8 MiB frame before
  authentication, undecodable envelopes and frames that do not authenticate, from one
  IP with a fresh key each time (the IP must end up refused);
- `PexPoisoning`: `peers` messages naming loopback listeners of the attacker, a DNS
  name, private and link-local ranges, a new key for a known endpoint, and enough
  entries to fill the address book: the node must dial none of the attacker's listeners;
- `Slowloris`: HTTP requests whose headers trickle in one line a second: the node must
  close them within seconds and keep serving honest clients.
"""

from __future__ import annotations

import asyncio
import os
import time
from urllib.parse import urlsplit

from node.config import HttpConfig
from p2p.errors import ChannelError, ConnectionClosed, FrameError, HandshakeError
from p2p.framing import HEADER_BYTES, MAX_FRAME_BYTES
from p2p.messages import MAX_PEX_ADDRESSES
from tests.e2e.adversary.attacker import AttackerPeer, is_refused, open_from, wait_for_hangup
from tests.e2e.adversary.attacks import Attack
from tests.e2e.adversary.measure import BAN_DEADLINE_S, AttackReport
from tests.e2e.harness.testnet_node import NodeHandle
from tests.e2e.testnet_harness import wait_until

REFUSED = (HandshakeError, OSError, TimeoutError, ConnectionClosed, FrameError, ChannelError)
"""What a refused connection attempt raises."""

RETRY_S = 1.0
"""Delay before an attacker retakes a slot it lost or was refused."""

DOWN_RETRY_S = 0.1
"""Delay before an attacker tries again a node whose port refused the TCP connection."""

PROPOSE_TIMEOUT_S = 3.5
"""The first propose timeout (3 s, node/config.py) and a margin: a height whose proposer is
the validator just restarted may wait this long, which is the probe's doing, not the attack's."""

RECONNECT_DEADLINE_S = 45.0
"""Time the restarted validator has to be connected to every other one again."""


def connected_peer_ids(node: NodeHandle) -> set[str]:
    """Node ids of the node's connected peers, from its /metrics (`marketchain_peer_score`)."""
    status, body = node.get("/metrics")
    if status != 200:
        return set()
    text = body.decode() if isinstance(body, bytes) else str(body)
    found = set()
    for line in text.splitlines():
        if line.startswith("marketchain_peer_score{") and 'peer="' in line:
            found.add(line.split('peer="', 1)[1].split('"', 1)[0])
    return found


class SlotExhaustion(Attack):
    """Attack 4: free identities and silent sockets in every inbound slot of two validators,
    one of which is restarted: it must rejoin the other (reserved slots)."""

    name = "slot exhaustion"
    number = 4
    identities_per_node = 40
    """Authenticated attacker connections per validator, each from its own /24."""
    silent_per_node = 20
    """Silent TCP sockets per validator."""
    restarted = 1
    """The validator restarted while the slots are held."""
    restart_probe = True
    """Restart `restarted` and wait for it to rejoin (the bench only holds the slots)."""

    async def run(self) -> AttackReport:
        """Hold the slots, restart a validator, wait for it to rejoin, then let go."""
        stop = asyncio.Event()
        held, refused, lifetimes = [0], [0], []
        nodes = [self.field.net.node(0), self.field.net.node(self.restarted)]
        holders = []
        for index, node in enumerate(nodes):
            for slot in range(self.identities_per_node):
                source = self.source(slot * 250 + index)
                holders.append(self._hold_identity(node, source, stop, held, refused))
            for slot in range(self.silent_per_node):
                source = self.source(slot * 250 + len(nodes) + index)
                holders.append(self._hold_silent(node, source, stop, lifetimes))
        tasks = [asyncio.create_task(holder) for holder in holders]
        await asyncio.sleep(self.duration_s / 2)  # the attacker takes the slots
        probe_start = time.monotonic()
        rejoined = await asyncio.to_thread(self._restart_and_wait) if self.restart_probe else None
        probe_end = time.monotonic() + PROPOSE_TIMEOUT_S  # its first turns as proposer may still time out
        await asyncio.sleep(PROPOSE_TIMEOUT_S + self.duration_s)
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        report = AttackReport(self.name, refused=None, details={
            "identities_admitted": held[0], "identities_refused": refused[0],
            "silent_sockets_closed": len(lifetimes), "longest_silent_s": round(max(lifetimes, default=0.0), 1),
            "refused": "does not apply: holding a slot is no offence; reserved slots and per-IP, per-/24 "
                       "limits are what is checked"})
        report.disconnected = all(lifetime <= BAN_DEADLINE_S for lifetime in lifetimes)
        if rejoined is not None:
            report.checks[f"node{self.restarted} rejoined every validator while the slots were held"] = rejoined
            report.probe_window = (probe_start - PROPOSE_TIMEOUT_S, probe_end)
        return report

    async def _hold_identity(self, node: NodeHandle, source: str, stop: asyncio.Event,
                             held: list[int], refused: list[int]) -> None:
        stopping = asyncio.ensure_future(stop.wait())
        while not stop.is_set():
            peer = AttackerPeer(self.field.identity, node.host, node.p2p_port, source)
            try:
                await peer.connect()
            except ConnectionRefusedError:  # the node is down (restarting): be there when it is back
                peer.abort()
                await asyncio.wait({stopping}, timeout=DOWN_RETRY_S)
                continue
            except REFUSED:
                peer.abort()
                refused[0] += 1
            else:
                held[0] += 1
                hangup = asyncio.ensure_future(peer.closed_by_node(3600.0))
                await asyncio.wait({hangup, stopping}, return_when=asyncio.FIRST_COMPLETED)
                hangup.cancel()
                peer.abort()
            if not stop.is_set():
                await asyncio.wait({stopping}, timeout=RETRY_S)
        stopping.cancel()

    async def _hold_silent(self, node: NodeHandle, source: str, stop: asyncio.Event, lifetimes: list[float]) -> None:
        stopping = asyncio.ensure_future(stop.wait())
        while not stop.is_set():
            try:
                reader, writer = await open_from(node.host, node.p2p_port, source)
            except (OSError, TimeoutError) as error:
                down = isinstance(error, ConnectionRefusedError)
                await asyncio.wait({stopping}, timeout=DOWN_RETRY_S if down else RETRY_S)
                continue
            opened = time.monotonic()
            hangup = asyncio.ensure_future(wait_for_hangup(reader, 3600.0))
            await asyncio.wait({hangup, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if hangup.done():
                lifetimes.append(time.monotonic() - opened)
            hangup.cancel()
            writer.transport.abort()
            if not stop.is_set():
                await asyncio.wait({stopping}, timeout=RETRY_S)
        stopping.cancel()

    def _restart_and_wait(self) -> bool:
        net = self.field.net
        net.restart(self.restarted)
        node = net.node(self.restarted)
        others = [other for other in net.nodes[:4] if other is not node]

        def rejoined() -> bool:
            if not {other.node_id for other in others} <= connected_peer_ids(node):
                return False
            if not all(node.node_id in connected_peer_ids(other) for other in others):
                return False
            return node.height() >= others[0].height()  # caught up: it takes part in consensus again

        try:
            wait_until(rejoined, RECONNECT_DEADLINE_S, "the restarted validator rejoined")
        except AssertionError:
            return False
        return True


class GarbageFrames(Attack):
    """Garbage at every layer, from one IP, a fresh node key each time."""

    name = "garbage frames"
    number = 6
    rounds = 6
    """Authenticated connections from the one IP, each sending undecodable envelopes."""
    invalid_per_round = 8
    """Undecodable (but well encrypted) envelopes per connection, then one frame that
    does not authenticate."""
    oversized = 12
    """Connections that announce an 8 MiB frame before authentication and stream it."""

    async def run(self) -> AttackReport:
        """Pre-authentication garbage first, then authenticated garbage, then judge."""
        node = self.field.node(self.target)
        outcomes = await asyncio.gather(self._plaintext_garbage(),
                                        *(self._oversized_proof(1 + number) for number in range(self.oversized)))
        source = self.source(0)
        admitted = 0
        for _ in range(self.rounds):
            peer = self.peer(0)
            try:
                await peer.connect()
            except REFUSED:
                peer.abort()
                outcomes.append(True)
                continue
            admitted += 1
            try:
                for _ in range(self.invalid_per_round):
                    await peer.send_encoded(os.urandom(64))
                await peer.send_garbage_frame(1024)
            except OSError:
                pass
            outcomes.append(await peer.closed_by_node(BAN_DEADLINE_S))
            peer.abort()
        report = AttackReport(self.name, details={
            "closed_by_node": f"{sum(outcomes)}/{len(outcomes)}", "authenticated_rounds_admitted": admitted})
        report.disconnected = all(outcomes)
        report.refused = await is_refused(self.field.identity, node.host, node.p2p_port, source)
        return report

    async def _plaintext_garbage(self) -> bool:
        peer = self.peer(0)
        await peer.open()
        try:
            await peer.send_raw(os.urandom(64 * 1024))
        except OSError:
            pass
        closed = await peer.closed_by_node(BAN_DEADLINE_S)
        peer.abort()
        return closed

    async def _oversized_proof(self, host: int) -> bool:
        peer = self.peer(host)
        try:
            await peer.hello_only()
        except REFUSED:
            peer.abort()
            return True
        chunk = 256 * 1024
        try:
            await peer.send_raw((MAX_FRAME_BYTES - 1).to_bytes(HEADER_BYTES, "big"))
            for _ in range(MAX_FRAME_BYTES // chunk):
                await peer.send_raw(os.urandom(chunk))
        except OSError:
            pass
        closed = await peer.closed_by_node(BAN_DEADLINE_S)
        peer.abort()
        return closed


class PexPoisoning(Attack):
    """Peer exchange naming the attacker's listeners, private ranges, a DNS name and a new
    key for a known endpoint: the node must dial none of them."""

    name = "peer-exchange poisoning"
    number = 7
    listeners = 32
    """Loopback listeners of the attacker (each its own IP), all named in the first message."""
    messages = 16
    """`peers` messages of 64 entries (the issue: 16 replaced the whole address book)."""

    async def run(self) -> AttackReport:
        """Name the listeners first, watch for dials, then the rest of the poison; judge."""
        dialed: list[str] = []

        def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            dialed.append(str(writer.get_extra_info("sockname")))
            writer.transport.abort()

        servers = [await asyncio.start_server(accepted, self.source(250 + number), 0)
                   for number in range(self.listeners)]
        servers.append(await asyncio.start_server(accepted, "127.0.0.1", 0))
        endpoints = [server.sockets[0].getsockname()[:2] for server in servers]
        known = self.field.node(1)

        def key() -> str:
            return os.urandom(32).hex()

        first = [f"{key()}@{host}:{port}" for host, port in endpoints[:-1]]
        first.append(f"{key()}@localhost:{endpoints[-1][1]}")
        first.append(f"{key()}@{known.host}:{known.p2p_port}")  # a new key for node1's endpoint
        peer = self.peer()
        await peer.connect()
        await peer.send("peers", {"addresses": first[:MAX_PEX_ADDRESSES]})
        await asyncio.sleep(self.duration_s / 2)  # time for the node's dialer to act on them
        for number in range(self.messages - 1):
            hosts = [host for entry in range(16) for host in (
                f"10.{number}.{entry}.1", f"192.168.{number}.{entry}", f"169.254.{number}.{entry}",
                f"172.16.{number}.{entry}")]
            entries = [f"{key()}@{host}:26656" for host in hosts]
            await peer.send("peers", {"addresses": entries[:MAX_PEX_ADDRESSES]})
        await asyncio.sleep(self.duration_s / 2)
        still_peered = await asyncio.to_thread(connected_peer_ids, self.field.node(self.target))
        for server in servers:
            server.close()
        report = AttackReport(self.name, details={"dials_to_attacker": len(dialed)})
        report.checks["the node dialed none of the loopback/DNS addresses a peer named"] = not dialed
        report.checks["the node kept its connection to node1 (its key not overwritten)"] = known.node_id in still_peered
        # Naming private addresses is no offence (an honest peer on a LAN names them; they
        # are just not dialed), but 16 `peers` messages at once is a flood: beyond a burst of
        # 4 each costs 20 (p2p/pex.py), so the sender is banned, with its IP.
        return await self.judge(report, [peer], peer.source_host)


def header_timeout_s() -> float:
    """The node's default deadline for a request's headers (`[http] header_timeout_s`), 0 if it has none."""
    return float(getattr(HttpConfig(), "header_timeout_s", 0))


class Slowloris(Attack):
    """HTTP requests whose headers never end: one header line a second per socket. Each
    must be closed by the node within its header deadline plus `BAN_DEADLINE_S`."""

    name = "slowloris HTTP"
    number = 8
    sockets = 64
    """Slow connections, eight per source IP."""

    async def run(self) -> AttackReport:
        """Open them all, trickle until each is closed or the deadline passes."""
        node = self.field.node(self.target)
        address = urlsplit(node.url)
        deadline = time.monotonic() + header_timeout_s() + BAN_DEADLINE_S
        lifetimes = await asyncio.gather(*(self._slow(address.hostname or node.host, address.port or 80,
                                                      self.source(number // 8), deadline)
                                           for number in range(self.sockets)))
        closed = [value for value in lifetimes if value is not None]
        report = AttackReport(self.name, refused=None, details={
            "closed_by_node": f"{len(closed)}/{len(lifetimes)}", "longest_s": round(max(closed, default=0.0), 1),
            "refused": "does not apply: HTTP has no bans; the header deadline closes slow clients"})
        report.disconnected = len(closed) == len(lifetimes)
        return report

    async def _slow(self, host: str, port: int, source: str, deadline: float) -> float | None:
        try:
            reader, writer = await open_from(host, port, source)
        except (OSError, TimeoutError):
            return 0.0
        opened = time.monotonic()
        hangup = asyncio.ensure_future(wait_for_hangup(reader, max(0.1, deadline - opened)))
        try:
            writer.write(b"GET /status HTTP/1.1\r\nHost: marketchain\r\n")
            line = 0
            while not hangup.done() and time.monotonic() < deadline:
                await asyncio.wait({hangup}, timeout=1.0)
                line += 1
                writer.write(f"X-Slow-{line}: {line}\r\n".encode())
        except OSError:
            pass
        closed = await hangup
        writer.transport.abort()
        return time.monotonic() - opened if closed else None

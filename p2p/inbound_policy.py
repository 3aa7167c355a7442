"""Who may open an inbound connection: reserved peers, per-IP and per-subnet limits, IP bans.

Checked when the TCP connection is accepted, before a byte is read or any crypto runs
(cheap checks first, R32):
- an IP that is banned, or that already holds `max_inbound_per_ip` connections (in
  the handshake or connected), or whose /24 (IPv4) or /48 (IPv6) holds
  `max_inbound_per_subnet`, or a node whose anonymous slots (`max_inbound`) are all
  taken, gets no anonymous slot;
- such a connection may still go on if the node has *reserved* peers (persistent peers
  and `unconditional_peers`, as CometBFT's unconditional peer ids), but only as far as
  the hello, which must claim a reserved node key (`reserved_only`); the handshake
  then proves it. So a banned IP or a full node never locks out an operator's peers
  (on a local testnet every node shares 127.0.0.1). At most one per reserved key plus
  `RESERVED_ONLY_SPARE` such connections are in the handshake at once; one more evicts
  the oldest that has not sent its hello yet, else the oldest: silent sockets or stalled
  impostors cannot hold the way in (an honest peer's hello and proof take one round trip).
Reserved peers, once identified, count against no anonymous limit.

An IP also has a score: a failed inbound handshake (timeout, garbage, an oversized
pre-authentication frame, a wrong chain) costs it, and below the ban threshold the
IP is banned for `ip_ban_duration_s`. A banned anonymous peer's IP is banned too.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from p2p.config import PeerManagerConfig
from p2p.handshake import NoFreeSlot
from p2p.network_groups import subnet_of
from p2p.peer import Peer
from p2p.scoring import BanList, ScoreBook

log = logging.getLogger(__name__)

RESERVED_ONLY_SPARE = 4
"""Connections past the limits that may wait for their hello beyond one per reserved key."""


@dataclass
class InboundTicket:
    """One accepted TCP connection, from accept until it is connected or closed."""

    host: str
    """The remote IP address."""
    subnet: str
    """Its /24 or /48, as text."""
    reserved_only: bool
    """True if it got no anonymous slot: only a reserved node key may complete the handshake."""
    released: bool = False
    """True once the handshake ended (the connection, if any, is counted as a peer)."""
    claimed: bytes | None = None
    """The reserved node key a `reserved_only` connection's hello claimed (not yet proven)."""
    abort: Callable[[], None] = field(default=lambda: None, repr=False)
    """Closes the connection at once (when a newer one evicts it)."""


class InboundPolicy:
    """Counts inbound connections per IP and subnet and keeps the IP scores and bans."""

    def __init__(
        self,
        config: PeerManagerConfig,
        live_inbound: Callable[[], list[Peer]],
        reserved: Iterable[bytes] = (),
    ) -> None:
        self.reserved: set[bytes] = set(reserved)
        """Node keys never refused for lack of room (persistent and unconditional peers)."""
        self.ip_bans = BanList()
        """Banned remote IP addresses."""
        self.ip_scores = ScoreBook(config.initial_score, config.score_recovery_per_s)
        """Scores of remote IP addresses, lowered by failed handshakes."""
        self._config = config
        self._live_inbound = live_inbound
        self._pending_ip: Counter[str] = Counter()
        self._pending_subnet: Counter[str] = Counter()
        self._pending_anonymous = 0
        self._reserved_only: list[InboundTicket] = []

    def is_reserved(self, node_address: bytes) -> bool:
        """True for a persistent or unconditional peer's node key."""
        return node_address in self.reserved

    def limit(self, host: str) -> str | None:
        """Why `host` gets no anonymous slot now, or None if it gets one."""
        if self.ip_bans.is_banned(host):
            return f"{host} is banned"
        anonymous = [p for p in self._live_inbound() if not self.is_reserved(p.node_address)]
        config = self._config
        if len(anonymous) + self._pending_anonymous >= config.max_inbound:
            return f"inbound limit {config.max_inbound} reached"
        if sum(1 for p in anonymous if p.remote_host == host) + self._pending_ip[
            host
        ] >= config.max_inbound_per_ip:
            return f"inbound limit of {config.max_inbound_per_ip} per IP reached"
        subnet = subnet_of(host)
        if sum(1 for p in anonymous if subnet_of(p.remote_host) == subnet) + self._pending_subnet[
            subnet
        ] >= config.max_inbound_per_subnet:
            return f"inbound limit of {config.max_inbound_per_subnet} per subnet {subnet} reached"
        return None

    def open(
        self, host: str, abort: Callable[[], None] = lambda: None
    ) -> tuple[InboundTicket | None, str | None]:
        """A ticket for a new connection from `host`, or (None, why it is refused).

        The second value also says why a `reserved_only` ticket got no anonymous slot;
        `abort` closes the connection if a newer one evicts it.
        """
        reason = self.limit(host)
        if reason is None:
            ticket = InboundTicket(host, subnet_of(host), reserved_only=False)
            self._pending_ip[host] += 1
            self._pending_subnet[ticket.subnet] += 1
            self._pending_anonymous += 1
            return ticket, None
        if not self.reserved:
            return None, reason
        if len(self._reserved_only) >= len(self.reserved) + RESERVED_ONLY_SPARE:
            silent = [ticket for ticket in self._reserved_only if ticket.claimed is None]
            self._evict((silent or self._reserved_only)[0])
        ticket = InboundTicket(host, subnet_of(host), reserved_only=True, abort=abort)
        self._reserved_only.append(ticket)
        return ticket, reason

    def claim(self, ticket: InboundTicket, node_address: bytes) -> None:
        """The hello of a `reserved_only` connection claims `node_address`: `NoFreeSlot` unless reserved."""
        if node_address not in self.reserved:
            raise NoFreeSlot(node_address)
        ticket.claimed = node_address

    def _evict(self, ticket: InboundTicket) -> None:
        log.info("evicting a waiting connection from %s for a newer one", ticket.host)
        self.release(ticket)
        ticket.abort()

    def release(self, ticket: InboundTicket) -> None:
        """The handshake of `ticket` ended (either way); it no longer counts as pending."""
        if ticket.released:
            return
        ticket.released = True
        if ticket.reserved_only:
            self._reserved_only.remove(ticket)
            return
        self._pending_anonymous -= 1
        for counter, key in ((self._pending_ip, ticket.host), (self._pending_subnet, ticket.subnet)):
            counter[key] -= 1
            if counter[key] <= 0:
                del counter[key]

    def penalize_ip(self, host: str, penalty: float, reason: str) -> bool:
        """Lower `host`'s score; True if this banned it."""
        score = self.ip_scores.penalize(host, penalty)
        log.info("address %s loses %g (%s): score %g", host, penalty, reason, score)
        if score >= self._config.ban_threshold or self.ip_bans.is_banned(host):
            return False
        self.ban_ip(host, reason)
        return True

    def ban_ip(self, host: str, reason: str) -> None:
        """Refuse anonymous connections from `host` for `ip_ban_duration_s`."""
        self.ip_bans.ban(host, self._config.ip_ban_duration_s)
        self.ip_scores.reset(host)
        log.warning("banning address %s for %g s: %s", host, self._config.ip_ban_duration_s, reason)

"""Tunable limits of the peer-to-peer layer, with their defaults."""

from __future__ import annotations

from dataclasses import dataclass

from p2p.framing import MAX_FRAME_BYTES
from p2p.handshake import HANDSHAKE_TIMEOUT_S


@dataclass(frozen=True)
class PeerManagerConfig:
    """Every knob of `PeerManager`; the defaults suit a small authority network."""

    max_frame_bytes: int = MAX_FRAME_BYTES
    """Largest encrypted frame accepted or sent (at most the protocol's 8 MiB, R31)."""
    handshake_timeout_s: float = HANDSHAKE_TIMEOUT_S
    """Time a new connection has to complete the handshake."""
    idle_timeout_s: float = 60.0
    """A connection on which nothing arrives for this long is closed."""
    ping_interval_s: float = 15.0
    """How often a ping is sent, so that a healthy idle connection is never idle."""
    max_inbound: int = 40
    """Most accepted connections (those still in the handshake included)."""
    max_inbound_per_ip: int = 4
    """Most inbound connections (in the handshake or connected) from one IP address;
    reserved peers, once identified, do not count."""
    max_inbound_per_subnet: int = 8
    """Most inbound connections from one /24 (IPv4) or /48 (IPv6); reserved peers do not count."""
    reserved_peers: frozenset[bytes] = frozenset()
    """Node keys (besides the persistent peers') never refused for lack of room and exempt
    from the per-IP limits and IP bans: the operator's unconditional peers."""
    ip_ban_duration_s: float = 120.0
    """How long an IP stays refused (anonymous connections only) after its score or a
    banned peer's fell below the threshold."""
    penalty_handshake_failure: float = 10.0
    """Score an IP loses for an inbound handshake that fails (timeout, garbage, wrong chain)."""
    allow_private_peers: bool = False
    """Dial loopback, private, link-local addresses and DNS names learned by peer exchange
    (persistent peers are always dialed); for local testnets."""
    max_outbound: int = 10
    """Most dialed connections to peers learned by exchange (persistent peers are always dialed)."""
    messages_per_s: float = 1000.0
    """Sustained messages per second accepted from one peer."""
    message_burst: float = 2000.0
    """Messages a peer may send at once before the rate applies."""
    bytes_per_s: float = 16 * 1024 * 1024
    """Sustained bytes per second accepted from one peer."""
    byte_burst: float = 32 * 1024 * 1024
    """Bytes a peer may send at once before the rate applies."""
    send_queue_size: int = 4096
    """Messages waiting to be written to one peer; beyond it new ones are dropped."""
    receive_queue_size: int = 1024
    """Messages read from one peer and waiting for the application; beyond it reading pauses."""
    initial_score: float = 100.0
    """Score of a new peer, and the most it recovers to."""
    score_recovery_per_s: float = 0.1
    """Score a peer regains per second of good behaviour."""
    ban_threshold: float = 0.0
    """A peer whose score drops below this is disconnected and banned."""
    ban_duration_s: float = 600.0
    """How long a banned node address and listen address stay refused."""
    penalty_invalid_message: float = 20.0
    """Score lost for an envelope that does not decode or an unknown kind."""
    penalty_bad_frame: float = 50.0
    """Score lost for an oversized, truncated or unauthenticated frame (the connection closes)."""
    penalty_flood: float = 5.0
    """Score lost per message dropped by a rate limit."""
    evidence_per_s: float = 2.0
    """Sustained `evidence` messages per second accepted from one peer: an honest peer
    relays one item per equivocation it hears of, and the pool holds at most one item per
    validator, so more is a flood (issue 13): beyond it each costs `penalty_flood`, in the
    read loop, before the item is queued or checked."""
    evidence_burst: float = 32.0
    """`evidence` messages a peer may send at once before `evidence_per_s` applies."""
    dial_timeout_s: float = 5.0
    """Time to open a TCP connection before the handshake starts."""
    backoff_initial_s: float = 0.5
    """Delay before the first redial of a failed or lost peer."""
    backoff_max_s: float = 60.0
    """Longest delay between redials."""
    backoff_jitter: float = 0.25
    """Random extra delay, as a fraction of the backoff (0.25: up to +25 %)."""
    max_dial_failures: int = 8
    """Failed dials after which an exchanged (not persistent) address is forgotten."""
    pex: bool = True
    """Exchange peer addresses and dial new ones up to `max_outbound`."""
    pex_interval_s: float = 30.0
    """How often the connected peers' listen addresses are sent to every peer."""
    max_known_addresses: int = 1000
    """Most exchanged addresses remembered."""
    seen_cache_size: int = 100_000
    """Gossip message hashes remembered so that nothing is delivered or relayed twice."""
    send_queue_bytes: int = 4 * 1024 * 1024
    """Bytes queued for (or being written to) one peer; once reached, new messages are
    dropped (so at most this plus one message, ≤ 8 MiB, is held). See p2p/buffers.py."""
    total_send_bytes: int = 64 * 1024 * 1024
    """Bytes queued for all peers together; beyond it new messages are dropped."""
    receive_queue_bytes: int = 4 * 1024 * 1024
    """Bytes read from one peer and not yet handled; beyond it reading that peer pauses."""
    total_receive_bytes: int = 64 * 1024 * 1024
    """Bytes read from all peers and not yet handled; beyond it reading pauses everywhere."""
    send_stall_timeout_s: float = 30.0
    """A peer whose send queue stays full this long without one completed write (it does
    not read its socket) is disconnected."""
    max_streamed_per_peer: int = 64
    """Streamed responses (blocks served to block sync) queued for one peer; beyond it a
    request is refused (node/block_sync.py charges the peer)."""
    streamed_bytes_per_s: float = 8 * 1024 * 1024
    """Sustained bytes of streamed responses written to one peer per second."""
    streamed_byte_burst: float = 32 * 1024 * 1024
    """Bytes of streamed responses one peer may get at once before the rate applies."""

    def __post_init__(self) -> None:
        if not 0 < self.max_frame_bytes <= MAX_FRAME_BYTES:
            raise ValueError(f"max_frame_bytes must be 1 … {MAX_FRAME_BYTES}")
        if self.max_inbound < 0 or self.max_outbound < 0:
            raise ValueError("peer limits cannot be negative")
        if self.max_inbound_per_ip < 1 or self.max_inbound_per_subnet < 1:
            raise ValueError("per-IP and per-subnet inbound limits must be at least 1")
        budgets = (self.send_queue_bytes, self.total_send_bytes, self.receive_queue_bytes, self.total_receive_bytes)
        if min(budgets) < 1 or self.max_streamed_per_peer < 1 or self.streamed_bytes_per_s <= 0:
            raise ValueError("queue byte budgets, streamed limits and rates must be positive")
        if self.evidence_per_s <= 0 or self.evidence_burst < 1:
            raise ValueError("evidence_per_s must be positive and evidence_burst at least 1")

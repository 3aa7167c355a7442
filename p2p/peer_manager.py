"""The peer set: listener, dialing, limits, dedup, scores, bans and gossip (R31, R32).

The node's only entry point into p2p:

    manager = PeerManager(node_key, chain_id, genesis_hash, "0.0.0.0", 26656,
                          ["<hex>@10.0.0.2:26656"], on_message)
    await manager.start()
    manager.broadcast("txs", body)            # gossip: each peer gets it at most once
    manager.send(peer_id, "status", body)     # point to point
    manager.report(peer_id, 30, "invalid block")
    await manager.stop()

`on_message(peer_id, kind, body)` (plain or async) receives every application message
once: gossip kinds are deduplicated by the seen-cache; to relay, the application
calls `broadcast(kind, body, exclude=peer_id)` once it has validated the message.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from marketplace_tx.primitives.crypto import KeyPair, sha256
from p2p.address_book import AddressBook
from p2p.addresses import PeerAddress, parse_peer_address
from p2p.buffers import ByteBudget, QueueBudgets
from p2p.channel import close_writer
from p2p.config import PeerManagerConfig
from p2p.dialer import Dialer
from p2p.errors import HandshakeError, MessageError, SelfConnection
from p2p.handshake import (
    HandshakeResult,
    Hello,
    NoFreeSlot,
    PeerGone,
    PreAuthFrameTooLarge,
    handshake,
)
from p2p.inbound_policy import InboundPolicy
from p2p.messages import GOSSIP_KINDS, Message, encode_message, status_height
from p2p.peer import INBOUND, OUTBOUND, Peer, PeerInfo
from p2p.peer_set import PeerSet
from p2p.pex import PeerExchange
from p2p.scoring import Reputation
from p2p.seen import SeenCache

log = logging.getLogger(__name__)

OnMessage = Callable[[bytes, str, Any], Awaitable[None] | None]
"""`on_message(peer_id, kind, body)`: the application's handler of incoming messages."""
OnPeer = Callable[[bytes], Awaitable[None] | None]
"""`on_connect(peer_id)` / `on_disconnect(peer_id)`."""


@dataclass
class Counters:
    """Running totals, for metrics and tests."""

    delivered: int = 0
    """Messages handed to `on_message`."""
    duplicates: int = 0
    """Gossip messages dropped because they were already seen."""
    handshakes_failed: int = 0
    """Connections closed during the handshake."""
    rejected: int = 0
    """Authenticated connections refused: limits, duplicates, bans."""
    dials: int = 0
    """Outbound connection attempts."""
    penalties: int = 0
    """Penalties applied (rate limit, invalid data, reports)."""
    bans: int = 0
    """Peers banned."""
    pex_messages: int = 0
    """`peers` messages received."""
    bytes_in: int = 0
    """Plaintext bytes received from peers."""
    bytes_out: int = 0
    """Plaintext bytes sent to peers."""


class PeerManager:
    """Owns every connection of a node."""

    def __init__(
        self,
        node_key: KeyPair,
        chain_id: str,
        genesis_hash: bytes,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
        persistent_peers: Iterable[str | PeerAddress] = (),
        on_message: OnMessage | None = None,
        config: PeerManagerConfig | None = None,
        *,
        on_connect: OnPeer | None = None,
        on_disconnect: OnPeer | None = None,
    ) -> None:
        self.node_key = node_key
        """The node key proven in every handshake; its address is our peer id."""
        self.chain_id = chain_id
        """Peers must follow this chain."""
        self.genesis_hash = genesis_hash
        """Peers must share this genesis."""
        self.listen_host = listen_host
        """Address the listener binds."""
        self.listen_port = listen_port
        """Port of the listener (0 before `start` picks an ephemeral one)."""
        self.config = config or PeerManagerConfig()
        """Limits and timeouts."""
        self._counters = Counters()
        self._closed_traffic = [0, 0]
        """Running totals."""
        self._on_message = on_message
        self._on_connect = on_connect
        self._on_disconnect = on_disconnect
        self._rng = random.Random()
        persistent = [parse_peer_address(p) if isinstance(p, str) else p for p in persistent_peers]
        self._persistent_endpoints = {target.endpoint for target in persistent}
        reserved = {target.node_address for target in persistent if target.node_address}
        self._inbound = InboundPolicy(
            self.config,
            lambda: [peer for peer in self._peers.live() if peer.direction == INBOUND],
            reserved | self.config.reserved_peers,
        )
        self._peers = PeerSet(node_key.address, self.config.max_inbound, self._inbound.is_reserved)
        self._reputation = Reputation(self.config)
        self._seen = SeenCache(self.config.seen_cache_size)
        self.queue_budgets = QueueBudgets(
            ByteBudget(self.config.total_send_bytes), ByteBudget(self.config.total_receive_bytes)
        )
        """Bytes queued to and from all peers together (p2p/buffers.py)."""
        self._book = AddressBook(self.config.max_known_addresses)
        self._pex = PeerExchange(
            self._book,
            self._peers,
            self._is_refused_exchanged,
            self._rng,
            self.config.allow_private_peers,
            persistent,
            self.config.pex_interval_s,
        )
        self._dialer = Dialer(
            persistent,
            self._book,
            self.config,
            self._dial,
            self._peers.is_connected,
            self._reputation.is_refused,
            lambda: self._peers.count(OUTBOUND),
            self._rng,
        )
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = False

    @property
    def counters(self) -> Counters:
        """Running totals, with bytes in and out of live connections added up now."""
        live = self._peers.all()
        self._counters.bytes_in = self._closed_traffic[0] + sum(peer.bytes_in for peer in live)
        self._counters.bytes_out = self._closed_traffic[1] + sum(peer.bytes_out for peer in live)
        return self._counters

    @property
    def node_address(self) -> bytes:
        """Our node key's address, the id peers know us by."""
        return self.node_key.address

    # lifecycle

    async def start(self) -> None:
        """Listen, then keep the persistent peers (and exchanged ones) connected."""
        self._server = await asyncio.start_server(self._accept, self.listen_host, self.listen_port)
        self.listen_port = self._server.sockets[0].getsockname()[1]
        log.info(
            "p2p listening on %s:%d as %s",
            self.listen_host,
            self.listen_port,
            self.node_address.hex(),
        )
        self._spawn(self._dialer.run())
        if self.config.pex:
            self._spawn(self._pex_loop())

    async def stop(self) -> None:
        """Stop listening and dialing and close every connection."""
        self._stopping = True
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        peers = self._peers.all()
        for peer in peers:
            peer.close("node stopping")
        await asyncio.gather(*(peer.wait_closed() for peer in peers), return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    def _spawn(self, coroutine: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # public API

    def peers(self) -> list[PeerInfo]:
        """Every connected peer, by node address."""
        return [self._info(peer) for peer in self._peers.live()]

    def send(self, peer_id: bytes, kind: str, body: Any) -> bool:
        """Queue one message to one peer; False if it is not connected or its queue is full."""
        peer = self._peers.get(peer_id)
        return peer is not None and peer.send(kind, body)

    def send_streamed(self, peer_id: bytes, producer: Callable[[], bytes | None]) -> bool:
        """Queue a message that `producer` encodes when the peer's writer reaches it
        (block responses: never held in memory while they wait); False if not queued."""
        peer = self._peers.get(peer_id)
        return peer is not None and peer.send_streamed(producer)

    def broadcast(self, kind: str, body: Any, exclude: bytes | None = None) -> int:
        """Send to every connected peer but `exclude`; returns how many got it.

        For gossip kinds, peers that already hold the message (they sent it to us, or
        we sent it before) are skipped: nothing is relayed twice. A body that is not
        canonical msgpack raises `MessageError`.
        """
        data = encode_message(kind, body)
        peers = {
            peer.node_address: peer for peer in self._peers.live() if peer.node_address != exclude
        }
        targets = list(peers)
        if kind in GOSSIP_KINDS:
            digest = sha256(data)
            if exclude is not None:
                self._seen.received(digest, exclude)
            targets = self._seen.recipients(digest, targets)
        return sum(1 for address in targets if peers[address].send_encoded(data))

    def report(self, peer_id: bytes, penalty: float, reason: str) -> None:
        """The application found the peer misbehaving: lower its score, maybe ban it."""
        self._penalize_address(peer_id, penalty, reason, self._peers.get(peer_id))

    def forget(self, kind: str, body: Any) -> None:
        """The application dropped a gossip message unprocessed (no room for it): forget
        that it was seen, so that a later copy is delivered, not taken for a duplicate."""
        if kind in GOSSIP_KINDS:
            self._seen.forget(sha256(encode_message(kind, body)))

    def is_banned(self, node_address: bytes) -> bool:
        """True while the node address is banned."""
        return self._reputation.bans.is_banned(node_address)

    def known_addresses(self) -> list[PeerAddress]:
        """Addresses learned by peer exchange."""
        return self._book.addresses()

    # connections

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        host, port = (writer.get_extra_info("peername") or ("?", 0))[:2]
        if self._stopping:
            writer.transport.abort()
            return
        ticket, limit = self._inbound.open(host, writer.transport.abort)  # before any read or crypto
        if ticket is None:
            self._counters.rejected += 1
            log.info("refusing %s:%d: %s", host, port, limit)
            await close_writer(writer)
            return
        on_hello = None
        if ticket.reserved_only:
            on_hello = lambda hello: self._inbound.claim(ticket, hello.node_address)  # noqa: E731
        try:
            result = await self._handshake(reader, writer, False, None, on_hello)
        except HandshakeError as error:
            log.warning("closing inbound %s:%d: %s", host, port, error.message)
            self._handshake_failed(host, error)
            await close_writer(writer)
            return
        except asyncio.CancelledError:
            writer.transport.abort()
            if self._stopping:  # the node stops: the handshake simply ends (asyncio's server
                return  # would otherwise log the cancellation of its callback as an error)
            raise
        finally:
            self._inbound.release(ticket)
        self._admit(result, INBOUND, host, port, None)

    def _handshake_failed(self, host: str, error: HandshakeError) -> None:
        """An inbound handshake failed: the IP pays, unless we refused it, it was us, or the
        peer merely went away (a dialer that gave up while we were paused or busy)."""
        if isinstance(error, NoFreeSlot | SelfConnection | PeerGone):
            return
        large = isinstance(error, PreAuthFrameTooLarge)
        penalty = self.config.penalty_bad_frame if large else self.config.penalty_handshake_failure
        self._inbound.penalize_ip(host, penalty, error.message)

    async def _dial(self, target: PeerAddress) -> bool:
        self._counters.dials += 1
        try:
            async with asyncio.timeout(self.config.dial_timeout_s):
                reader, writer = await asyncio.open_connection(target.host, target.port)
        except (OSError, TimeoutError) as error:
            log.debug("dialing %s failed: %s", target, error)
            return False
        try:
            result = await self._handshake(
                reader, writer, initiator=True, expected=target.node_address
            )
        except HandshakeError as error:
            log.warning("closing outbound %s: %s", target, error.message)
            if isinstance(error, SelfConnection):
                self._peers.self_endpoints.add(target.endpoint)
            await close_writer(writer)
            return False
        except asyncio.CancelledError:
            writer.transport.abort()
            raise
        proven = result.peer.node_address
        self._peers.note_owner(target.endpoint, proven)
        if target.endpoint in self._persistent_endpoints:
            self._inbound.reserved.add(proven)  # a persistent `host:port` is reserved once known
        admitted = self._admit(result, OUTBOUND, target.host, target.port, target)
        if admitted:
            self._book.mark_good(target.endpoint, proven)
        return admitted

    async def _handshake(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        initiator: bool,
        expected: bytes | None,
        on_hello: Callable[[Hello], None] | None = None,
    ) -> HandshakeResult:
        try:
            return await handshake(
                reader,
                writer,
                node_key=self.node_key,
                chain_id=self.chain_id,
                genesis_hash=self.genesis_hash,
                initiator=initiator,
                listen_port=self.listen_port,
                expected_address=expected,
                timeout_s=self.config.handshake_timeout_s,
                max_frame_bytes=self.config.max_frame_bytes,
                on_hello=on_hello,
            )
        except HandshakeError:
            self._counters.handshakes_failed += 1
            raise

    def _admit(
        self,
        result: HandshakeResult,
        direction: str,
        host: str,
        port: int,
        target: PeerAddress | None,
    ) -> bool:
        """Register an authenticated connection unless a ban, a limit or a better duplicate forbids."""
        address = result.peer.node_address
        reason = self._refusal(address, direction, target, host)
        if reason is not None:
            self._counters.rejected += 1
            log.info("refusing %s %s:%d (%s): %s", direction, host, port, address.hex(), reason)
            self._spawn(result.channel.close())
            return False
        peer = Peer(result, direction, host, port, self.config, self)
        self._peers.add(peer, target.endpoint if target is not None else None)
        peer.start()
        log.info("connected %s peer %s at %s:%d", direction, address.hex(), host, port)
        if self.config.pex:
            self._pex.share(peer)
        if self._on_connect is not None:
            self._spawn(self._call(self._on_connect, address))
        return True

    def _refusal(
        self, address: bytes, direction: str, target: PeerAddress | None, host: str
    ) -> str | None:
        if self._stopping:
            return "node stopping"
        banned = self._reputation.bans.is_banned(address)
        if banned or (target is not None and self._reputation.is_refused(target)):
            return "banned"
        if direction == INBOUND and not self._inbound.is_reserved(address):
            if self._inbound.ip_bans.is_banned(host):
                return f"{host} is banned"
        return self._peers.refusal(address, direction)

    def _is_refused_exchanged(self, target: PeerAddress) -> bool:
        """True if an exchanged address is banned: its endpoint, key or IP."""
        return self._reputation.is_refused(target) or self._inbound.ip_bans.is_banned(target.host)

    # callbacks of Peer (PeerHandler)

    async def handle_message(self, peer: Peer, message: Message, data: bytes) -> None:
        """Consume `peers`, note `status` heights, drop seen gossip, deliver the rest."""
        if message.kind == "peers":
            self._counters.pex_messages += 1
            if self.config.pex:
                self._learn_addresses(peer, message.body)
            return
        if message.kind == "status":
            peer.height = status_height(message.body)
        if message.kind in GOSSIP_KINDS and not self._seen.received(
            sha256(data), peer.node_address
        ):
            self._counters.duplicates += 1
            return
        self._counters.delivered += 1
        if self._on_message is not None:
            await self._call(self._on_message, peer.node_address, message.kind, message.body)

    def penalize(self, peer: Peer, penalty: float, reason: str) -> None:
        """A peer's connection reported misbehaviour."""
        self._penalize_address(peer.node_address, penalty, reason, peer)

    def peer_closed(self, peer: Peer, reason: str) -> None:
        """Forget a closed connection; redial it later if we had dialed it."""
        self._closed_traffic[0] += peer.bytes_in
        self._closed_traffic[1] += peer.bytes_out
        registered, endpoint = self._peers.remove(peer)
        if not registered or self._stopping:
            return
        if endpoint is not None:
            self._dialer.connection_lost(endpoint)
        self._dialer.wake()
        if self._on_disconnect is not None:
            self._spawn(self._call(self._on_disconnect, peer.node_address))

    # scores and bans

    def _penalize_address(
        self, address: bytes, penalty: float, reason: str, peer: Peer | None
    ) -> None:
        self._counters.penalties += 1
        # only an endpoint we dialed is proven to be this peer's; a claimed listen port is not
        endpoints = (self._peers.dialed_endpoint(address),)
        if self._reputation.penalize(address, penalty, reason, endpoints):
            self._counters.bans += 1
            if peer is not None:
                peer.close(f"banned: {reason}")
                if not self._inbound.is_reserved(address):  # an operator's peer may share its IP
                    self._inbound.ban_ip(peer.remote_host, f"peer {address.hex()} banned: {reason}")

    # peer exchange

    def _learn_addresses(self, sender: Peer, body: Any) -> None:
        try:
            self._pex.learn(sender, body)
        except MessageError as error:
            penalty = self.config.penalty_invalid_message
            self._penalize_address(sender.node_address, penalty, error.message, sender)
        self._dialer.wake()

    async def _pex_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.pex_interval_s)
            for peer in self._peers.live():
                self._pex.share(peer)

    # helpers

    def _info(self, peer: Peer) -> PeerInfo:
        listen = peer.listen_endpoint
        return PeerInfo(
            node_address=peer.node_address,
            remote_address=peer.remote_address,
            direction=peer.direction,
            score=self._reputation.scores.score(peer.node_address),
            listen_address=f"{listen[0]}:{listen[1]}" if listen else None,
            height=peer.height,
        )

    @staticmethod
    async def _call(callback: Callable[..., Any], *arguments: Any) -> None:
        result = callback(*arguments)
        if inspect.isawaitable(result):
            await result

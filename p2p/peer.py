"""One live peer: an encrypted connection with send and receive queues (R31, R32).

Four tasks serve it: the reader (decrypts frames, applies the rate limit and the idle
timeout, answers pings), the dispatcher (hands messages to the manager in arrival
order), the writer (seals and writes queued messages) and the pinger. Any broken
frame closes the connection; a malformed or excess message is dropped and reported
to the manager, which scores the peer.

Both queues are bounded in bytes, per peer and in total (p2p/buffers.py): the reader
stops reading while the receive queue is full (back-pressure), a message that does not
fit the send queue is dropped, and a peer whose send queue stays full for
`send_stall_timeout_s` (it does not read its socket) is disconnected. Streamed items
(block responses) are produced by the writer when their turn comes, at most
`streamed_bytes_per_s` per peer.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Protocol

from p2p.buffers import ByteBudget, Outgoing, Producer, QueueBudgets, ReceiveQueue, SendQueue
from p2p.config import PeerManagerConfig
from p2p.errors import ChannelError, ConnectionClosed, FrameError, MessageError
from p2p.handshake import HandshakeResult
from p2p.messages import Message, decode_message, encode_message
from p2p.ratelimit import RateLimiter, TokenBucket

log = logging.getLogger(__name__)

INBOUND = "inbound"
"""Direction of a connection the peer opened to us."""
OUTBOUND = "outbound"
"""Direction of a connection we dialed."""

_PING = encode_message("ping", {})
_PONG = encode_message("pong", {})


@dataclass(frozen=True)
class PeerInfo:
    """A snapshot of one connected peer, for the node and its `/status`."""

    node_address: bytes
    """The peer's proven node key; also its id in `send` and `report`."""
    remote_address: str
    """`host:port` of the TCP connection's far end."""
    direction: str
    """`inbound` (it dialed us) or `outbound` (we dialed it)."""
    score: float
    """Current score; below the ban threshold the peer is disconnected and banned."""
    listen_address: str | None
    """`host:port` where it accepts peers, if it announced a listen port."""
    height: int | None
    """The height of its last `status` message, if any."""


class PeerHandler(Protocol):
    """What a peer reports to its manager."""

    async def handle_message(self, peer: Peer, message: Message, data: bytes) -> None:
        """A valid message arrived (in order); `data` is its envelope bytes."""

    def penalize(self, peer: Peer, penalty: float, reason: str) -> None:
        """The peer misbehaved; lower its score (and maybe close and ban it)."""

    def peer_closed(self, peer: Peer, reason: str) -> None:
        """The connection is gone; called exactly once."""


def private_budgets(config: PeerManagerConfig) -> QueueBudgets:
    """Node-wide budgets of its own for a peer whose handler offers none; a handler shares
    one `QueueBudgets` among all its peers as its `queue_budgets` attribute (`PeerManager`)."""
    return QueueBudgets(ByteBudget(config.total_send_bytes), ByteBudget(config.total_receive_bytes))


class Peer:
    """An authenticated connection and the tasks that serve it."""

    def __init__(
        self,
        result: HandshakeResult,
        direction: str,
        remote_host: str,
        remote_port: int,
        config: PeerManagerConfig,
        handler: PeerHandler,
    ) -> None:
        self.channel = result.channel
        """The encrypted frame stream."""
        self.node_address = result.peer.node_address
        """The peer's proven node key."""
        self.listen_port = result.peer.listen_port
        """The port the peer listens on (0: none)."""
        self.direction = direction
        """`inbound` or `outbound`."""
        self.remote_host = remote_host
        """IP address of the far end."""
        self.remote_port = remote_port
        """TCP port of the far end."""
        self.height: int | None = None
        """Height from the peer's last `status`."""
        self.close_reason: str | None = None
        """Why the connection was closed, once it is."""
        self._config = config
        self._handler = handler
        self._limiter = RateLimiter(
            config.messages_per_s, config.message_burst, config.bytes_per_s, config.byte_burst
        )
        self._evidence_limiter = TokenBucket(config.evidence_per_s, config.evidence_burst)
        budgets = getattr(handler, "queue_budgets", None) or private_budgets(config)
        self._outbox = SendQueue(
            config.send_queue_size, config.send_queue_bytes, config.max_streamed_per_peer, budgets.send
        )
        self._inbox: ReceiveQueue[tuple[Message, bytes]] = ReceiveQueue(
            config.receive_queue_size, config.receive_queue_bytes, budgets.receive
        )
        self._streamed = TokenBucket(config.streamed_bytes_per_s, config.streamed_byte_burst)
        self._waiting_for_budget = False
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self._closed = asyncio.Event()
        self.bytes_in = 0
        """Plaintext bytes received from this peer (after decryption)."""
        self.bytes_out = 0
        """Plaintext bytes sent to this peer (before encryption)."""
        self.messages_in = 0
        """Messages received from this peer."""
        self.messages_out = 0
        """Messages sent to this peer."""

    @property
    def remote_address(self) -> str:
        """`host:port` of the far end."""
        return f"{self.remote_host}:{self.remote_port}"

    @property
    def listen_endpoint(self) -> tuple[str, int] | None:
        """(host, port) where the peer accepts connections, if it announced one."""
        return (self.remote_host, self.listen_port) if self.listen_port else None

    @property
    def is_closing(self) -> bool:
        """True once `close` was called."""
        return self._closing

    @property
    def send_queue_bytes(self) -> int:
        """Bytes queued for this peer or being written to it."""
        return self._outbox.bytes

    @property
    def receive_queue_bytes(self) -> int:
        """Bytes read from this peer and not yet handled."""
        return self._inbox.bytes

    def start(self) -> None:
        """Start serving the connection."""
        for loop in (self._read_loop, self._dispatch_loop, self._write_loop, self._ping_loop):
            self._tasks.append(
                asyncio.create_task(
                    loop(), name=f"peer-{self.node_address.hex()[:8]}-{loop.__name__}"
                )
            )

    def send_encoded(self, data: bytes) -> bool:
        """Queue an encoded envelope; False if the connection is closing or its queue is full."""
        if self._closing or len(data) > self.channel.max_plaintext_bytes:
            return False
        if self._outbox.put(data):
            return True
        log.debug("send queue of %s full; message dropped", self.node_address.hex())
        self._close_if_stalled()
        return False

    def send_streamed(self, producer: Producer) -> bool:
        """Queue a message made by `producer` (encoded envelope bytes, or None to skip)
        when the writer reaches it; False if closing or too many streamed items wait."""
        if self._closing:
            return False
        if self._outbox.put_streamed(producer):
            return True
        self._close_if_stalled()
        return False

    def _close_if_stalled(self) -> None:
        """The send queue was full: a peer that has not taken a frame for the stall
        timeout does not read its socket, and is disconnected."""
        timeout = self._config.send_stall_timeout_s
        if self._outbox.full_for() >= timeout and not self._waiting_for_budget:
            self.close(f"not reading: send queue full for {timeout:g} s")

    def send(self, kind: str, body: object) -> bool:
        """Encode and queue one message."""
        return self.send_encoded(encode_message(kind, body))

    def close(self, reason: str) -> None:
        """Close the connection (idempotent); the manager hears of it through `peer_closed`."""
        if self._closing:
            return
        self._closing = True
        self.close_reason = reason
        log.info("closing peer %s (%s): %s", self.node_address.hex(), self.remote_address, reason)
        current = asyncio.current_task()
        others = [task for task in self._tasks if task is not current]
        for task in others:
            task.cancel()
        self._tasks.append(asyncio.create_task(self._finish(others, reason)))

    async def wait_closed(self) -> None:
        """Return once the connection is fully closed."""
        await self._closed.wait()

    async def _finish(self, tasks: list[asyncio.Task[None]], reason: str) -> None:
        await asyncio.gather(*tasks, return_exceptions=True)
        self._outbox.close()
        self._inbox.close()
        await self.channel.close()
        self._closed.set()
        self._handler.peer_closed(self, reason)

    async def _read_loop(self) -> None:
        while not self._closing:
            try:
                async with asyncio.timeout(self._config.idle_timeout_s):
                    plaintext = await self.channel.receive()
            except TimeoutError:
                self.close(f"idle for {self._config.idle_timeout_s:g} s")
                return
            except ConnectionClosed:
                self.close("closed by the peer")
                return
            except (FrameError, ChannelError) as error:
                self._handler.penalize(self, self._config.penalty_bad_frame, error.message)
                self.close(f"{error.code}: {error.message}")
                return
            except OSError as error:
                self.close(f"socket error: {error}")
                return
            self.bytes_in += len(plaintext)
            self.messages_in += 1
            self._receive(plaintext)
            await self._inbox.wait_for_room()  # back-pressure: stop reading while full

    def _receive(self, plaintext: bytes) -> None:
        if not self._limiter.allow(len(plaintext)):
            self._handler.penalize(self, self._config.penalty_flood, "rate limit exceeded")
            return
        try:
            message = decode_message(plaintext)
        except MessageError as error:
            self._handler.penalize(self, self._config.penalty_invalid_message, error.message)
            return
        if message.kind == "evidence" and not self._evidence_limiter.take():
            self._handler.penalize(self, self._config.penalty_flood, "evidence rate limit exceeded")
            return
        if message.kind == "ping":
            self.send_encoded(_PONG)
        elif message.kind != "pong":
            self._inbox.put((message, plaintext), len(plaintext))

    async def _dispatch_loop(self) -> None:
        while not self._closing:
            (message, data), size = await self._inbox.get()
            try:
                await self._handler.handle_message(self, message, data)
            except Exception:  # the handler's bug must not kill the connection
                log.exception("handling %s from %s failed", message.kind, self.node_address.hex())
            finally:
                self._inbox.handled(size)

    async def _write_loop(self) -> None:
        while not self._closing:
            item = await self._outbox.get()
            try:
                data = item.data if item.producer is None else await self._produce(item)
                if data is None:
                    continue
                self.bytes_out += len(data)
                self.messages_out += 1
                await self.channel.send(data)
            except (OSError, FrameError, ChannelError) as error:
                self.close(f"write failed: {error}")
                return
            finally:
                self._outbox.written(item)

    async def _produce(self, item: Outgoing) -> bytes | None:
        """Make a streamed item's bytes: after the peer's streamed-byte debt is repaid and
        when the node-wide send budget has room for the largest frame."""
        await asyncio.sleep(self._streamed.wait_s())
        budget = self._outbox.budget
        self._waiting_for_budget = True  # the node's wait, not the peer's stall
        try:
            while not budget.fits(min(self.channel.max_plaintext_bytes, budget.limit)):
                await budget.wait_released()
        finally:
            self._waiting_for_budget = False
        assert item.producer is not None
        try:
            data = item.producer()
        except Exception:  # the producer's bug must not kill the connection
            log.exception("producing a streamed message for %s failed", self.node_address.hex())
            return None
        if data is None or len(data) > self.channel.max_plaintext_bytes:
            return None
        self._streamed.charge(len(data))
        self._outbox.produced(item, data)
        return data

    async def _ping_loop(self) -> None:
        while not self._closing:
            await asyncio.sleep(self._config.ping_interval_s)
            self._close_if_stalled()
            self.send_encoded(_PING)

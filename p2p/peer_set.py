"""The live connections of a node: at most one per node address, and who may join.

When two connections to the same peer exist (both dialed at once, or one peer known
under two addresses) both ends keep the same one: the connection dialed by the
lower node address. Two connections in the same direction keep the older.
"""

from __future__ import annotations

from collections.abc import Callable

from p2p.addresses import PeerAddress
from p2p.peer import INBOUND, OUTBOUND, Peer

Endpoint = tuple[str, int]
"""(host, port) of a listener."""


class PeerSet:
    """Connected peers by node address, with the bookkeeping the dialer needs."""

    def __init__(
        self,
        own_address: bytes,
        max_inbound: int,
        is_reserved: Callable[[bytes], bool] = lambda address: False,
    ) -> None:
        self.own_address = own_address
        """Our node address (for the tie-break between duplicate connections)."""
        self.max_inbound = max_inbound
        """Most inbound connections of anonymous (not reserved) peers kept."""
        self.is_reserved = is_reserved
        """True for a reserved peer: never refused for lack of room, not counted in `max_inbound`."""
        self.self_endpoints: set[Endpoint] = set()
        """Listen addresses that turned out to be our own: never dialed again."""
        self._peers: dict[bytes, Peer] = {}
        self._dialed: dict[bytes, Endpoint] = {}
        self._endpoint_owner: dict[Endpoint, bytes] = {}

    def get(self, address: bytes) -> Peer | None:
        """The open connection to `address`, if any."""
        peer = self._peers.get(address)
        return peer if peer is not None and not peer.is_closing else None

    def all(self) -> list[Peer]:
        """Every registered connection, closing ones included."""
        return list(self._peers.values())

    def live(self) -> list[Peer]:
        """Every open connection, by node address."""
        return [peer for _, peer in sorted(self._peers.items()) if not peer.is_closing]

    def count(self, direction: str, excluding: bytes | None = None) -> int:
        """Open connections in `direction`, not counting the peer `excluding`."""
        return sum(
            1
            for peer in self.live()
            if peer.direction == direction and peer.node_address != excluding
        )

    def refusal(self, address: bytes, direction: str) -> str | None:
        """Why a new authenticated connection may not join, or None if it may."""
        existing = self.get(address)
        if existing is not None and not self._keeps_new(direction, existing.direction, address):
            return "duplicate connection"
        if direction == INBOUND and not self.is_reserved(address):
            anonymous = sum(
                1
                for peer in self.live()
                if peer.direction == INBOUND
                and peer.node_address != address
                and not self.is_reserved(peer.node_address)
            )
            if anonymous >= self.max_inbound:
                return f"inbound limit {self.max_inbound} reached"
        return None

    def _keeps_new(self, new_direction: str, old_direction: str, address: bytes) -> bool:
        if new_direction == old_direction:
            return False
        lower_dialed = OUTBOUND if self.own_address < address else INBOUND
        return new_direction == lower_dialed

    def add(self, peer: Peer, dialed: Endpoint | None) -> None:
        """Register `peer` (after `refusal` said yes), closing the connection it replaces."""
        existing = self.get(peer.node_address)
        if existing is not None:
            existing.close("replaced by a duplicate connection")
        self._peers[peer.node_address] = peer
        if dialed is not None:
            self._dialed[peer.node_address] = dialed

    def remove(self, peer: Peer) -> tuple[bool, Endpoint | None]:
        """Forget a closed connection: (was it the registered one, the endpoint we dialed)."""
        if self._peers.get(peer.node_address) is not peer:
            return False, None
        del self._peers[peer.node_address]
        return True, self._dialed.pop(peer.node_address, None)

    def dialed_endpoint(self, address: bytes) -> Endpoint | None:
        """The endpoint we dialed to reach `address`, if we dialed it."""
        return self._dialed.get(address)

    def note_owner(self, endpoint: Endpoint, address: bytes) -> None:
        """`endpoint` answered with node `address`."""
        self._endpoint_owner[endpoint] = address

    def is_connected(self, target: PeerAddress) -> bool:
        """True if the node at `target` is connected in either direction, or is ourselves."""
        if target.endpoint in self.self_endpoints or target.node_address == self.own_address:
            return True
        if target.node_address is not None:  # a claimed listen port proves nothing
            return self.get(target.node_address) is not None
        owner = self._endpoint_owner.get(target.endpoint)
        return any(
            peer.node_address == owner or peer.listen_endpoint == target.endpoint
            for peer in self.live()
        )

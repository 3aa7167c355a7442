"""Peer exchange (R32): the book of addresses learned from peers, and what we share.

A `peers` message carries `["<node address hex>@host:port", …]`: the listen addresses
of the sender's connected peers. Addresses are dialed only up to `max_outbound`;
one that keeps failing is forgotten.
"""

from __future__ import annotations

import logging
import random
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from p2p.addresses import PeerAddress, parse_peer_address
from p2p.messages import MAX_PEX_ADDRESSES, peers_addresses, peers_body
from p2p.peer import Peer
from p2p.peer_set import PeerSet

log = logging.getLogger(__name__)


class AddressBook:
    """Exchanged addresses, oldest first, at most `capacity` of them."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        """Most addresses kept; the oldest is dropped first."""
        self._addresses: OrderedDict[tuple[str, int], PeerAddress] = OrderedDict()

    def __len__(self) -> int:
        return len(self._addresses)

    def __contains__(self, endpoint: tuple[str, int]) -> bool:
        return endpoint in self._addresses

    def add(self, address: PeerAddress) -> bool:
        """Remember `address` (replacing what was known for its endpoint); True if it was new."""
        new = address.endpoint not in self._addresses
        self._addresses[address.endpoint] = address
        while len(self._addresses) > self.capacity:
            self._addresses.popitem(last=False)
        return new

    def remove(self, endpoint: tuple[str, int]) -> None:
        """Forget the address at `endpoint`."""
        self._addresses.pop(endpoint, None)

    def addresses(self) -> list[PeerAddress]:
        """Every known address."""
        return list(self._addresses.values())


def addresses_to_share(listen_addresses: Iterable[PeerAddress], rng: random.Random) -> list[str]:
    """At most `MAX_PEX_ADDRESSES` of the given addresses, picked at random, as strings."""
    entries = sorted({str(address) for address in listen_addresses if address.node_address})
    if len(entries) > MAX_PEX_ADDRESSES:
        entries = rng.sample(entries, MAX_PEX_ADDRESSES)
    return entries


class PeerExchange:
    """Shares our peers' listen addresses and files the ones peers share with us."""

    def __init__(
        self,
        book: AddressBook,
        peers: PeerSet,
        is_refused: Callable[[PeerAddress], bool],
        rng: random.Random,
    ) -> None:
        self.book = book
        """Where learned addresses go."""
        self._peers = peers
        self._is_refused = is_refused
        self._rng = rng

    def share(self, recipient: Peer) -> None:
        """Send `recipient` the listen addresses of our other peers."""
        listen = [
            PeerAddress(peer.remote_host, peer.listen_port, peer.node_address)
            for peer in self._peers.live()
            if peer is not recipient and peer.listen_port
        ]
        recipient.send("peers", peers_body(addresses_to_share(listen, self._rng)))

    def learn(self, sender: Peer, body: Any) -> int:
        """File the addresses of a `peers` body; `MessageError` on a malformed entry."""
        learned = 0
        for entry in peers_addresses(body):
            address = parse_peer_address(entry)
            if address.node_address == self._peers.own_address:
                continue
            if address.endpoint in self._peers.self_endpoints or self._is_refused(address):
                continue
            if self.book.add(address):
                learned += 1
                log.debug("learned %s from %s", address, sender.node_address.hex())
        return learned

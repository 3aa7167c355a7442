"""Peer exchange (R32): the book of addresses learned from peers, and what we share.

A `peers` message carries `["<node address hex>@host:port", …]`: the listen addresses
of the sender's connected peers. Addresses are dialed only up to `max_outbound`;
one that keeps failing is forgotten.

What a peer names is filed only if it is safe to dial: never an unspecified or
multicast address; loopback, private, link-local addresses and DNS names only when the
operator allows them (`allow_private_peers`); never a banned endpoint, key or IP, a
persistent peer's endpoint or key (the operator's entry stays as written), or an
endpoint already known (its expected key is never replaced). The book buckets the
rest by who told us (p2p/address_book.py), so one peer cannot fill or replace it.

Bad content costs the sender (the manager charges `penalty_invalid_message` for each
`MessageError`): a malformed entry, a name our peers never send (a DNS name when
private addresses are not allowed, an unspecified or multicast address), or a `peers`
message beyond `PEX_BURST` at once and one per half `pex_interval_s` after (an honest
node sends one on connecting and one per interval). Private addresses alone cost
nothing: an honest peer on a LAN shares them.
"""

from __future__ import annotations

import logging
import random
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from p2p.address_book import AddressBook
from p2p.addresses import PeerAddress, parse_peer_address
from p2p.errors import MessageError
from p2p.messages import MAX_PEX_ADDRESSES, peers_addresses, peers_body
from p2p.network_groups import never_dialable, non_public, parse_ip
from p2p.peer import Peer
from p2p.peer_set import PeerSet
from p2p.ratelimit import TokenBucket

__all__ = ["AddressBook", "PeerExchange", "addresses_to_share"]

log = logging.getLogger(__name__)

PEX_BURST = 4
"""`peers` messages one peer may send at once before the rate (two per interval) applies."""

ALLOWANCES_KEPT = 10_000
"""Peers whose `peers` message allowance is remembered (the oldest is forgotten first)."""


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
        allow_private: bool = False,
        persistent: Iterable[PeerAddress] = (),
        interval_s: float = 30.0,
    ) -> None:
        self.book = book
        """Where learned addresses go."""
        self.allow_private = allow_private
        """File loopback, private and link-local addresses and DNS names too."""
        self.persistent_endpoints = {address.endpoint for address in persistent}
        """Endpoints of the configured persistent peers: never filed from gossip."""
        self.persistent_keys = {a.node_address for a in persistent if a.node_address is not None}
        """Node keys of the configured persistent peers: their entries stay as configured."""
        self._peers = peers
        self._is_refused = is_refused
        self._rng = rng
        self._rate = 2.0 / interval_s
        self._allowances: OrderedDict[bytes, TokenBucket] = OrderedDict()

    def share(self, recipient: Peer) -> None:
        """Send `recipient` the listen addresses of our other peers."""
        listen = [
            PeerAddress(peer.remote_host, peer.listen_port, peer.node_address)
            for peer in self._peers.live()
            if peer is not recipient and peer.listen_port
        ]
        recipient.send("peers", peers_body(addresses_to_share(listen, self._rng)))

    def _allowance(self, sender: bytes) -> TokenBucket:
        bucket = self._allowances.pop(sender, None) or TokenBucket(self._rate, PEX_BURST)
        self._allowances[sender] = bucket
        while len(self._allowances) > ALLOWANCES_KEPT:
            self._allowances.popitem(last=False)
        return bucket

    def learn(self, sender: Peer, body: Any) -> int:
        """File the addresses of a `peers` body; `MessageError` (after filing the good
        entries) for a malformed or never-sent entry, or a message beyond the rate."""
        if not self._allowance(sender.node_address).take():
            raise MessageError("peers messages beyond the allowed rate")
        learned = 0
        bad: str | None = None
        for entry in peers_addresses(body):
            try:
                address = parse_peer_address(entry)
            except MessageError as error:
                bad = error.message
                continue
            if address.node_address == self._peers.own_address:
                continue
            unexpected = never_dialable(address.host)
            if unexpected is None and not self.allow_private and parse_ip(address.host) is None:
                unexpected = "a DNS name"  # we share the IPs of our connections, never names
            if unexpected is not None:
                bad = f"peers entry {entry!r} is {unexpected}"
                continue
            if address.endpoint in self._peers.self_endpoints or self._is_refused(address):
                continue
            reason = self.refusal(address)
            if reason is not None:
                log.debug("ignoring %s from %s: %s", address, sender.node_address.hex(), reason)
                continue
            if self.book.add(address, sender.remote_host):
                learned += 1
                log.debug("learned %s from %s", address, sender.node_address.hex())
        if bad is not None:
            raise MessageError(bad)
        return learned

    def refusal(self, address: PeerAddress) -> str | None:
        """Why an exchanged `address` is not filed, or None if it may be."""
        reason = never_dialable(address.host)
        if reason is None and not self.allow_private:
            reason = non_public(address.host)
        if reason is not None:
            return reason
        if address.endpoint in self.persistent_endpoints:
            return "a persistent peer's endpoint"
        if address.node_address in self.persistent_keys:
            return "a persistent peer's key"
        return None

"""The book of addresses learned by peer exchange, bucketed like Bitcoin Core's addrman (R32).

Two tables of fixed-size buckets:
- *new*: addresses heard of but never connected to. The bucket is chosen by a keyed
  hash of the source's address group (the /16 of the peer that told us) and of the
  address's own group, so that one source group reaches at most
  `BUCKETS_PER_SOURCE_GROUP` buckets: one peer, or many peers in one /16, can fill
  at most that share of the book, never replace the rest.
- *tried*: addresses we connected to. Gossip never evicts them; only another
  successful connection in the same bucket can.

A full new bucket drops the newcomer (nothing is evicted for gossip). An endpoint
already known keeps its entry: a later entry never changes its expected node key.
The hash key is random per node, so that a peer cannot aim at chosen buckets.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from dataclasses import replace

from p2p.addresses import PeerAddress
from p2p.network_groups import address_group

Endpoint = tuple[str, int]
"""(host, port) of a listener."""

BUCKET_SIZE = 16
"""Addresses one bucket holds."""

BUCKETS_PER_SOURCE_GROUP = 4
"""New-table buckets one source group can reach (64 addresses: one `peers` message)."""

TRIED_SHARE = 4
"""The tried table has a quarter as many buckets as the new table."""


class AddressBook:
    """Exchanged addresses in new and tried buckets, about `capacity` in the new table."""

    def __init__(self, capacity: int, secret: bytes | None = None) -> None:
        self.capacity = capacity
        """Most addresses the new table holds (rounded to whole buckets)."""
        self._secret = secret if secret is not None else os.urandom(32)
        new_count = max(BUCKETS_PER_SOURCE_GROUP, capacity // BUCKET_SIZE)
        self._new: list[OrderedDict[Endpoint, PeerAddress]] = [
            OrderedDict() for _ in range(new_count)
        ]
        self._tried: list[OrderedDict[Endpoint, PeerAddress]] = [
            OrderedDict() for _ in range(max(1, new_count // TRIED_SHARE))
        ]
        self._where: dict[Endpoint, OrderedDict[Endpoint, PeerAddress]] = {}

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, endpoint: Endpoint) -> bool:
        return endpoint in self._where

    def _hash(self, *parts: str) -> int:
        digest = hashlib.blake2b("\0".join(parts).encode(), key=self._secret, digest_size=8)
        return int.from_bytes(digest.digest(), "big")

    def new_bucket(self, address: PeerAddress, source_host: str) -> int:
        """Index of the new-table bucket `address` goes to when `source_host` told us."""
        source_group = address_group(source_host)
        slot = self._hash("slot", address_group(address.host)) % BUCKETS_PER_SOURCE_GROUP
        return self._hash("new", source_group, str(slot)) % len(self._new)

    def _tried_bucket(self, endpoint: Endpoint) -> int:
        slot = self._hash("tried-slot", f"{endpoint[0]}:{endpoint[1]}") % 8
        return self._hash("tried", address_group(endpoint[0]), str(slot)) % len(self._tried)

    def add(self, address: PeerAddress, source_host: str = "") -> bool:
        """File `address` told by `source_host`; True if it was new and there was room.

        An endpoint already known is left as it is (its expected key included).
        """
        if address.endpoint in self._where:
            return False
        bucket = self._new[self.new_bucket(address, source_host)]
        if len(bucket) >= BUCKET_SIZE:
            return False
        bucket[address.endpoint] = address
        self._where[address.endpoint] = bucket
        return True

    def mark_good(self, endpoint: Endpoint, node_address: bytes) -> None:
        """We connected to `endpoint` and it proved `node_address`: move it to the tried table."""
        table = self._where.get(endpoint)
        if table is None:
            return
        address = table.pop(endpoint)
        if address.node_address is None:
            address = replace(address, node_address=node_address)
        bucket = self._tried[self._tried_bucket(endpoint)]
        bucket.pop(endpoint, None)
        if len(bucket) >= BUCKET_SIZE:
            evicted, _ = bucket.popitem(last=False)
            del self._where[evicted]
        bucket[endpoint] = address
        self._where[endpoint] = bucket

    def is_tried(self, endpoint: Endpoint) -> bool:
        """True if we once connected to `endpoint`."""
        table = self._where.get(endpoint)
        return table is not None and any(table is bucket for bucket in self._tried)

    def get(self, endpoint: Endpoint) -> PeerAddress | None:
        """The entry filed for `endpoint`, if any."""
        table = self._where.get(endpoint)
        return None if table is None else table.get(endpoint)

    def remove(self, endpoint: Endpoint) -> None:
        """Forget the address at `endpoint`."""
        table = self._where.pop(endpoint, None)
        if table is not None:
            table.pop(endpoint, None)

    def addresses(self) -> list[PeerAddress]:
        """Every known address, tried ones first."""
        return [
            address for bucket in self._tried + self._new for address in bucket.values()
        ]

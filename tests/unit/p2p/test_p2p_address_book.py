"""Peer exchange cannot poison the address book (issue 13, R32).

The book is bucketed by who told us (p2p/address_book.py); exchanged addresses that
are not public, or that would change what we know of an endpoint, are not filed
(p2p/pex.py). Pure: no sockets, a fake sender.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest

from marketplace_tx.primitives.crypto import KeyPair
from p2p.address_book import BUCKET_SIZE, BUCKETS_PER_SOURCE_GROUP, AddressBook
from p2p.addresses import PeerAddress, parse_peer_address
from p2p.errors import MessageError
from p2p.messages import MAX_PEX_ADDRESSES, peers_body
from p2p.peer_set import PeerSet
from p2p.pex import PEX_BURST, PeerExchange


@dataclass
class Sender:
    """The two things `PeerExchange.learn` reads of the peer that sent `peers`."""

    node_address: bytes
    remote_host: str


def key_hex(seed: int) -> str:
    return KeyPair.from_seed(seed.to_bytes(32, "big")).address.hex()


def public(index: int) -> str:
    """A distinct public IPv4 address in one of many /16s."""
    return f"11.{index // 250 % 250}.{index % 250}.{1 + index // 62500}"


def exchange(
    book: AddressBook,
    allow_private: bool = False,
    persistent: tuple[PeerAddress, ...] = (),
) -> PeerExchange:
    peers = PeerSet(KeyPair.generate().address, 40)
    return PeerExchange(
        book, peers, lambda address: False, random.Random(7), allow_private, persistent
    )


def message(entries: list[str]) -> dict[str, list[str]]:
    return peers_body(entries)


def test_one_source_cannot_fill_or_replace_the_book() -> None:
    book = AddressBook(1000, secret=b"k" * 32)
    pex = exchange(book)
    for index in range(200):  # 200 honest sources in 200 /16s, one address each
        sender = Sender(KeyPair.generate().address, f"{20 + index // 250}.{index % 250}.0.1")
        pex.learn(sender, message([f"{key_hex(index + 1)}@{public(index)}:26656"]))
    honest = {address.endpoint for address in book.addresses()}
    assert len(honest) >= 150  # a few collide in full buckets; most are filed

    for round_number in range(16):  # fresh (free) keys from one IP: the rate is per key
        attacker = Sender(KeyPair.generate().address, "66.6.6.6")
        entries = [
            f"{key_hex(10_000 + 64 * round_number + n)}@{public(1_000 + 64 * round_number + n)}:1"
            for n in range(MAX_PEX_ADDRESSES)
        ]
        pex.learn(attacker, message(entries))
    known = {address.endpoint for address in book.addresses()}
    assert honest <= known  # nothing honest was replaced
    assert len(known - honest) <= BUCKETS_PER_SOURCE_GROUP * BUCKET_SIZE


def test_a_known_endpoint_keeps_its_key_and_persistent_peers_are_never_changed() -> None:
    book = AddressBook(1000)
    persistent = parse_peer_address(f"{key_hex(1)}@12.0.0.1:26656")
    pex = exchange(book, persistent=(persistent,))
    sender = Sender(KeyPair.generate().address, "30.0.0.1")
    pex.learn(sender, message([f"{key_hex(2)}@13.0.0.1:26656"]))
    pex.learn(sender, message([f"{key_hex(3)}@13.0.0.1:26656"]))  # same endpoint, other key
    pex.learn(sender, message(["13.0.0.1:26656"]))  # same endpoint, no key
    [entry] = book.addresses()
    assert entry.node_address == bytes.fromhex(key_hex(2))
    pex.learn(sender, message([f"{key_hex(4)}@12.0.0.1:26656", f"{key_hex(1)}@14.0.0.1:1"]))
    assert [address.endpoint for address in book.addresses()] == [("13.0.0.1", 26656)]


def test_only_public_addresses_are_filed_unless_the_operator_allows_private_ones() -> None:
    private = [
        "127.0.0.1:26656",
        "10.1.2.3:26656",
        "192.168.1.1:26656",
        "172.16.0.9:26656",
        "169.254.1.1:26656",
        "[::1]:26656",
        "[fd00::1]:26656",
        "[fe80::1]:26656",
        "seed.example.com:26656",
    ]
    never = ["0.0.0.0:26656", "224.0.0.1:26656", "[::]:26656", "[ff02::1]:26656"]
    entries = [f"{key_hex(n + 1)}@{text}" for n, text in enumerate(private + never)]
    sender = Sender(KeyPair.generate().address, "30.0.0.1")

    closed = AddressBook(1000)
    with pytest.raises(MessageError):  # the DNS name and the never-dialable ones cost
        exchange(closed).learn(sender, message(entries))
    assert len(closed) == 0

    opened = AddressBook(1000)
    with pytest.raises(MessageError):  # the never-dialable ones still cost
        exchange(opened, allow_private=True).learn(sender, message(entries))
    filed = {f"{a.host}:{a.port}" for a in opened.addresses()}
    assert {"127.0.0.1:26656", "10.1.2.3:26656", "seed.example.com:26656"} <= filed
    assert not filed & {"0.0.0.0:26656", "224.0.0.1:26656", ":::26656", "ff02::1:26656"}
    assert len(filed) == len(private)


def test_addresses_we_connected_to_survive_any_amount_of_gossip() -> None:
    book = AddressBook(64, secret=b"s" * 32)  # a tiny book: every bucket fills
    pex = exchange(book)
    sender = Sender(KeyPair.generate().address, "30.0.0.1")
    good = [f"{key_hex(n + 1)}@{public(n)}:26656" for n in range(8)]
    pex.learn(sender, message(good))
    tried = [address for address in book.addresses()]
    for address in tried:
        assert address.node_address is not None
        book.mark_good(address.endpoint, address.node_address)
    for source in range(50):
        flood = Sender(KeyPair.generate().address, f"{40 + source}.0.0.1")
        entries = [f"{key_hex(100 + 64 * source + n)}@{public(500 + 64 * source + n)}:2"
                   for n in range(MAX_PEX_ADDRESSES)]
        pex.learn(flood, message(entries))
    for address in tried:
        assert book.is_tried(address.endpoint)
        assert address.endpoint in book


def test_bad_peer_exchange_content_costs_the_sender() -> None:
    pex = exchange(AddressBook(1000))
    sender = Sender(KeyPair.generate().address, "30.0.0.1")
    good = f"{key_hex(1)}@{public(1)}:26656"
    # a DNS name or a never-dialable address: our peers never send them (the good entry is filed)
    for bad in ("seed.example.com:1", "0.0.0.0:1", "[ff02::1]:1"):
        with pytest.raises(MessageError):
            pex.learn(sender, message([good, f"{key_hex(2)}@{bad}"]))
    assert [address.endpoint for address in pex.book.addresses()] == [(public(1), 26656)]
    # private addresses are ignored but free: an honest peer on a LAN shares them
    other = Sender(KeyPair.generate().address, "31.0.0.1")
    for _ in range(PEX_BURST):
        assert pex.learn(other, message([f"{key_hex(3)}@10.0.0.1:26656"])) == 0
    # beyond the burst, `peers` messages cost too (an honest peer sends one per interval)
    with pytest.raises(MessageError, match="rate"):
        pex.learn(other, message([]))

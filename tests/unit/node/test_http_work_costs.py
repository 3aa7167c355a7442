"""The HTTP API charges work, not requests (node/http/costs.py, limits.py, connections.py;
docs/api.md "Rate limits"), and bounds heavy reads per request (node/indexer.py scan budget,
`costs.MAX_LIST_TX_IDS`). Unit tests with fake clocks, fake index views and fake transports."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from node import indexer
from node.config import HttpConfig
from node.http.app import blocks_within
from node.http.connections import ConnectionGuard, raw_error
from node.http.costs import (
    BODY_BYTES_PER_UNIT,
    MAX_LIST_TX_IDS,
    REQUEST_COST,
    TRANSACTION_COST,
    body_cost,
    rows_cost,
    transactions_cost,
    tx_ids_cost,
)
from node.http.limits import ClientRateLimiter, CostBucket


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- the cost bucket ----------------------------------------------------------------------


def test_costs_at_the_defaults_bound_a_burst_of_signature_checks() -> None:
    defaults = HttpConfig()
    assert REQUEST_COST == 1 and transactions_cost(10_000) == 10_000 * TRANSACTION_COST == 100
    assert rows_cost(100) == 10 and body_cost(BODY_BYTES_PER_UNIT) == 1
    assert tx_ids_cost(MAX_LIST_TX_IDS) == pytest.approx(10)  # a page's (or a full block's) ids
    # one address's burst pays for at most this many signature checks at once (before: 1,000 × 10,000)
    assert defaults.burst_per_ip / TRANSACTION_COST == 100_000
    # and a load generator's 10,000 tx/s fit the rate with room for its polling
    assert transactions_cost(10_000) + 50 * REQUEST_COST < defaults.rate_per_ip


def test_a_charge_is_taken_whole_or_not_at_all() -> None:
    clock = FakeClock()
    bucket = CostBucket(rate=2, capacity=10, clock=clock)
    assert bucket.charge(6) == 0
    assert bucket.charge(6) == pytest.approx(2)  # 4 left: 2 missing, nothing taken
    assert bucket.units() == pytest.approx(4)
    clock.now += 1
    assert bucket.charge(6) == 0 and bucket.units() == pytest.approx(0)


def test_a_charge_above_the_burst_needs_a_full_bucket_and_leaves_debt() -> None:
    clock = FakeClock()
    bucket = CostBucket(rate=10, capacity=20, clock=clock)
    assert bucket.charge(1) == 0
    assert bucket.charge(50) == pytest.approx(1)  # 19 of the 20 a full bucket holds
    clock.now += 0.1
    assert bucket.charge(50) == 0
    assert bucket.units() == pytest.approx(-30)  # in debt: the rate holds for every size
    clock.now += 4.9
    assert bucket.charge(20) == pytest.approx(1)
    clock.now += 0.1
    assert bucket.charge(20) == 0


def test_a_request_whose_base_cost_is_paid_can_still_pay_above_the_burst() -> None:
    """The middleware takes 1 unit first; a handler's charge above the rest of a full bucket
    is still paid from it (else a page costing more than the burst could never be served),
    and the wait it answers covers the base cost of the request sent again."""
    clock = FakeClock()
    bucket = CostBucket(rate=4, capacity=8, clock=clock)
    assert bucket.charge(1) == 0  # the base cost of a request
    assert bucket.charge(10, paid=1) == 0  # a page of 100 rows: 7 would do from a full bucket
    assert bucket.units() == pytest.approx(-3)
    assert bucket.charge(1) == pytest.approx(4)  # in debt: 1 needed, 4 missing
    clock.now += 2.5  # 7 units
    assert bucket.charge(1) == 0
    missing = bucket.charge(10, paid=1)
    assert missing == pytest.approx(8 - 6)  # 6 held now; sent again, the request needs 1 + 7
    clock.now += missing / 4
    assert bucket.charge(1) == 0 and bucket.charge(10, paid=1) == 0


def test_the_limiter_answers_seconds_to_wait_per_client() -> None:
    clock = FakeClock()
    limiter = ClientRateLimiter(rate_per_s=5, burst=20, clock=clock)
    assert limiter.charge("a", 16) is None
    assert limiter.charge("a", 16) == 3  # 12 missing at 5 per second
    assert limiter.charge("b", 16) is None  # another client is not affected
    assert limiter.retry_after("a") is None  # a plain request still fits
    assert limiter.refused == 1
    off = ClientRateLimiter(rate_per_s=0, burst=1, clock=clock)
    assert off.charge("a", 1e9) is None and len(off) == 0


# --- heavy reads ----------------------------------------------------------------------------


@dataclass
class FakeBlock:
    txs: list[bytes]


def test_a_page_of_blocks_ends_at_the_transaction_id_budget() -> None:
    read: list[int] = []

    def blocks(sizes: list[int]) -> Iterator[FakeBlock]:
        for size in sizes:
            read.append(size)
            yield FakeBlock([b"t"] * size)

    page = blocks_within(blocks([4000, 4000, 4000, 1]), MAX_LIST_TX_IDS)
    assert [len(block.txs) for block in page] == [4000, 4000]
    assert read == [4000, 4000, 4000]  # lazily: the fourth block is never read
    assert [len(block.txs) for block in blocks_within(blocks([MAX_LIST_TX_IDS, 1]), MAX_LIST_TX_IDS)] == [
        MAX_LIST_TX_IDS]
    assert len(blocks_within(blocks([MAX_LIST_TX_IDS + 5]), MAX_LIST_TX_IDS)) == 1  # always one block
    assert len(blocks_within(blocks([0] * 100), MAX_LIST_TX_IDS)) == 100


@dataclass
class FakeIndex:
    """An index view that counts the entries it hands out."""

    pairs: list[tuple[bytes, bytes]]
    handed: int = 0

    def entries(self, start: bytes, stop: bytes, reverse: bool = False,
                include_start: bool = True) -> Iterator[tuple[bytes, bytes]]:
        for key, value in sorted(self.pairs, reverse=reverse):
            if start <= key < stop:
                self.handed += 1
                yield key, value


def listing_entry(number: int, shop_id: bytes, active: bool) -> tuple[bytes, bytes]:
    position = indexer.encode_position(number, 0)
    value = number.to_bytes(32, "big") + shop_id + (100).to_bytes(8, "big") + bytes([active])
    return indexer.LISTINGS_BY_SHOP + shop_id + position, value


def test_shop_listing_counts_stop_at_the_scan_budget() -> None:
    shop_id = b"s" * 32
    big = FakeIndex([listing_entry(number, shop_id, number % 2 == 0) for number in range(indexer.SCAN_BUDGET + 500)])
    counts = indexer.count_listings(big, shop_id)
    assert (counts.listings, counts.active, counts.complete) == (indexer.SCAN_BUDGET, indexer.SCAN_BUDGET // 2, False)
    assert big.handed <= indexer.SCAN_BUDGET + 1
    small = FakeIndex([listing_entry(number, shop_id, True) for number in range(3)]
                      + [listing_entry(9, b"o" * 32, True)])
    counts = indexer.count_listings(small, shop_id)
    assert (counts.listings, counts.active, counts.complete) == (3, 3, True)
    assert indexer.count_listings(small, shop_id, budget=2).complete is False
    assert indexer.count_listings(small, b"n" * 32, budget=0).complete is True  # nothing to count


# --- connections from accept on ----------------------------------------------------------------


@dataclass
class FakeTransport:
    host: str
    written: list[bytes] = field(default_factory=list)
    closing: bool = False

    def get_extra_info(self, name: str) -> Any:
        return (self.host, 40000) if name == "peername" else None

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def close(self) -> None:
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing


def answer_of(transport: FakeTransport) -> tuple[bytes, dict[str, Any]]:
    head, _, body = b"".join(transport.written).partition(b"\r\n\r\n")
    return head, json.loads(body)


def test_connections_are_counted_per_address_from_accept() -> None:
    guard = ConnectionGuard(HttpConfig(max_connections_per_ip=2), clock=FakeClock())
    first, second, third = object(), object(), object()
    assert guard.accepted(first, FakeTransport("192.0.2.1")) and guard.accepted(second, FakeTransport("192.0.2.1"))
    refused = FakeTransport("192.0.2.1")
    assert not guard.accepted(third, refused) and refused.closing and guard.refused == 1
    head, body = answer_of(refused)
    assert head.startswith(b"HTTP/1.1 429 ") and b"Retry-After: 1" in head and b"Connection: close" in head
    assert body["error"]["code"] == "rate_limited"
    assert guard.accepted(object(), FakeTransport("192.0.2.2"))  # another address
    assert guard.accepted(object(), FakeTransport("2001:db8::1")) and guard.accepted(object(), FakeTransport("2001:db8::2"))
    assert not guard.accepted(object(), FakeTransport("2001:db8::3"))  # one /64
    guard.closed(first)
    assert guard.open_connections("192.0.2.1") == 1
    assert guard.accepted(third, FakeTransport("192.0.2.1"))


def test_a_connection_without_a_request_is_closed_at_the_header_deadline() -> None:
    clock = FakeClock()
    guard = ConnectionGuard(HttpConfig(header_timeout_s=5), clock=clock)
    slow, served = FakeTransport("192.0.2.1"), FakeTransport("192.0.2.1")
    slow_protocol, served_protocol = object(), object()
    guard.accepted(slow_protocol, slow)
    guard.accepted(served_protocol, served)
    guard.request_started(served_protocol)
    clock.now += 4.9
    assert guard.sweep() == 0 and not slow.closing
    clock.now += 0.1
    assert guard.sweep() == 1 and slow.closing and not served.closing
    head, body = answer_of(slow)
    assert head.startswith(b"HTTP/1.1 408 ") and body["error"]["code"] == "request_timeout"
    assert guard.open_connections("192.0.2.1") == 1 and guard.timed_out == 1
    assert raw_error(408, "Request Timeout", "request_timeout", "x").endswith(b'"message": "x"}}')

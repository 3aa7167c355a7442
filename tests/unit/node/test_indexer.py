"""The marketplace read-model indexes (node/indexer.py) over a real LevelDB ChainStore.

Blocks are built by the state machine (`build_block`) from signed transactions and
committed by `ChainStore.commit_block`, which writes the index changes in the block's
own batch. After every block the incrementally maintained indexes must equal the
indexes computed from scratch from the committed state, so a stale entry left behind
by a state change (by transaction or by deadline, R15) fails the test.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import node.indexer as indexer
import node.storage as storage
from consensus.commit import sign_commit
from marketplace_tx.chain.block import Commit
from marketplace_tx.chain.genesis import Genesis, GenesisAccount
from marketplace_tx.chain.params import Params
from marketplace_tx.chain.transaction import Transaction, sign_transaction
from marketplace_tx.primitives import codec
from marketplace_tx.primitives.crypto import KeyPair
from marketplace_tx.rules.listings import Listing
from marketplace_tx.rules.order_records import Order
from marketplace_tx.rules.records import record_from_map
from marketplace_tx.rules.shops import Shop
from marketplace_tx.rules.state_keys import LISTING, ORDER, SHOP
from marketplace_tx.rules.state_transition import BlockResult, apply_block, build_block
from node.storage import ChainStore

CHAIN_ID = "marketchain-indexer-test"
GENESIS_TIME = 1_700_000_000_000
STEP_MS = 1_000
FEE = 10
ACCEPT_WINDOW_MS = 60_000
INDEX_PREFIXES = b"AHOGLYWFUNQXV"
"""Every index family of node/indexer.py."""


def key(name: str) -> KeyPair:
    return KeyPair.from_seed(hashlib.sha256(b"test_indexer/" + name.encode()).digest())


VALIDATOR, MERCHANT, BUYER, OTHER_BUYER, CARRIER, STRANGER = (
    key(name) for name in ("validator", "merchant", "buyer", "other_buyer", "carrier", "stranger")
)


def make_genesis() -> Genesis:
    params = Params(
        accept_window_ms=ACCEPT_WINDOW_MS,
        ship_window_ms=ACCEPT_WINDOW_MS,
        confirm_window_ms=ACCEPT_WINDOW_MS,
    )
    funded = (VALIDATOR, MERCHANT, BUYER, OTHER_BUYER, CARRIER, STRANGER)
    accounts = tuple(
        GenesisAccount(address, 10_000_000) for address in sorted(k.address for k in funded)
    )
    genesis = Genesis(CHAIN_ID, GENESIS_TIME, (VALIDATOR.address,), accounts, params)
    genesis.validate()
    return genesis


class Chain:
    """A ChainStore fed with blocks of signed transactions, one sender nonce sequence each."""

    def __init__(self, store: ChainStore, genesis: Genesis) -> None:
        self.store = store
        self.genesis = genesis
        self.nonces: dict[bytes, int] = {}
        self.last_commit: Commit | None = None
        self.results: list[BlockResult] = []

    def tx(self, sender: KeyPair, tx_type: str, **payload: Any) -> Transaction:
        nonce = self.nonces.get(sender.address, 0)
        self.nonces[sender.address] = nonce + 1
        return sign_transaction(sender, CHAIN_ID, tx_type, payload, nonce, FEE)

    def block(self, *txs: Transaction, after_ms: int = STEP_MS) -> BlockResult:
        tip = self.store.head()
        assert tip is not None
        result = build_block(
            self.store,
            tip,
            CHAIN_ID,
            self.genesis.params,
            VALIDATOR.address,
            tip.time + after_ms,
            list(txs),
            self.last_commit,
        )
        assert len(result.transactions) == len(txs), "a transaction was not includable"
        commit = sign_commit(
            [VALIDATOR], CHAIN_ID, result.block.header.height, 0, result.block.hash
        )
        self.store.commit_block(result, commit)
        self.last_commit = commit
        self.results.append(result)
        check_indexes_match_state(self.store)
        return result

    def ok(self, *txs: Transaction, after_ms: int = STEP_MS) -> BlockResult:
        result = self.block(*txs, after_ms=after_ms)
        assert all(receipt.ok for receipt in result.receipts), [
            receipt.to_map() for receipt in result.receipts
        ]
        return result


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ChainStore]:
    opened = ChainStore(tmp_path / "db")
    opened.initialize(make_genesis())
    yield opened
    opened.close()


@pytest.fixture
def chain(store: ChainStore) -> Chain:
    return Chain(store, make_genesis())


# --- an independent model of the record indexes -------------------------------------------


def index_pairs(store: ChainStore, families: bytes = INDEX_PREFIXES) -> dict[bytes, bytes]:
    return {k: v for k, v in store.db.iterator() if k[:1] in families and k[:1] != storage.STATE}


def position_of(store: ChainStore, tx_hash: bytes) -> bytes:
    location = store.tx_location(tx_hash)
    assert location is not None
    return location.height.to_bytes(8, "big") + location.index.to_bytes(4, "big")


def text_key(prefix: bytes, text: str) -> bytes:
    raw = text.encode()
    return prefix + bytes([len(raw)]) + raw


def expected_record_indexes(store: ChainStore) -> dict[bytes, bytes]:
    """The shop, listing, order and review indexes computed from the committed state alone."""
    expected: dict[bytes, bytes] = {}
    for state_key, raw in store.scan(SHOP, SHOP + b"\xff" * 33):
        shop_id, shop = state_key[1:], record_from_map(Shop, codec.decode(raw))
        position = position_of(store, shop_id)
        expected[b"H" + position] = shop_id
        expected[b"O" + shop.owner + position] = shop_id
    for state_key, raw in store.scan(LISTING, LISTING + b"\xff" * 33):
        listing_id, listing = state_key[1:], record_from_map(Listing, codec.decode(raw))
        position = position_of(store, listing_id)
        value = (
            listing_id
            + listing.shop_id
            + listing.price.to_bytes(8, "big")
            + bytes([listing.active])
        )
        expected[b"G" + position] = value
        expected[b"L" + listing.shop_id + position] = value
        for tag in listing.tags:
            expected[text_key(b"Y", tag.lower()) + position] = value
        text = " ".join([listing.title, listing.description or "", *listing.tags]).lower()
        for word in indexer.WORD_PATTERN.findall(text):
            expected[text_key(b"W", word[: indexer.MAX_WORD_CHARS]) + position] = value
    for state_key, raw in store.scan(ORDER, ORDER + b"\xff" * 33):
        order_id, order = state_key[1:], record_from_map(Order, codec.decode(raw))
        position = position_of(store, order_id)
        value = order_id + order.buyer + order.merchant + order.shop_id + order.state.encode()
        for prefix in (
            b"F",
            b"U" + order.buyer,
            b"N" + order.merchant,
            b"Q" + order.shop_id,
            text_key(b"X", order.state),
        ):
            expected[prefix + position] = value
        if order.review is not None:
            expected[b"V" + order.shop_id + position_of(store, order.review["tx"])] = order_id
    return expected


def check_indexes_match_state(store: ChainStore) -> None:
    actual = index_pairs(store, b"HOGLYWFUNQXV")
    expected = expected_record_indexes(store)
    assert actual.keys() - expected.keys() == set(), "stale index entries"
    assert expected.keys() - actual.keys() == set(), "missing index entries"
    assert actual == expected


def account_txs(store: ChainStore, account: KeyPair) -> list[dict[str, Any]]:
    """The account's history, newest first, as stored."""
    prefix = indexer.ACCOUNT_TXS + account.address
    return [
        {**codec.decode(value), "position": indexer.decode_position(k[-12:])}
        for k, value in store.db.iterator(prefix=prefix, reverse=True)
    ]


def orders_in_state(store: ChainStore, state: str) -> list[bytes]:
    prefix = indexer.state_prefix(state)
    return [
        indexer.decode_order_entry(value).order_id for _, value in store.db.iterator(prefix=prefix)
    ]


# --- building a market --------------------------------------------------------------------


def open_market(chain: Chain) -> tuple[bytes, bytes]:
    """Roles, a shop and a listing; returns (shop_id, listing_id)."""
    evidence = hashlib.sha256(b"kyc").digest()
    chain.ok(
        chain.tx(
            VALIDATOR,
            "role_grant",
            account=MERCHANT.address,
            role="merchant",
            evidence_hash=evidence,
        ),
        chain.tx(
            VALIDATOR, "role_grant", account=CARRIER.address, role="carrier", evidence_hash=evidence
        ),
    )
    shop = chain.tx(MERCHANT, "shop_create", name="Tea House", points_bps=100, max_redeem_bps=1000)
    chain.ok(shop)
    listing = chain.tx(
        MERCHANT,
        "listing_create",
        shop_id=shop.hash,
        title="Green Tea",
        description="Fresh leaves from Yunnan",
        price=1_000,
        stock=10,
        tags=["Tea", "organic"],
    )
    chain.ok(listing)
    return shop.hash, listing.hash


def place(
    chain: Chain, buyer: KeyPair, listing_id: bytes, quantity: int = 1, **extra: Any
) -> Transaction:
    return chain.tx(
        buyer,
        "order_place",
        listing_id=listing_id,
        quantity=quantity,
        max_unit_price=1_000,
        shipping=b"sealed address",
        **extra,
    )


# --- tests ------------------------------------------------------------------------------------


def test_shops_and_listings_are_indexed_and_follow_updates(chain: Chain) -> None:
    shop_id, listing_id = open_market(chain)
    store = chain.store
    assert [v for _, v in store.db.iterator(prefix=indexer.SHOPS)] == [shop_id]
    assert [v for _, v in store.db.iterator(prefix=indexer.SHOPS_BY_OWNER + MERCHANT.address)] == [
        shop_id
    ]
    for prefix in (
        indexer.word_prefix("yunnan"),
        indexer.word_prefix("green"),
        indexer.tag_prefix("TEA"),
        indexer.LISTINGS_BY_SHOP + shop_id,
        indexer.LISTINGS,
    ):
        entries = [indexer.decode_listing_entry(v) for _, v in store.db.iterator(prefix=prefix)]
        assert entries == [indexer.ListingEntry(listing_id, shop_id, 1_000, True)], prefix
    chain.ok(
        chain.tx(
            MERCHANT,
            "listing_update",
            listing_id=listing_id,
            price=1_500,
            title="Black Tea",
            tags=["tea"],
            active=False,
        )
    )
    assert list(store.db.iterator(prefix=indexer.word_prefix("green"))) == []
    assert list(store.db.iterator(prefix=indexer.tag_prefix("organic"))) == []
    [(_, value)] = list(store.db.iterator(prefix=indexer.word_prefix("black")))
    assert indexer.decode_listing_entry(value) == indexer.ListingEntry(
        listing_id, shop_id, 1_500, False
    )


def test_orders_move_between_state_indexes_by_transaction(chain: Chain) -> None:
    shop_id, listing_id = open_market(chain)
    first, second = place(chain, BUYER, listing_id), place(chain, OTHER_BUYER, listing_id, 2)
    chain.ok(first, second)
    store = chain.store
    assert orders_in_state(store, "placed") == [first.hash, second.hash]
    chain.ok(chain.tx(MERCHANT, "order_accept", order_id=first.hash))
    assert orders_in_state(store, "placed") == [second.hash]
    assert orders_in_state(store, "accepted") == [first.hash]
    chain.ok(
        chain.tx(
            MERCHANT, "order_ship", order_id=first.hash, carrier=CARRIER.address, tracking="T1"
        ),
        chain.tx(OTHER_BUYER, "order_cancel", order_id=second.hash),
    )
    chain.ok(
        chain.tx(
            CARRIER, "shipment_update", order_id=first.hash, status="delivered", location="door"
        )
    )
    chain.ok(chain.tx(BUYER, "order_confirm", order_id=first.hash))
    review = chain.tx(BUYER, "review_submit", order_id=first.hash, rating=5, text="lovely")
    chain.ok(review)
    chain.ok(chain.tx(MERCHANT, "review_reply", order_id=first.hash, text="thanks"))
    assert orders_in_state(store, "completed") == [first.hash]
    assert orders_in_state(store, "cancelled") == [second.hash]
    for state in ("placed", "accepted", "shipped", "delivered"):
        assert orders_in_state(store, state) == []
    by_buyer = [
        indexer.decode_order_entry(v)
        for _, v in store.db.iterator(prefix=indexer.ORDERS_BY_BUYER + BUYER.address)
    ]
    assert [(entry.order_id, entry.state) for entry in by_buyer] == [(first.hash, "completed")]
    merchant_orders = list(store.db.iterator(prefix=indexer.ORDERS_BY_MERCHANT + MERCHANT.address))
    assert len(merchant_orders) == 2
    reviews = [v for _, v in store.db.iterator(prefix=indexer.REVIEWS_BY_SHOP + shop_id)]
    assert reviews == [first.hash]
    # the buyer's history names the merchant's and the carrier's transactions on its order
    history = account_txs(store, BUYER)
    types = [entry["type"] for entry in history]
    assert types == [
        "review_reply",
        "review_submit",
        "order_confirm",
        "shipment_update",
        "order_ship",
        "order_accept",
        "order_place",
    ]
    assert all(entry["ok"] for entry in history)
    assert history[1]["hash"] == review.hash and history[1]["sender"] == BUYER.address
    carrier_types = [entry["type"] for entry in account_txs(store, CARRIER)]
    assert carrier_types == ["shipment_update", "order_ship", "role_grant"]


def test_deadlines_move_orders_without_a_transaction(chain: Chain) -> None:
    _, listing_id = open_market(chain)
    order = place(chain, BUYER, listing_id, 3)
    chain.ok(order)
    assert orders_in_state(chain.store, "placed") == [order.hash]
    before = account_txs(chain.store, BUYER)
    result = chain.block(after_ms=ACCEPT_WINDOW_MS + STEP_MS)  # no transaction: the deadline fires
    assert result.transactions == () and result.block_events
    assert orders_in_state(chain.store, "placed") == []
    assert orders_in_state(chain.store, "expired") == [order.hash]
    assert account_txs(chain.store, BUYER) == before


def test_a_failed_transaction_indexes_no_object(chain: Chain) -> None:
    _, listing_id = open_market(chain)
    orders_before = index_pairs(chain.store, b"FUNQXV")
    shops_before = index_pairs(chain.store, b"HO")
    too_cheap = chain.tx(
        BUYER, "order_place", listing_id=listing_id, quantity=1, max_unit_price=999, shipping=b"x"
    )
    too_many = place(chain, OTHER_BUYER, listing_id, 11)
    no_role = chain.tx(STRANGER, "shop_create", name="Nope", points_bps=0, max_redeem_bps=0)
    result = chain.block(too_cheap, too_many, no_role)
    assert [receipt.code for receipt in result.receipts] == [
        "price_changed",
        "out_of_stock",
        "forbidden",
    ]
    assert index_pairs(chain.store, b"FUNQXV") == orders_before == {}
    assert index_pairs(chain.store, b"HO") == shops_before
    assert chain.store.get(ORDER + too_cheap.hash) is None
    [entry] = account_txs(chain.store, STRANGER)
    assert entry == {
        "code": "forbidden",
        "hash": no_role.hash,
        "ok": False,
        "sender": STRANGER.address,
        "type": "shop_create",
        "position": (result.block.header.height, 2),
    }
    assert [item["code"] for item in account_txs(chain.store, BUYER)] == ["price_changed"]


def test_indexes_survive_reopen_and_replay(chain: Chain, tmp_path: Path) -> None:
    shop_id, listing_id = open_market(chain)
    order = place(chain, BUYER, listing_id)
    chain.ok(order)
    chain.ok(chain.tx(MERCHANT, "order_accept", order_id=order.hash))
    chain.block(after_ms=ACCEPT_WINDOW_MS + STEP_MS)  # the ship window passes: expired by deadline
    store = chain.store
    before = index_pairs(store)
    assert before and orders_in_state(store, "expired") == [order.hash]
    store.close()
    reopened = ChainStore(tmp_path / "db")
    try:
        assert index_pairs(reopened) == before
        check_indexes_match_state(reopened)
        replay = ChainStore(tmp_path / "replay")
        try:
            tip = replay.initialize(chain.genesis)
            for height in range(1, reopened.head().height + 1):  # type: ignore[union-attr]
                block = reopened.block(height)
                commit = reopened.commit(height)
                assert block is not None and commit is not None
                tip = replay.commit_block(
                    apply_block(replay, tip, CHAIN_ID, chain.genesis.params, block), commit
                )
            assert index_pairs(replay) == before
        finally:
            replay.close()
    finally:
        reopened.close()
        chain.store = ChainStore(tmp_path / "db")  # the fixture closes it


def test_every_index_write_is_in_the_block_batch(
    chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure while writing the head discards the block's index writes with it."""
    _, listing_id = open_market(chain)
    store = chain.store
    before = dict(store.db.iterator())
    tip = store.head()
    assert tip is not None
    order = place(chain, BUYER, listing_id)
    result = build_block(
        store,
        tip,
        CHAIN_ID,
        chain.genesis.params,
        VALIDATOR.address,
        tip.time + STEP_MS,
        [order],
        chain.last_commit,
    )
    assert indexer.block_index_writes(store, result).puts, "the block writes index entries"
    commit = sign_commit([VALIDATOR], CHAIN_ID, result.block.header.height, 0, result.block.hash)

    def broken_encode_tip(_: Any) -> bytes:
        raise RuntimeError("disk on fire")

    with monkeypatch.context() as patch:
        patch.setattr(storage, "_encode_tip", broken_encode_tip)
        with pytest.raises(RuntimeError):
            store.commit_block(result, commit)
    assert dict(store.db.iterator()) == before
    store.commit_block(result, commit)
    assert orders_in_state(store, "placed") == [order.hash]


def test_pages_follow_cursors_and_bound_their_work(
    chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    shop_id, first = open_market(chain)
    more = [
        chain.tx(
            MERCHANT, "listing_create", shop_id=shop_id, title=f"Cup {n}", price=10 + n, stock=1
        )
        for n in range(4)
    ]
    chain.ok(*more)
    created = [first] + [tx.hash for tx in more]

    def listing_id(value: bytes, position: bytes) -> bytes:
        return indexer.decode_listing_entry(value).listing_id

    def every_page(newest_first: bool, limit: int, accept: Any = listing_id) -> list[list[bytes]]:
        pages, cursor = [], None
        with chain.store.read_view() as view:
            while True:
                items, next_cursor = indexer.scan_page(
                    view, indexer.LISTINGS, cursor, limit, accept, newest_first
                )
                pages.append(items)
                if next_cursor is None:
                    return pages
                cursor = bytes.fromhex(next_cursor)

    assert every_page(True, 2) == [created[:2:-1], created[2:0:-1], created[:1]]
    assert every_page(False, 2) == [created[:2], created[2:4], created[4:]]
    assert every_page(False, 5) == [created]
    monkeypatch.setattr(indexer, "SCAN_BUDGET", 2)
    assert every_page(True, 10, lambda value, position: None) == [[], [], []], (
        "2 + 2 + 1 entries scanned"
    )

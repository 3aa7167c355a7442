"""A market chain on a real LevelDB and its state-sync snapshot, for the restore tests
(tests/unit/node/test_state_restore.py, tests/integration/test_restore_crash.py).

`build_market` plays, block by block with `build_block` and `commit_block` as a node
does: roles, two shops (one with an arbiter and points), unique items, listings with
tags and words (one deactivated), orders in every common state (placed, accepted,
shipped, completed with reviews and a reply, rejected with points redeemed, cancelled),
up to SNAPSHOT_HEIGHT; then LATER blocks that change restored objects (an order
accepted, another shipped, a listing re-titled, a review replied to, a shop updated)
and create new ones. `snapshot_at` makes the manifest and chunks of the state after
the snapshot height, exactly as a serving node would (R39).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from consensus.commit import sign_commit
from marketplace_tx.chain.block import Commit, Header
from marketplace_tx.chain.genesis import Genesis, GenesisAccount
from marketplace_tx.chain.params import Params
from marketplace_tx.chain.transaction import Transaction, sign_transaction
from marketplace_tx.primitives import codec
from marketplace_tx.primitives.crypto import KeyPair
from marketplace_tx.rules.snapshot_tree import ChunkTree, check_chunk_tree
from marketplace_tx.rules.snapshots import Manifest, encode_chunk, make_manifest, split_chunks
from marketplace_tx.rules.state_transition import BlockResult, build_block
from node.storage import ChainStore

CHAIN_ID = "marketchain-restore-test"
GENESIS_TIME = 1_700_000_000_000
STEP_MS = 1_000
FEE = 10
EVIDENCE = hashlib.sha256(b"kyc").digest()


def key(name: str) -> KeyPair:
    """A deterministic key of one person of the market."""
    return KeyPair.from_seed(hashlib.sha256(b"state_restore/" + name.encode()).digest())


VALIDATOR, MERCHANT, MERCHANT2, BUYER, OTHER_BUYER, CARRIER, ARBITER = (
    key(name) for name in ("validator", "merchant", "merchant2", "buyer", "other_buyer", "carrier", "arbiter")
)


def make_genesis() -> Genesis:
    """One validator, everyone funded."""
    people = (VALIDATOR, MERCHANT, MERCHANT2, BUYER, OTHER_BUYER, CARRIER, ARBITER)
    accounts = tuple(GenesisAccount(address, 10_000_000) for address in sorted(p.address for p in people))
    genesis = Genesis(CHAIN_ID, GENESIS_TIME, (VALIDATOR.address,), accounts, Params())
    genesis.validate()
    return genesis


@dataclass
class MarketChain:
    """A store fed blocks of signed transactions; what was built, for the tests."""

    store: ChainStore
    genesis: Genesis
    nonces: dict[bytes, int] = field(default_factory=dict)
    results: list[BlockResult] = field(default_factory=list)
    """results[h - 1] built block h."""
    commits: list[Commit] = field(default_factory=list)
    """commits[h - 1] finalized block h."""
    ids: dict[str, bytes] = field(default_factory=dict)
    """Objects by a short name (the hash of the tx that created them)."""

    def tx(self, sender: KeyPair, tx_type: str, **payload: Any) -> Transaction:
        nonce = self.nonces.get(sender.address, 0)
        self.nonces[sender.address] = nonce + 1
        return sign_transaction(sender, CHAIN_ID, tx_type, payload, nonce, FEE)

    def ok(self, *txs: Transaction) -> BlockResult:
        """Build, seal and commit the next block of `txs`; every one must succeed."""
        tip = self.store.head()
        assert tip is not None
        last_commit = self.commits[-1] if self.commits else None
        result = build_block(
            self.store, tip, CHAIN_ID, self.genesis.params, VALIDATOR.address,
            tip.time + STEP_MS, list(txs), last_commit,
        )
        assert len(result.transactions) == len(txs), "a transaction was not includable"
        assert all(r.ok for r in result.receipts), [r.to_map() for r in result.receipts]
        commit = sign_commit([VALIDATOR], CHAIN_ID, result.block.header.height, 0, result.block.hash)
        self.store.commit_block(result, commit)
        self.results.append(result)
        self.commits.append(commit)
        return result

    def named(self, name: str, tx: Transaction) -> Transaction:
        self.ids[name] = tx.hash
        return tx

    def place(self, name: str, buyer: KeyPair, listing: str, quantity: int, **extra: Any) -> Transaction:
        payload = {"listing_id": self.ids[listing], "quantity": quantity, "max_unit_price": 10**9,
                   "shipping": b"sealed address of " + buyer.address[:4], **extra}
        return self.named(name, self.tx(buyer, "order_place", **payload))

    def on_order(self, sender: KeyPair, tx_type: str, order: str, **payload: Any) -> Transaction:
        return self.tx(sender, tx_type, order_id=self.ids[order], **payload)


def _open_market(chain: MarketChain) -> None:
    chain.ok(*[
        chain.tx(VALIDATOR, "role_grant", account=account.address, role=role, evidence_hash=EVIDENCE)
        for account, role in ((MERCHANT, "merchant"), (MERCHANT2, "merchant"), (CARRIER, "carrier"), (ARBITER, "arbiter"))
    ])
    chain.ok(
        chain.named("tea_house", chain.tx(MERCHANT, "shop_create", name="Tea House", points_bps=500,
                                          max_redeem_bps=2000, arbiters=[ARBITER.address],
                                          description="Teas of Yunnan")),
        chain.named("roastery", chain.tx(MERCHANT2, "shop_create", name="Roastery", points_bps=0, max_redeem_bps=0)),
        chain.tx(MERCHANT, "item_register", item_id="TEA-POT:001", description="Yixing clay teapot"),
        chain.tx(MERCHANT, "item_register", item_id="TEA-POT:002", description="Yixing clay teapot"),
    )
    shop, roastery = chain.ids["tea_house"], chain.ids["roastery"]
    listings = (
        ("tea", MERCHANT, {"shop_id": shop, "title": "Green Tea", "price": 2_000, "stock": 50,
                           "description": "Spring harvest from Yunnan", "tags": ["Tea", "organic"]}),
        ("pot", MERCHANT, {"shop_id": shop, "title": "Yixing Teapot", "price": 150_000, "stock": 2,
                           "item_ids": ["TEA-POT:001", "TEA-POT:002"], "tags": ["teaware"]}),
        ("cup", MERCHANT, {"shop_id": shop, "title": "Tea Cup", "price": 500, "stock": 100, "tags": ["teaware"]}),
        ("coffee", MERCHANT2, {"shop_id": roastery, "title": "Dark Roast Coffee", "price": 3_000, "stock": 40,
                               "tags": ["coffee", "Organic"]}),
        ("old_stock", MERCHANT2, {"shop_id": roastery, "title": "Old Stock", "price": 100, "stock": 1}),
    )
    chain.ok(*[chain.named(name, chain.tx(sender, "listing_create", **payload)) for name, sender, payload in listings])
    chain.ok(chain.tx(MERCHANT2, "listing_update", listing_id=chain.ids["old_stock"], active=False))


def _play_orders(chain: MarketChain) -> None:
    arbiter = {"arbiter": ARBITER.address}
    chain.ok(
        chain.place("tea_order", BUYER, "tea", 2, **arbiter),
        chain.place("pot_order", BUYER, "pot", 1, **arbiter),
        chain.place("waiting_order", OTHER_BUYER, "tea", 1, **arbiter),
        chain.place("coffee_order", OTHER_BUYER, "coffee", 1),
        chain.place("rejected_order", BUYER, "coffee", 2),
        chain.place("cancelled_order", OTHER_BUYER, "cup", 3, **arbiter),
    )
    chain.ok(
        *[chain.on_order(MERCHANT, "order_accept", name) for name in ("tea_order", "pot_order")],
        chain.on_order(MERCHANT2, "order_accept", "coffee_order"),
        chain.on_order(MERCHANT2, "order_reject", "rejected_order", reason="out of season"),
        chain.on_order(OTHER_BUYER, "order_cancel", "cancelled_order"),
    )
    chain.ok(*[chain.on_order(MERCHANT, "order_ship", name, carrier=CARRIER.address, tracking=f"SF{index}")
               for index, name in enumerate(("tea_order", "pot_order"))])
    chain.ok(*[chain.on_order(CARRIER, "shipment_update", name, status="delivered", location="door")
               for name in ("tea_order", "pot_order")])
    chain.ok(*[chain.on_order(BUYER, "order_confirm", name) for name in ("tea_order", "pot_order")])
    chain.ok(
        chain.named("tea_review", chain.on_order(BUYER, "review_submit", "tea_order", rating=5, text="fresh")),
        chain.named("pot_review", chain.on_order(BUYER, "review_submit", "pot_order", rating=4)),
    )
    chain.ok(chain.on_order(MERCHANT, "review_reply", "tea_order", text="thank you"))
    chain.ok(chain.place("points_order", BUYER, "cup", 1, redeem_points=100, **arbiter))


SNAPSHOT_HEIGHT = 12
"""The height of the market's snapshot: after `_open_market` and `_play_orders`."""


def play_later(chain: MarketChain) -> None:
    """Blocks after the snapshot that change restored objects and create new ones."""
    chain.ok(
        chain.on_order(MERCHANT, "order_accept", "waiting_order"),
        chain.on_order(MERCHANT2, "order_ship", "coffee_order", carrier=CARRIER.address, tracking="R1"),
        chain.tx(MERCHANT, "listing_update", listing_id=chain.ids["tea"], title="Black Tea", tags=["tea"], price=2_500),
        chain.tx(MERCHANT2, "shop_update", shop_id=chain.ids["roastery"], name="The Roastery"),
    )
    chain.ok(
        chain.on_order(MERCHANT, "review_reply", "pot_order", text="enjoy it"),
        chain.named("mug", chain.tx(MERCHANT, "listing_create", shop_id=chain.ids["tea_house"], title="Tea Mug",
                                    price=900, stock=5, tags=["teaware", "mug"])),
        chain.on_order(MERCHANT, "order_accept", "points_order"),
    )
    chain.ok(
        chain.place("mug_order", OTHER_BUYER, "mug", 1, arbiter=ARBITER.address),
        chain.on_order(CARRIER, "shipment_update", "coffee_order", status="delivered", location="porch"),
    )


def build_market(store: ChainStore) -> MarketChain:
    """The market up to SNAPSHOT_HEIGHT on `store` (initialized here)."""
    genesis = make_genesis()
    store.initialize(genesis)
    chain = MarketChain(store, genesis)
    _open_market(chain)
    _play_orders(chain)
    head = store.head()
    assert head is not None and head.height == SNAPSHOT_HEIGHT
    return chain


@dataclass(frozen=True)
class Snapshot:
    """A snapshot as the joiner has it once verified: manifest, chunk bytes, header, commit."""

    manifest: Manifest
    chunks: list[bytes]
    header: bytes
    commit: bytes

    def tree(self, index: int) -> ChunkTree:
        """Chunk `index` checked against the manifest, with its tree records (R39)."""
        return check_chunk_tree(self.manifest, index, self.chunks[index])

    def to_bytes(self) -> bytes:
        """Canonical bytes, to hand to another process."""
        return codec.encode({"chunks": self.chunks, "commit": self.commit, "header": self.header,
                             "manifest": self.manifest.encode()})


def snapshot_from(entries: Iterable[tuple[bytes, bytes]], header: Header, commit: Commit, depth: int) -> Snapshot:
    """The snapshot of the state `entries` after `header`'s block, split at `depth`."""
    entries = list(entries)
    manifest = make_manifest(entries, depth, header.height, header.state_root)
    chunks = [encode_chunk(chunk) for chunk in split_chunks(entries, depth)]
    return Snapshot(manifest, chunks, codec.encode(header.to_map()), commit.encode())


def snapshot_at(chain: MarketChain, depth: int) -> Snapshot:
    """The snapshot of the store's current state (its head's), split at `depth`."""
    head = chain.store.head()
    assert head is not None
    header = chain.results[head.height - 1].block.header
    return snapshot_from(chain.store.scan(b"\x00", b"\xff"), header, chain.commits[head.height - 1], depth)

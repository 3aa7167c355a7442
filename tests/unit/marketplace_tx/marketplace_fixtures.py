"""An in-memory marketchain for marketplace rule tests (PROTOCOL §4–§6).

A `Chain` holds a genesis with every actor of §1 (roles granted in the genesis
accounts), commits one block per `send`, and moves its clock forward by `step_ms`
each time; `advance(ms)` makes an empty block later so that deadlines (R15) fire.
Every block is built by `build_block`, re-validated by `apply_block` (signatures
included) and only then committed, so each test also checks that proposer and
validator agree.

A `Market` is a shop with one listing, and `Market.order_in(state)` drives a fresh
order along the canonical path into any state of the §5 machine.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from consensus.commit import sign_commit
from marketplace_tx.chain.block import Commit
from marketplace_tx.chain.genesis import Genesis, GenesisAccount
from marketplace_tx.chain.params import Params
from marketplace_tx.chain.receipts import Receipt
from marketplace_tx.chain.transaction import Transaction, sign_transaction
from marketplace_tx.primitives import codec
from marketplace_tx.primitives.crypto import KeyPair
from marketplace_tx.primitives.errors import AdmissionError
from marketplace_tx.rules.accounts import load_account
from marketplace_tx.rules.admission import check_stateless
from marketplace_tx.rules.context import BlockContext
from marketplace_tx.rules.execution import execute_transaction
from marketplace_tx.rules.items import Item, item_history, load_item
from marketplace_tx.rules.listings import Listing, load_listing
from marketplace_tx.rules.order_records import Order, load_order
from marketplace_tx.rules.points import points_balance
from marketplace_tx.rules.reputation import Reputation, merchant_reputation, shop_reputation
from marketplace_tx.rules.shops import Shop, load_shop
from marketplace_tx.rules.state import MemoryStateReader, State
from marketplace_tx.rules.state_keys import ACCOUNT, DEADLINE, ORDER
from marketplace_tx.rules.state_transition import (
    BlockResult,
    ChainTip,
    apply_block,
    build_block,
    genesis_changes,
)

CHAIN_ID = "marketchain-marketplace-test"
GENESIS_TIME = 1_700_000_000_000
STEP_MS = 1_000
FEE = 10
UINT64_MAX = 2**64 - 1


def key(name: str) -> KeyPair:
    """A deterministic test key."""
    return KeyPair.from_seed(hashlib.sha256(b"marketplace-fixtures/" + name.encode()).digest())


VALIDATOR = key("validator")
REGISTRAR = key("registrar")
MERCHANT = key("merchant")
MERCHANT_2 = key("merchant-2")
"""A merchant that also holds `carrier` and `arbiter` (to test the shop owner in those roles)."""
BUYER = key("buyer")
BUYER_2 = key("buyer-2")
"""A buyer that also holds `carrier` and `arbiter` (to test the buyer in those roles)."""
BUYER_3 = key("buyer-3")
CARRIER = key("carrier")
CARRIER_2 = key("carrier-2")
ARBITER = key("arbiter")
ARBITER_2 = key("arbiter-2")
PRODUCER = key("producer")
INSPECTOR = key("inspector")
OUTSIDER = key("outsider")
"""Funded, no roles."""

FUNDS = 10_000_000_000
"""µMKT of every genesis account (10,000 MKT)."""

ROLES: dict[KeyPair, tuple[str, ...]] = {
    VALIDATOR: (),
    REGISTRAR: ("registrar",),
    MERCHANT: ("merchant",),
    MERCHANT_2: ("arbiter", "carrier", "merchant"),
    BUYER: (),
    BUYER_2: ("arbiter", "carrier"),
    BUYER_3: (),
    CARRIER: ("carrier",),
    CARRIER_2: ("carrier",),
    ARBITER: ("arbiter",),
    ARBITER_2: ("arbiter",),
    PRODUCER: ("producer",),
    INSPECTOR: ("inspector",),
    OUTSIDER: (),
}
"""Every genesis account and its roles (sorted, as R33 wants)."""

NAMES = {
    who.address: name
    for who, name in (
        (VALIDATOR, "validator"), (REGISTRAR, "registrar"), (MERCHANT, "merchant"),
        (MERCHANT_2, "merchant_2"), (BUYER, "buyer"), (BUYER_2, "buyer_2"), (BUYER_3, "buyer_3"),
        (CARRIER, "carrier"), (CARRIER_2, "carrier_2"), (ARBITER, "arbiter"),
        (ARBITER_2, "arbiter_2"), (PRODUCER, "producer"), (INSPECTOR, "inspector"),
        (OUTSIDER, "outsider"),
    )
}  # fmt: skip
"""Readable names for assertion messages."""


def address_of(who: KeyPair | bytes) -> bytes:
    """The address of a key, or the address itself."""
    return who.address if isinstance(who, KeyPair) else who


def make_genesis(params: Params | None = None, funds: int = FUNDS) -> Genesis:
    """The test genesis: `VALIDATOR` proposes every block; every actor is funded."""
    accounts = tuple(
        sorted(
            (GenesisAccount(who.address, funds, roles) for who, roles in ROLES.items()),
            key=lambda account: account.address,
        )
    )
    return Genesis(CHAIN_ID, GENESIS_TIME, (VALIDATOR.address,), accounts, params or Params())


class Chain:
    """A single-validator chain in memory: one block per `send`, deadlines by `advance`."""

    def __init__(
        self, params: Params | None = None, step_ms: int = STEP_MS, verify: bool = True
    ) -> None:
        self.genesis = make_genesis(params)
        """The genesis this chain started from."""
        self.params = self.genesis.params
        """The chain's parameters."""
        self.step_ms = step_ms
        """How far the clock moves for each `send`."""
        self.verify = verify
        """Whether `apply_block` re-checks transaction signatures."""
        tip, changes = genesis_changes(self.genesis)
        self.base = MemoryStateReader(changes)
        """The committed state."""
        self.tip: ChainTip = tip
        """The last committed block (genesis at height 0)."""
        self.last_commit: Commit | None = None
        """The commit of the tip, carried by the next block."""
        self.last_block: BlockResult | None = None
        """What the last committed block produced."""
        self.last_tx_hash: bytes | None = None
        """The id of the last transaction sent: the id of what it created (R9)."""

    # ------------------------------------------------------------------ blocks

    @property
    def time(self) -> int:
        """The tip's block time."""
        return self.tip.time

    @property
    def height(self) -> int:
        """The tip's height."""
        return self.tip.height

    def fork(self) -> Chain:
        """An independent copy of this chain (state, tip and clock)."""
        other = Chain.__new__(Chain)
        other.__dict__.update(self.__dict__)
        other.base = MemoryStateReader(self.base.values)
        return other

    def sign(
        self,
        who: KeyPair,
        tx_type: str,
        payload: dict[str, Any],
        nonce: int | None = None,
        fee: int = FEE,
    ) -> Transaction:
        """A transaction of `who` with its next committed nonce (unless given)."""
        if nonce is None:
            nonce = self.nonce(who)
        return sign_transaction(who, CHAIN_ID, tx_type, payload, nonce, fee)

    def preview(self, txs: Sequence[Transaction], time: int) -> BlockResult:
        """The block `txs` would make at `time`, without committing it."""
        return build_block(
            self.base,
            self.tip,
            CHAIN_ID,
            self.params,
            VALIDATOR.address,
            time,
            txs,
            self.last_commit,
        )

    def block(self, txs: Sequence[Transaction], time: int | None = None) -> BlockResult:
        """Build a block of `txs` at `time` (default: one step later), re-validate it with
        `apply_block`, and commit it. Every tx must be includable."""
        time = self.time + self.step_ms if time is None else time
        built = self.preview(txs, time)
        assert len(built.transactions) == len(txs), "a transaction could not be included"
        known = (lambda tx_hash: False) if self.verify else (lambda tx_hash: True)
        applied = apply_block(self.base, self.tip, CHAIN_ID, self.params, built.block, known)
        assert applied.changes == built.changes
        assert applied.receipts == built.receipts
        assert applied.block_events == built.block_events
        self.base.apply(applied.changes, applied.tree)
        header = built.block.header
        self.tip = ChainTip(header.height, header.hash, header.time, header.state_root)
        self.last_commit = sign_commit([VALIDATOR], CHAIN_ID, header.height, 0, header.hash)
        self.last_block = applied
        return applied

    def send(
        self,
        who: KeyPair,
        tx_type: str,
        payload: dict[str, Any],
        fee: int = FEE,
        time: int | None = None,
    ) -> Receipt:
        """Sign `payload` as `who`, commit it alone in a block, and return its receipt."""
        tx = self.sign(who, tx_type, payload, fee=fee)
        self.last_tx_hash = tx.hash
        return self.block([tx], time).receipts[0]

    def must(self, who: KeyPair, tx_type: str, payload: dict[str, Any]) -> bytes:
        """`send` that must succeed; returns the tx hash (the id of what it created)."""
        receipt = self.send(who, tx_type, payload)
        assert receipt.ok, (
            f"{tx_type} by {NAMES.get(who.address)} failed: {receipt.code}: {receipt.message}"
        )
        assert self.last_tx_hash is not None
        return self.last_tx_hash

    def advance(self, ms: int) -> BlockResult:
        """An empty block `ms` after the tip: deadlines due by then fire (R15)."""
        return self.block([], self.time + ms)

    def advance_to(self, time: int) -> BlockResult:
        """An empty block at exactly `time`."""
        return self.block([], time)

    def admit(
        self, who: KeyPair, tx_type: str, payload: dict[str, Any], fee: int = FEE
    ) -> str | None:
        """The admission code of the stateless checks (R10) for this tx, or None if admitted."""
        try:
            check_stateless(self.sign(who, tx_type, payload, fee=fee).raw, CHAIN_ID, self.params)
        except AdmissionError as error:
            return error.code
        return None

    def execute(self, who: KeyPair, tx_type: str, payload: dict[str, Any]) -> Receipt:
        """The receipt this tx would get as the next block's first transaction, skipping the
        block's stateless admission (so schema failures show as receipts) and deadlines."""
        context = BlockContext(
            CHAIN_ID, self.height + 1, self.time + self.step_ms, VALIDATOR.address, self.params
        )
        return execute_transaction(self.state(), context, self.sign(who, tx_type, payload), 0)

    # ------------------------------------------------------------------ readers

    def state(self) -> State:
        """A read view of the committed state."""
        return State(self.base)

    def balance(self, who: KeyPair | bytes) -> int:
        """µMKT of an account."""
        return load_account(self.state(), address_of(who)).balance

    def nonce(self, who: KeyPair | bytes) -> int:
        """The next nonce of an account."""
        return load_account(self.state(), address_of(who)).nonce

    def order(self, order_id: bytes) -> Order:
        """An order that must exist."""
        order = load_order(self.state(), order_id)
        assert order is not None
        return order

    def listing(self, listing_id: bytes) -> Listing:
        """A listing that must exist."""
        listing = load_listing(self.state(), listing_id)
        assert listing is not None
        return listing

    def shop(self, shop_id: bytes) -> Shop:
        """A shop that must exist."""
        shop = load_shop(self.state(), shop_id)
        assert shop is not None
        return shop

    def item(self, item_id: str) -> Item:
        """An item that must exist."""
        item = load_item(self.state(), item_id)
        assert item is not None
        return item

    def item_history(self, item_id: str) -> list[dict[str, Any]]:
        """An item's history, oldest first."""
        return item_history(self.state(), item_id)

    def points(self, shop_id: bytes, who: KeyPair | bytes) -> int:
        """Points of an account at a shop (R21)."""
        return points_balance(self.state(), shop_id, address_of(who))

    def shop_reputation(self, shop_id: bytes) -> Reputation:
        """A shop's reputation (R20)."""
        return shop_reputation(self.state(), shop_id)

    def merchant_reputation(self, who: KeyPair | bytes) -> Reputation:
        """A merchant address's reputation (R20)."""
        return merchant_reputation(self.state(), address_of(who))

    def total_money(self) -> int:
        """Every balance plus every order's escrow (R17)."""
        total = 0
        for state_key, value in self.base.values.items():
            if state_key[:1] == ACCOUNT:
                total += codec.decode(value)["balance"]
            elif state_key[:1] == ORDER:
                total += codec.decode(value)["escrow"]
        return total

    def schedule(self) -> list[tuple[int, bytes]]:
        """The R15 schedule: (deadline, order_id) of every entry, in firing order."""
        return sorted(
            (int.from_bytes(state_key[1:9], "big"), state_key[9:])
            for state_key in self.base.values
            if state_key[:1] == DEADLINE
        )


def assert_fails(receipt: Receipt, code: str, field: str) -> None:
    """The receipt failed with `code` and its message names `field` (e.g. `payload.amount`)."""
    assert not receipt.ok, "the transaction succeeded"
    assert (receipt.code, field in receipt.message) == (code, True), (
        f"{receipt.code}: {receipt.message}"
    )


# ---------------------------------------------------------------------- a shop with a listing

ORDER_PATHS: dict[str, tuple[str, ...]] = {
    "placed": (),
    "accepted": ("accept",),
    "shipped": ("accept", "ship"),
    "delivered": ("accept", "ship", "deliver"),
    "return_requested": ("accept", "ship", "deliver", "return"),
    "disputed": ("accept", "ship", "deliver", "return", "dispute"),
    "completed": ("accept", "ship", "deliver", "confirm"),
    "cancelled": ("cancel",),
    "rejected": ("reject",),
    "expired": ("expire",),
    "refunded": ("accept", "ship", "refund"),
    "resolved": ("accept", "ship", "deliver", "dispute", "resolve"),
}
"""The canonical way into every state of §5 (after `order_place`)."""

SEALED_CONTENT = bytes(range(48)) * 2
"""An `order_deliver.content` (R41): opaque bytes of a sealed box's shape (nodes never open it)."""

NON_TERMINAL_STATES = ("placed", "accepted", "shipped", "delivered", "return_requested", "disputed")
TERMINAL_STATES = ("completed", "cancelled", "rejected", "expired", "refunded", "resolved")
ALL_STATES = NON_TERMINAL_STATES + TERMINAL_STATES


@dataclass
class Market:
    """A merchant's shop with one listing on a chain; places and drives orders."""

    chain: Chain
    """The chain it lives on."""
    shop_id: bytes
    """The shop."""
    listing_id: bytes
    """Its listing."""
    merchant: KeyPair = MERCHANT
    """The shop's owner."""
    arbiter: KeyPair | None = ARBITER
    """The arbiter orders name (None: the shop lists none)."""
    carrier: KeyPair = CARRIER
    """The carrier orders are shipped with."""

    def place(self, buyer: KeyPair = BUYER, quantity: int = 1, **payload: Any) -> bytes:
        """Place an order that must succeed; returns the order id."""
        return self.chain.must(buyer, "order_place", self.place_payload(quantity, **payload))

    def place_payload(self, quantity: int = 1, **payload: Any) -> dict[str, Any]:
        """A valid `order_place` payload for this listing (fields may be overridden)."""
        base: dict[str, Any] = {
            "listing_id": self.listing_id,
            "quantity": quantity,
            "max_unit_price": self.chain.listing(self.listing_id).price,
            "shipping": b"sealed-address",
        }
        if self.arbiter is not None:
            base["arbiter"] = self.arbiter.address
        base.update(payload)
        return {name: value for name, value in base.items() if value is not None}

    def step(self, order_id: bytes, action: str) -> None:
        """Take one step of `ORDER_PATHS` on an order (the step must succeed)."""
        chain, order = self.chain, self.chain.order(order_id)
        if action == "expire":
            assert order.deadline is not None
            chain.advance_to(order.deadline)
            return
        who, tx_type, payload = {
            "accept": (self.merchant, "order_accept", {}),
            "reject": (self.merchant, "order_reject", {"reason": "sold out"}),
            "cancel": (None, "order_cancel", {}),
            "ship": (
                self.merchant,
                "order_ship",
                {"carrier": self.carrier.address, "tracking": "TRK-1"},
            ),
            "deliver": (
                self.carrier,
                "shipment_update",
                {"status": "delivered", "location": "door"},
            ),
            "deliver_digital": (self.merchant, "order_deliver", {"content": SEALED_CONTENT}),
            "confirm": (None, "order_confirm", {}),
            "return": (None, "return_request", {"reason": "broken"}),
            "refund": (self.merchant, "order_refund", {"amount": order.escrow}),
            "dispute": (None, "dispute_open", {"reason": "no refund"}),
            "resolve": (
                self.arbiter,
                "dispute_resolve",
                {"buyer_amount": 0, "ruling": "merchant wins"},
            ),
        }[action]
        sender = who if who is not None else _key_of(order.buyer)
        chain.must(sender, tx_type, {"order_id": order_id, **payload})

    def drive(self, order_id: bytes, actions: Iterable[str]) -> bytes:
        """Take several steps; returns the order id."""
        for action in actions:
            self.step(order_id, action)
        return order_id

    def order_in(
        self, state: str, buyer: KeyPair = BUYER, quantity: int = 1, **payload: Any
    ) -> bytes:
        """A new order driven into `state` along `ORDER_PATHS`."""
        order_id = self.drive(self.place(buyer, quantity, **payload), ORDER_PATHS[state])
        assert self.chain.order(order_id).state == state
        return order_id

    def fork(self) -> Market:
        """The same market on a forked chain."""
        return replace(self, chain=self.chain.fork())


def _key_of(address: bytes) -> KeyPair:
    for who in ROLES:
        if who.address == address:
            return who
    raise KeyError(address.hex())


def open_shop(
    chain: Chain,
    merchant: KeyPair = MERCHANT,
    arbiters: Sequence[KeyPair] = (ARBITER,),
    points_bps: int = 100,
    max_redeem_bps: int = 5000,
    **extra: Any,
) -> bytes:
    """Open a shop that must succeed; returns the shop id."""
    payload: dict[str, Any] = {
        "name": "Tea House",
        "points_bps": points_bps,
        "max_redeem_bps": max_redeem_bps,
    }
    if arbiters:
        payload["arbiters"] = [arbiter.address for arbiter in arbiters]
    payload.update(extra)
    return chain.must(merchant, "shop_create", payload)


def list_goods(
    chain: Chain,
    shop_id: bytes,
    merchant: KeyPair = MERCHANT,
    price: int = 1_000_000,
    stock: int = 10,
    item_ids: Sequence[str] = (),
    **extra: Any,
) -> bytes:
    """Create a listing that must succeed; returns the listing id."""
    payload: dict[str, Any] = {
        "shop_id": shop_id,
        "title": "Oolong",
        "price": price,
        "stock": stock,
        **extra,
    }
    if item_ids:
        payload["item_ids"] = list(item_ids)
    return chain.must(merchant, "listing_create", payload)


def register_items(chain: Chain, owner: KeyPair, *item_ids: str) -> None:
    """Register items owned and held by `owner`."""
    for item_id in item_ids:
        chain.must(owner, "item_register", {"item_id": item_id, "description": f"item {item_id}"})


def new_market(
    chain: Chain | None = None,
    merchant: KeyPair = MERCHANT,
    with_arbiter: bool = True,
    price: int = 1_000_000,
    stock: int = 10,
    points_bps: int = 100,
    max_redeem_bps: int = 5000,
    item_ids: Sequence[str] = (),
    digital: bool = False,
) -> Market:
    """A chain (new unless given) with one open shop and one listing (of digital goods, R41,
    if `digital`)."""
    chain = chain or Chain()
    arbiters = (ARBITER,) if with_arbiter else ()
    shop_id = open_shop(chain, merchant, arbiters, points_bps, max_redeem_bps)
    if item_ids:
        register_items(chain, merchant, *item_ids)
    extra = {"digital": True} if digital else {}
    listing_id = list_goods(chain, shop_id, merchant, price, len(item_ids) or stock, item_ids, **extra)
    return Market(chain, shop_id, listing_id, merchant, ARBITER if with_arbiter else None)

"""Secondary indexes of the marketplace read model (PROTOCOL §10), derived from each block.

Nothing here is consensus: the indexes are the node's own, rebuilt from the same
blocks by every node, and written by `ChainStore.commit_block` in the **same atomic
batch** as the block (docs/storage.md has the key table). They are derived from

- the block's **net state changes** (`BlockResult.changes`) together with the values
  those keys held before the block (read from the committed state, before the batch
  is written): when a shop, listing or order record changes, the index entries of its
  old value are removed and those of its new value added. Changes made by deadlines
  (R15), which have no transaction, are caught the same way;
- the block's transactions and receipts, for the account → transactions index.

Every index key ends with a 12-byte **position**: height(8) ‖ index(4) of the
transaction that created the object (its id is that transaction's hash, R9), or of
the transaction itself for account histories. Positions order entries by creation
and make the opaque paging cursors of the API. Objects restored by state sync have no
transaction here: `restored_index_writes` gives them height ‖ (chunk << 16 | ordinal).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from marketplace_tx.primitives import codec
from marketplace_tx.rules.listings import Listing
from marketplace_tx.rules.order_records import Order
from marketplace_tx.rules.records import record_from_map
from marketplace_tx.rules.shops import Shop
from marketplace_tx.rules.state_keys import LISTING, ORDER, SHOP, order_key
from marketplace_tx.rules.state_transition import BlockResult

ACCOUNT_TXS = b"A"
"""A ‖ address(32) ‖ position → canonical {code?, hash, ok, sender, type}: txs the account takes part in."""
SHOPS = b"H"
"""H ‖ position → shop_id: every shop in creation order."""
SHOPS_BY_OWNER = b"O"
"""O ‖ owner(32) ‖ position → shop_id."""
LISTINGS = b"G"
"""G ‖ position → listing entry: every listing."""
LISTINGS_BY_SHOP = b"L"
"""L ‖ shop_id(32) ‖ position → listing entry."""
LISTINGS_BY_TAG = b"Y"
"""Y ‖ length(1) ‖ lowercased tag ‖ position → listing entry."""
LISTINGS_BY_WORD = b"W"
"""W ‖ length(1) ‖ word ‖ position → listing entry (words of title, description, tags)."""
ORDERS = b"F"
"""F ‖ position → order entry: every order."""
ORDERS_BY_BUYER = b"U"
"""U ‖ buyer(32) ‖ position → order entry."""
ORDERS_BY_MERCHANT = b"N"
"""N ‖ merchant(32) ‖ position → order entry."""
ORDERS_BY_SHOP = b"Q"
"""Q ‖ shop_id(32) ‖ position → order entry."""
ORDERS_BY_STATE = b"X"
"""X ‖ length(1) ‖ state ‖ position → order entry."""
REVIEWS_BY_SHOP = b"V"
"""V ‖ shop_id(32) ‖ position of the review_submit tx → order_id(32)."""
OBJECT_POSITIONS = b"I"
"""I ‖ object id (the hash of the tx that created a shop, listing or order, or of a
review_submit) → its position(12). Kept as long as the object is (never pruned, R40), so
that its index entries are found again when it changes after its block was pruned, or on
a node that joined by state sync and never had that block (node/state_restore.py)."""

POSITION_BYTES = 12
"""height(8, big-endian) ‖ index(4, big-endian)."""
SCAN_BUDGET = 2000
"""Most index entries one read request looks at (`scan_page`)."""
UNKNOWN_INDEX = 0xFFFFFFFF
"""Index used for a creating transaction that cannot be located (never expected)."""

WORD_PATTERN = re.compile(r"\w+")
MAX_WORD_CHARS = 32
"""Words are cut to this many characters in index keys; queries match whole words."""

ADDRESS_FIELDS = frozenset(
    {"to", "from", "account", "carrier", "arbiter", "arbiters", "validator", "buyer", "merchant", "owner", "by"}
)
"""Payload and event fields whose 32-byte values name accounts taking part in a tx."""


class TxLocator(Protocol):
    """Where a committed transaction is (storage's `TxLocation`)."""

    height: int
    index: int


class IndexSource(Protocol):
    """The committed database before the block: state and the transaction index."""

    def get(self, key: bytes) -> bytes | None:
        """The committed state value under `key`."""
        ...

    def tx_location(self, tx_hash: bytes) -> TxLocator | None:
        """Where a committed transaction is."""
        ...

    def object_position(self, object_id: bytes) -> bytes | None:
        """The position recorded for an object (`OBJECT_POSITIONS`), or None."""
        ...


class IndexReader(Protocol):
    """Raw index reads of one database snapshot (storage's `ReadView`)."""

    def entries(
        self, start: bytes, stop: bytes, reverse: bool = False, include_start: bool = True
    ) -> Iterator[tuple[bytes, bytes]]:
        """Index pairs with start ≤ key < stop."""
        ...


T = TypeVar("T")


@dataclass(frozen=True)
class IndexWrites:
    """What one block adds to and removes from the indexes."""

    puts: dict[bytes, bytes]
    """Index keys to write (new or with a new value)."""
    deletes: list[bytes]
    """Index keys to remove."""


# --- values ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ListingEntry:
    """What a listing index entry says, enough to filter without reading the record."""

    listing_id: bytes
    shop_id: bytes
    price: int
    active: bool


def encode_listing_entry(listing_id: bytes, listing: Listing) -> bytes:
    """listing_id(32) ‖ shop_id(32) ‖ price(8) ‖ active(1)."""
    return listing_id + listing.shop_id + struct.pack(">Q?", listing.price, listing.active)


def decode_listing_entry(value: bytes) -> ListingEntry:
    """Inverse of `encode_listing_entry`."""
    price, active = struct.unpack(">Q?", value[64:73])
    return ListingEntry(value[:32], value[32:64], price, active)


@dataclass(frozen=True)
class OrderEntry:
    """What an order index entry says, enough to filter without reading the record."""

    order_id: bytes
    buyer: bytes
    merchant: bytes
    shop_id: bytes
    state: str


def encode_order_entry(order_id: bytes, order: Order) -> bytes:
    """order_id(32) ‖ buyer(32) ‖ merchant(32) ‖ shop_id(32) ‖ state (UTF-8)."""
    return order_id + order.buyer + order.merchant + order.shop_id + order.state.encode("utf-8")


def decode_order_entry(value: bytes) -> OrderEntry:
    """Inverse of `encode_order_entry`."""
    return OrderEntry(value[:32], value[32:64], value[64:96], value[96:128], value[128:].decode("utf-8"))


def encode_position(height: int, index: int) -> bytes:
    """The 12-byte position of a transaction."""
    return struct.pack(">QI", height, index)


def decode_position(position: bytes) -> tuple[int, int]:
    """(height, index) of a position."""
    height, index = struct.unpack(">QI", position)
    return height, index


# --- key prefixes (every index key is prefix ‖ position) ------------------------------


def _text_part(text: str) -> bytes:
    raw = text.encode("utf-8")
    return bytes([len(raw)]) + raw


def words(text: str) -> list[str]:
    """The lowercase words of `text` (runs of letters, digits and `_`)."""
    return WORD_PATTERN.findall(text.lower())


def listing_words(listing: Listing) -> set[str]:
    """Every word of a listing's title, description and tags."""
    found = set(words(listing.title))
    found.update(words(listing.description or ""))
    for tag in listing.tags:
        found.update(words(tag))
    return found


def word_prefix(word: str) -> bytes:
    """The prefix of the listings holding `word`."""
    return LISTINGS_BY_WORD + _text_part(word[:MAX_WORD_CHARS])


def tag_prefix(tag: str) -> bytes:
    """The prefix of the listings tagged `tag` (case-insensitive)."""
    return LISTINGS_BY_TAG + _text_part(tag.lower())


def state_prefix(state: str) -> bytes:
    """The prefix of the orders in `state`."""
    return ORDERS_BY_STATE + _text_part(state)


# --- deriving the entries of one record -------------------------------------------------


class PositionSource(Protocol):
    """Where the positions of objects' creating transactions come from."""

    def of(self, tx_hash: bytes, height_hint: int = 0) -> bytes:
        """The 12-byte position of the object (or review) created by `tx_hash`."""
        ...


class _Positions:
    """Positions of creating transactions: this block's, else the recorded object
    positions, else the committed tx index."""

    def __init__(self, source: IndexSource, result: BlockResult) -> None:
        self.source = source
        height = result.block.header.height
        self.in_block = {tx.hash: encode_position(height, index) for index, tx in enumerate(result.transactions)}
        self.created: dict[bytes, bytes] = {}
        """Objects whose creating tx is in this block: id → position, to record (`OBJECT_POSITIONS`)."""

    def of(self, tx_hash: bytes, height_hint: int = 0) -> bytes:
        position = self.in_block.get(tx_hash)
        if position is not None:
            self.created[tx_hash] = position
            return position
        recorded = self.source.object_position(tx_hash)
        if recorded is not None:
            return recorded
        location = self.source.tx_location(tx_hash)
        if location is None:
            return encode_position(height_hint, UNKNOWN_INDEX)
        return encode_position(location.height, location.index)


def _shop_entries(shop_id: bytes, shop: Shop, positions: PositionSource) -> dict[bytes, bytes]:
    position = positions.of(shop_id, shop.height)
    return {SHOPS + position: shop_id, SHOPS_BY_OWNER + shop.owner + position: shop_id}


def _listing_entries(listing_id: bytes, listing: Listing, positions: PositionSource) -> dict[bytes, bytes]:
    position = positions.of(listing_id, listing.height)
    value = encode_listing_entry(listing_id, listing)
    entries = {LISTINGS + position: value, LISTINGS_BY_SHOP + listing.shop_id + position: value}
    for tag in listing.tags:
        entries[tag_prefix(tag) + position] = value
    for word in listing_words(listing):
        entries[word_prefix(word) + position] = value
    return entries


def _order_entries(order_id: bytes, order: Order, positions: PositionSource) -> dict[bytes, bytes]:
    position = positions.of(order_id, order.history[0]["height"] if order.history else 0)
    value = encode_order_entry(order_id, order)
    entries = {
        ORDERS + position: value,
        ORDERS_BY_BUYER + order.buyer + position: value,
        ORDERS_BY_MERCHANT + order.merchant + position: value,
        ORDERS_BY_SHOP + order.shop_id + position: value,
        state_prefix(order.state) + position: value,
    }
    if order.review is not None:
        review_position = positions.of(order.review["tx"], order.review["height"])
        entries[REVIEWS_BY_SHOP + order.shop_id + review_position] = order_id
    return entries


_RECORD_TYPES: dict[bytes, Any] = {SHOP: Shop, LISTING: Listing, ORDER: Order}
_ENTRY_FUNCTIONS = {SHOP: _shop_entries, LISTING: _listing_entries, ORDER: _order_entries}


def _record_entries(family: bytes, object_id: bytes, raw: bytes | None, positions: PositionSource) -> dict[bytes, bytes]:
    if raw is None:
        return {}
    record = record_from_map(_RECORD_TYPES[family], codec.decode(raw))
    return _ENTRY_FUNCTIONS[family](object_id, record, positions)


# --- account histories --------------------------------------------------------------------


def _addresses_in(value: dict[str, Any]) -> set[bytes]:
    found: set[bytes] = set()
    for name, item in value.items():
        if name not in ADDRESS_FIELDS:
            continue
        for candidate in item if isinstance(item, list | tuple) else (item,):
            if isinstance(candidate, bytes) and len(candidate) == 32:
                found.add(candidate)
    return found


def participants(tx: Any, receipt: Any, order: Order | None) -> set[bytes]:
    """Accounts taking part in a transaction: its sender, the addresses its payload and
    receipt events name, and the buyer and merchant of the order it acts on."""
    found = {tx.sender} | _addresses_in(tx.payload)
    for event in receipt.events:
        found |= _addresses_in(event)
    if order is not None:
        found |= {order.buyer, order.merchant}
    return found


def _order_after_block(source: IndexSource, result: BlockResult, order_id: Any) -> Order | None:
    if not isinstance(order_id, bytes):
        return None
    key = order_key(order_id)
    raw = result.changes[key] if key in result.changes else source.get(key)
    return None if raw is None else record_from_map(Order, codec.decode(raw))


def account_tx_value(tx: Any, receipt: Any) -> bytes:
    """The value of an account history entry."""
    value: dict[str, Any] = {"hash": tx.hash, "ok": receipt.ok, "sender": tx.sender, "type": tx.type}
    if receipt.code is not None:
        value["code"] = receipt.code
    return codec.encode(value)


def account_history_keys(tx: Any, receipt: Any, order: Order | None, height: int, index: int) -> list[bytes]:
    """The account-history keys (`ACCOUNT_TXS`) the transaction at (`height`, `index`) writes:
    one per participant. node/pruning.py deletes the same keys when the block is pruned (R40)."""
    position = encode_position(height, index)
    return [ACCOUNT_TXS + address + position for address in participants(tx, receipt, order)]


def _account_entries(source: IndexSource, result: BlockResult) -> dict[bytes, bytes]:
    entries: dict[bytes, bytes] = {}
    height = result.block.header.height
    for index, (tx, receipt) in enumerate(zip(result.transactions, result.receipts, strict=True)):
        order = _order_after_block(source, result, tx.payload.get("order_id"))
        value = account_tx_value(tx, receipt)
        for key in account_history_keys(tx, receipt, order, height, index):
            entries[key] = value
    return entries


# --- one block -----------------------------------------------------------------------------


def _indexed_changes(changes: dict[bytes, bytes | None]) -> Iterable[tuple[bytes, bytes, bytes | None]]:
    for key, value in changes.items():
        family = key[:1]
        if family in _RECORD_TYPES and len(key) == 33 and (value is None or isinstance(value, bytes)):
            yield family, key, value


def block_index_writes(source: IndexSource, result: BlockResult) -> IndexWrites:
    """The index writes of one block; `source` must still hold the state before it."""
    positions = _Positions(source, result)
    old: dict[bytes, bytes] = {}
    new: dict[bytes, bytes] = {}
    for family, key, value in _indexed_changes(result.changes):
        object_id = key[1:]
        old.update(_record_entries(family, object_id, source.get(key), positions))
        new.update(_record_entries(family, object_id, value, positions))
    new.update(_account_entries(source, result))
    for object_id, position in positions.created.items():
        new[OBJECT_POSITIONS + object_id] = position
    puts = {key: value for key, value in new.items() if old.get(key) != value}
    deletes = sorted(key for key in old if key not in new)
    return IndexWrites(puts, deletes)


# --- records restored by state sync ---------------------------------------------------------


MAX_RESTORED_ORDINAL = 0xFFFF
"""A restored chunk's objects are numbered 0 … 65,535 in their positions' low 16 bits."""


class _RestoredPositions:
    """Positions of the objects of one restored chunk (node/state_restore.py, R39): the
    creating block's transactions are not there, so the position is the object's creation
    height from its record ‖ (chunk index << 16 | ordinal), the ordinal counting the chunk's
    shops, listings, orders and reviews in key order. Unique (chunks differ in the high
    16 bits, objects of a chunk in the low 16) and below every later block's positions;
    objects created in one block may list in another order than on a node that executed it."""

    def __init__(self, chunk_index: int) -> None:
        self.base = chunk_index << 16
        self.created: dict[bytes, bytes] = {}
        """Every object numbered so far: id → position, to record (`OBJECT_POSITIONS`)."""

    def of(self, tx_hash: bytes, height_hint: int = 0) -> bytes:
        position = self.created.get(tx_hash)
        if position is None:
            if len(self.created) > MAX_RESTORED_ORDINAL:
                raise ValueError(
                    f"a restored chunk holds over {MAX_RESTORED_ORDINAL + 1} shops, listings, orders and reviews"
                )
            position = encode_position(height_hint, self.base | len(self.created))
            self.created[tx_hash] = position
        return position


def restored_index_writes(chunk_index: int, entries: Iterable[tuple[bytes, bytes]]) -> IndexWrites:
    """The read-index entries and object positions (`OBJECT_POSITIONS`) of the shops,
    listings and orders (and their reviews) among a restored chunk's state `entries`, in
    key order, positioned by `_RestoredPositions`. Account histories (`A`) are not restored:
    the transactions are not in a snapshot. ValueError if the chunk holds over 65,536 objects."""
    positions = _RestoredPositions(chunk_index)
    puts: dict[bytes, bytes] = {}
    for key, value in entries:
        family = key[:1]
        if family in _RECORD_TYPES and len(key) == 33:
            puts.update(_record_entries(family, key[1:], value, positions))
    for object_id, position in positions.created.items():
        puts[OBJECT_POSITIONS + object_id] = position
    return IndexWrites(puts, [])


# --- reading an index --------------------------------------------------------------------


def index_entries(
    view: IndexReader, prefix: bytes, cursor: bytes | None, newest_first: bool
) -> Iterator[tuple[bytes, bytes]]:
    """Entries under `prefix` strictly after the position `cursor`, in the given order."""
    stop = prefix + b"\xff" * (POSITION_BYTES + 1)
    if newest_first:
        return view.entries(prefix, prefix + cursor if cursor else stop, reverse=True)
    if cursor is None:
        return view.entries(prefix, stop)
    return view.entries(prefix + cursor, stop, include_start=False)


def scan_page(
    view: IndexReader,
    prefix: bytes,
    cursor: bytes | None,
    limit: int,
    accept: Callable[[bytes, bytes], T | None],
    newest_first: bool = True,
) -> tuple[list[T], str | None]:
    """Up to `limit` items of one index after `cursor`, and the next cursor.

    `accept(value, position)` turns an entry into an item, or None to skip it.
    """
    items: list[T] = []
    entries = index_entries(view, prefix, cursor, newest_first)
    for scanned, (key, value) in enumerate(entries, start=1):
        position = key[-POSITION_BYTES:]
        item = accept(value, position)
        if item is not None:
            items.append(item)
        if len(items) == limit or scanned >= SCAN_BUDGET:
            more = next(entries, None) is not None
            return items, position.hex() if more else None
    return items, None


@dataclass(frozen=True)
class ListingCounts:
    """A shop's listing counts, read under the scan budget."""

    listings: int
    """Listings counted."""
    active: int
    """Of which active."""
    complete: bool
    """False when the budget ran out first: the counts are lower bounds."""
    scanned: int
    """Index entries looked at."""


def count_listings(view: IndexReader, shop_id: bytes, budget: int = SCAN_BUDGET) -> ListingCounts:
    """Count a shop's listings (and the active ones), looking at no more than `budget` entries."""
    listings = active = 0
    for _, value in index_entries(view, LISTINGS_BY_SHOP + shop_id, None, False):
        if listings >= budget:
            return ListingCounts(listings, active, False, listings)
        listings += 1
        active += decode_listing_entry(value).active
    return ListingCounts(listings, active, True, listings)

"""Digital goods between a merchant and a buyer (PROTOCOL R41), checked against what the
parties signed rather than taken from a node's word.

A sealed box is anonymous: anyone can seal one to the buyer, and a box sealed to the
wrong key is lost. So `seal_delivery` seals to the buyer proven by the buyer-signed, final
`order_place` (the check `tx order-ship` makes, issue 13): a node that names another
buyer cannot get the goods sealed to a key of its own. And `open_delivery` opens only
the box of the final `order_deliver` transaction the order's merchant signed for this
order: a node cannot slip in goods of its own (a fake gift code) or swap the box.

Without a genesis file the commit signatures are checked against the validator set the
node names, as `verify tx` does without `--genesis` (docs/light-client.md). With one,
`open_delivery` reads the box from the order's state record itself, proven (R36) against a
header verified from the genesis (R37): what the chain holds, whoever serves it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from client.node_client import NodeClient
from client.sealing import SealError, open_sealed, seal_content
from client.state_verification import StateVerificationFailed, verify_order
from client.verification import VerificationFailed, verify_order_placement, verify_transaction
from marketplace_tx.chain.genesis import Genesis
from marketplace_tx.chain.transaction import Transaction, decode_transaction
from marketplace_tx.primitives.crypto import KeyPair
from marketplace_tx.primitives.errors import AdmissionError


class DeliveryError(Exception):
    """A delivery that cannot be opened: not a digital order, not the buyer's key, nothing
    delivered yet, or a box the buyer's key does not open."""


def seal_delivery(client: NodeClient, order_id: bytes, content: bytes,
                  order: Mapping[str, Any] | None = None, genesis: Genesis | None = None) -> bytes:
    """`content` sealed to the buyer of `order_id` as proven by the buyer's final `order_place`.

    Raises `SealError` (empty or too long content, R41), `VerificationFailed` (the node's
    answer does not match what the buyer signed) or `ClientError` (the node).
    """
    if not content:
        raise SealError("the content is empty: there is nothing to deliver")
    order = order if order is not None else client.order(order_id)
    placement = verify_order_placement(client, order_id, order, genesis)
    return seal_content(placement.sender, content)


def verify_delivery(client: NodeClient, order_id: bytes, order: Mapping[str, Any],
                    genesis: Genesis | None = None) -> Transaction:
    """The merchant-signed, final `order_deliver` transaction whose box the node shows on `order`.

    The transaction is named by the order's history (event `order_deliver`); its bytes come
    from a final block (`verify_transaction`); its signature must be valid (R8), its type
    `order_deliver`, its order `order_id`, its sender the order's merchant and its content
    the order's `delivery`. Raises `VerificationFailed` otherwise.
    """
    try:
        entries = [entry for entry in order.get("history") or [] if entry.get("event") == "order_deliver"]
        merchant, delivery = bytes.fromhex(order["merchant"]), bytes.fromhex(order["delivery"])
        tx_hash = entries[-1]["tx"]
        verification = verify_transaction(client, tx_hash, genesis)
        delivered = decode_transaction(verification.tx_bytes, len(verification.tx_bytes))
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as error:
        raise VerificationFailed(f"the node's answer about order {order_id.hex()}'s delivery is malformed: "
                                 f"{error!r}") from None
    except AdmissionError as error:
        raise VerificationFailed(f"the order_deliver transaction does not decode: {error.message}") from None
    if delivered.type != "order_deliver" or delivered.payload.get("order_id") != order_id:
        raise VerificationFailed(f"transaction {tx_hash} is not an order_deliver of order {order_id.hex()}")
    if not delivered.has_valid_signature():
        raise VerificationFailed("the order_deliver transaction's signature is not valid (R8)")
    if delivered.sender != merchant:
        raise VerificationFailed(f"the order_deliver transaction was signed by {delivered.sender.hex()}, not by "
                                 f"the order's merchant {merchant.hex()}")
    if delivered.payload.get("content") != delivery:
        raise VerificationFailed("the delivery the node returned is not the one in the order_deliver transaction "
                                 "the merchant signed (R41)")
    return delivered


def proven_delivery(client: NodeClient, genesis: Genesis, order_id: bytes, buyer: bytes) -> bytes:
    """The sealed goods in the order's state record, proven (R36) against a header verified from
    `genesis` (R37); `VerificationFailed` if the proof fails or the proven order has no delivery
    for `buyer`."""
    try:
        record = verify_order(client, genesis, order_id).decoded()
    except StateVerificationFailed as error:
        raise VerificationFailed(f"the order's state proof does not verify: {error}") from None
    if not isinstance(record, dict) or record.get("buyer") != buyer:
        raise VerificationFailed(f"the proven order {order_id.hex()} is not an order of buyer {buyer.hex()}")
    box = record.get("delivery")
    if not isinstance(box, bytes):
        raise VerificationFailed(f"the proven order {order_id.hex()} holds no delivery (the node said it did)")
    return box


def open_delivery(client: NodeClient, key: KeyPair, order_id: bytes, order: Mapping[str, Any] | None = None,
                  genesis: Genesis | None = None) -> bytes:
    """The digital goods delivered on `order_id`, opened locally with the buyer's `key` (R41).

    Raises `DeliveryError` (not digital, not the buyer's key, nothing delivered yet, a box
    this key does not open), `VerificationFailed` (`verify_delivery`) or `ClientError`.
    """
    order = order if order is not None else client.order(order_id)
    buyer, me = order.get("buyer"), key.address.hex()
    if not order.get("digital"):
        raise DeliveryError(f"order {order_id.hex()} is not a digital order: nothing is delivered on chain "
                            "(its parcel is shipped by a carrier)")
    if me != buyer:
        raise DeliveryError(f"key {me} is not this order's buyer ({buyer}): the goods are sealed to the buyer's "
                            "key only; use the buyer's key")
    if not order.get("delivery"):
        raise DeliveryError(f"nothing was delivered yet: the order is {order.get('state')} (the merchant "
                            "delivers with order_deliver from placed or accepted)")
    if genesis is not None:
        box = proven_delivery(client, genesis, order_id, key.address)
    else:
        box = verify_delivery(client, order_id, order).payload["content"]
    try:
        return open_sealed(key, box)
    except SealError:
        raise DeliveryError("the delivered box does not open with the buyer's key: the merchant sealed it to "
                            "another key; ask the merchant for a refund (or open a dispute if the order names "
                            "an arbiter) before the confirm window ends") from None

"""`marketchain tx order-…`: orders, logistics and after-sales (PROTOCOL §4; escrow R13, R17).

The buyer's address is sealed locally to the merchant's key, and re-sealed by the merchant
for the carrier: it never reaches the node in clear. Digital goods (R41) are sealed locally
to the buyer's key by `order-deliver`."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from client import payloads
from client.commands.common import account_address, call, fail, load_signing_key, node_client
from client.commands.sending import build, order_option, reason_option, send, tx_options
from client.commands.types import AMOUNT, ID
from client.delivery import seal_delivery
from client.sealing import MAX_CONTENT_BYTES, SealError, open_sealed, seal_for
from client.verification import VerificationFailed, verify_order_placement
from marketplace_tx.rules.schema import SHIPMENT_STATUSES


@click.command("order-place")
@click.option("--listing", "listing_id", required=True, type=ID, help="Listing id (64 hex).")
@click.option("--quantity", default=1, show_default=True, type=click.IntRange(1))
@click.option("--max-unit-price", type=AMOUNT, default=None,
              help="Refuse if the price rose above this, e.g. 12.5MKT (default: the price now).")
@click.option("--ship-to", default=None,
              help="Delivery address; sealed locally to the merchant's key, never sent in clear "
                   "(optional for a digital listing: then a note for the merchant, or nothing).")
@click.option("--arbiter", default=None, help="One of the shop's arbiters (default: its first one).")
@click.option("--redeem-points", type=click.IntRange(0), default=None, help="Loyalty points to spend (1 = 1 µMKT).")
@tx_options
def tx_order_place(listing_id: bytes, quantity: int, max_unit_price: int | None, ship_to: str | None,
                   arbiter: str | None, redeem_points: int | None, **common: Any) -> None:
    """Order from a listing, paying price × quantity into escrow (R13); the order id is this tx's hash.

    A digital listing's goods come sealed to your key (R41): open them with
    `marketchain query order ID --decrypt --key YOU` once delivered."""
    if ship_to is not None and not ship_to.strip():
        fail("--ship-to is empty: write the delivery address (it is sealed to the merchant, never sent in clear)")
    client = node_client(common["node_url"])
    listing = call(client.listing, listing_id)
    if ship_to is None:
        if not listing.get("digital"):
            raise click.UsageError("Missing option '--ship-to': the delivery address of this parcel listing "
                                   "(only a digital listing's order needs none)")
        ship_to = ""
    shop = call(client.shop, bytes.fromhex(listing["shop_id"]))
    merchant = bytes.fromhex(shop["owner"])
    if max_unit_price is None:
        max_unit_price = listing["price"]
    named = account_address(arbiter, "--arbiter") if arbiter else None
    if named is None and shop.get("arbiters"):
        named = bytes.fromhex(shop["arbiters"][0])
        click.echo(f"arbiter: {named.hex()} (the shop's first; choose with --arbiter)", err=True)
    try:
        sealed = seal_for(merchant, ship_to.encode())
    except SealError as error:
        fail(f"--ship-to: {error}")
    send("order_place", build(payloads.order_place, listing_id, quantity, max_unit_price, sealed, named,
                              redeem_points), **common)


@click.command("order-accept")
@order_option
@tx_options
def tx_order_accept(order_id: bytes, **common: Any) -> None:
    """Accept a placed order (merchant)."""
    send("order_accept", payloads.order_only(order_id), **common)


@click.command("order-reject")
@order_option
@reason_option
@tx_options
def tx_order_reject(order_id: bytes, reason: str, **common: Any) -> None:
    """Reject a placed or accepted order: escrow back to the buyer (merchant)."""
    send("order_reject", payloads.order_with_reason(order_id, reason), **common)


@click.command("order-cancel")
@order_option
@tx_options
def tx_order_cancel(order_id: bytes, **common: Any) -> None:
    """Cancel your order while it is still placed: escrow back (buyer)."""
    send("order_cancel", payloads.order_only(order_id), **common)


@click.command("order-ship")
@order_option
@click.option("--carrier", required=True, help="The carrier: address, key name or key file.")
@click.option("--tracking", required=True, help="The carrier's tracking number, ≤ 64 bytes.")
@click.option("--no-reseal", is_flag=True,
              help="Do not re-seal the buyer's address to the carrier (shipping_for_carrier).")
@tx_options
def tx_order_ship(order_id: bytes, carrier: str, tracking: str, no_reseal: bool, **common: Any) -> None:
    """Hand the order to a carrier (merchant); re-seals the address for the carrier locally.

    The sealed address is first checked against the order_place transaction the buyer signed,
    proven final by its block's commit signatures: a node that swapped it is refused.
    """
    carrier_address = account_address(carrier, "--carrier")
    key = load_signing_key(common["key_reference"])
    for_carrier = None
    if not no_reseal:
        client = node_client(common["node_url"])
        order = call(client.order, order_id)
        if key.address.hex() != order["merchant"]:
            fail(f"--key {key.address.hex()} is not this order's merchant ({order['merchant']}): only the "
                 "merchant can open the buyer's address to re-seal it; sign with the merchant's key "
                 "(or pass --no-reseal)")
        try:  # issue 13: the box comes from the buyer-signed, final order_place, never from the node alone
            placement = call(verify_order_placement, client, order_id, order)
        except VerificationFailed as error:
            fail(f"refusing to re-seal the shipping address: {error}; nothing was signed (ask another node "
                 "with --node)")
        try:
            for_carrier = seal_for(carrier_address, open_sealed(key, placement.payload["shipping"]))
        except SealError as error:
            fail(f"cannot re-seal the shipping address: {error} (pass --no-reseal to ship without it)")
    send("order_ship", payloads.order_ship(order_id, carrier_address, tracking, for_carrier), key=key, **common)


def read_content(source: str) -> bytes:
    """The goods of `--content-file` (`-`: stdin), read no further than one byte past what fits (R41)."""
    where = "stdin" if source == "-" else source
    try:
        if source == "-":
            content = sys.stdin.buffer.read(MAX_CONTENT_BYTES + 1)
        else:
            with open(source, "rb") as handle:
                content = handle.read(MAX_CONTENT_BYTES + 1)
    except OSError as error:
        fail(f"--content-file: cannot read {where}: {error.strerror or error}")
    if not content:
        fail(f"--content-file: {where} is empty: there is nothing to deliver")
    if len(content) > MAX_CONTENT_BYTES:
        size = f"{os.path.getsize(source)} bytes" if source != "-" else f"more than {MAX_CONTENT_BYTES} bytes"
        fail(f"--content-file: {where} is {size}; at most {MAX_CONTENT_BYTES} bytes fit the 4096-byte "
             "order_deliver content once sealed (R41): deliver a code, a key or a download link instead")
    return content


@click.command("order-deliver")
@order_option
@click.option("--content-file", required=True,
              help=f"The goods (a code, licence key, ticket or link, ≤ {MAX_CONTENT_BYTES} bytes); `-` reads stdin. "
                   "Sealed locally to the buyer's key: nodes never see it.")
@tx_options
def tx_order_deliver(order_id: bytes, content_file: str, **common: Any) -> None:
    """Deliver a digital order's goods sealed to its buyer (merchant; from placed or accepted, R41).

    The buyer's key is taken from the order_place transaction the buyer signed, proven final
    by its block's commit signatures: a node that names another buyer is refused.
    """
    content = read_content(content_file)
    key = load_signing_key(common["key_reference"])
    client = node_client(common["node_url"])
    order = call(client.order, order_id)
    if not common["force"]:
        if not order.get("digital"):
            fail(f"invalid_state: order {order_id.hex()} is not a digital order (R41): ship it with "
                 "`marketchain tx order-ship`; nothing was signed or sent")
        if key.address.hex() != order.get("merchant"):
            fail(f"forbidden: --key {key.address.hex()} is not this order's merchant ({order.get('merchant')}); "
                 "sign with the merchant's key; nothing was signed or sent")
    try:
        sealed = call(seal_delivery, client, order_id, content, order)
    except VerificationFailed as error:
        fail(f"refusing to seal the goods: {error}; nothing was signed (ask another node with --node)")
    except SealError as error:
        fail(f"--content-file: {error}")
    send("order_deliver", payloads.order_deliver(order_id, sealed), key=key, **common)


@click.command("shipment-update")
@order_option
@click.option("--status", required=True, type=click.Choice(SHIPMENT_STATUSES))
@click.option("--location", required=True, help="Where, ≤ 128 bytes.")
@click.option("--note", default=None, help="≤ 256 bytes.")
@tx_options
def tx_shipment_update(order_id: bytes, status: str, location: str, note: str | None, **common: Any) -> None:
    """Post a shipment event (the order's carrier); `delivered` marks the order delivered."""
    send("shipment_update", payloads.shipment_update(order_id, status, location, note), **common)


@click.command("order-confirm")
@order_option
@tx_options
def tx_order_confirm(order_id: bytes, **common: Any) -> None:
    """Confirm receipt: escrow goes to the merchant, points and items to you (buyer)."""
    send("order_confirm", payloads.order_only(order_id), **common)


@click.command("return-request")
@order_option
@reason_option
@tx_options
def tx_return_request(order_id: bytes, reason: str, **common: Any) -> None:
    """Ask to return a shipped or delivered order (buyer)."""
    send("return_request", payloads.order_with_reason(order_id, reason), **common)


@click.command("order-refund")
@order_option
@click.option("--amount", type=AMOUNT, default=None, help="With its unit, e.g. 4MKT; less than the escrow is an offer.")
@click.option("--all", "refund_all", is_flag=True, help="Refund the whole escrow (ends the order as refunded).")
@tx_options
def tx_order_refund(order_id: bytes, amount: int | None, refund_all: bool, **common: Any) -> None:
    """Refund part or all of the escrow to the buyer (merchant)."""
    if (amount is None) == (not refund_all):
        fail("give exactly one of --amount and --all")
    if refund_all:
        order = call(node_client(common["node_url"]).order, order_id)
        amount = order["escrow"]
        if not amount:
            fail(f"--all: the order is {order['state']} and holds nothing in escrow")
    assert amount is not None
    send("order_refund", payloads.order_refund(order_id, amount), **common)


@click.command("dispute-open")
@order_option
@reason_option
@tx_options
def tx_dispute_open(order_id: bytes, reason: str, **common: Any) -> None:
    """Escalate to the order's arbiter (buyer; merchant only from return_requested)."""
    send("dispute_open", payloads.order_with_reason(order_id, reason), **common)


@click.command("dispute-resolve")
@order_option
@click.option("--buyer-amount", required=True, type=AMOUNT, help="What the buyer gets back, e.g. 8MKT; the rest, "
              "after the arbiter fee, goes to the merchant.")
@click.option("--ruling", required=True, help="The ruling, ≤ 512 bytes.")
@tx_options
def tx_dispute_resolve(order_id: bytes, buyer_amount: int, ruling: str, **common: Any) -> None:
    """Resolve a dispute (the order's arbiter)."""
    send("dispute_resolve", payloads.dispute_resolve(order_id, buyer_amount, ruling), **common)


@click.command("review-submit")
@order_option
@click.option("--rating", required=True, type=click.IntRange(1, 5), help="1 to 5 stars.")
@click.option("--text", default=None, help="≤ 1000 bytes.")
@tx_options
def tx_review_submit(order_id: bytes, rating: int, text: str | None, **common: Any) -> None:
    """Review a completed, refunded or resolved order, once (its buyer, R19)."""
    send("review_submit", payloads.review_submit(order_id, rating, text), **common)


@click.command("review-reply")
@order_option
@click.option("--text", required=True, help="≤ 1000 bytes.")
@tx_options
def tx_review_reply(order_id: bytes, text: str, **common: Any) -> None:
    """Answer the review of an order, once (its merchant)."""
    send("review_reply", payloads.review_reply(order_id, text), **common)


ORDER_COMMANDS = (
    tx_order_place, tx_order_accept, tx_order_reject, tx_order_cancel, tx_order_ship, tx_order_deliver,
    tx_shipment_update,
    tx_order_confirm, tx_return_request, tx_order_refund, tx_dispute_open, tx_dispute_resolve,
    tx_review_submit, tx_review_reply,
)
"""The order, logistics, after-sales and review commands of `marketchain tx`."""

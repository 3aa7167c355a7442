"""`marketchain query`: read the chain from a node (PROTOCOL §10), as tables or `--json`."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from client.commands.common import (
    account_address,
    call,
    echo_json,
    fail,
    json_option,
    load_signing_key,
    node_client,
    node_option,
    with_key_names,
)
from client.commands.sending import print_tx
from client.commands.types import AMOUNT, ID, ITEM_ID
from client.delivery import DeliveryError, open_delivery
from client.events import follow_events
from client.formatting import (
    account_txs_table,
    column_table,
    format_amount,
    format_time,
    format_value,
    item_view,
    key_value_table,
    listing_view,
    listings_table,
    order_view,
    orders_table,
    reputation_rows,
    reviews_view,
    shop_view,
    shops_table,
)
from client.node_client import ClientError, NodeClient
from client.progress import describe_sync, sync_summary
from client.sealing import SealError, open_sealed
from client.verification import GenesisFileError, VerificationFailed, read_genesis_file
from marketplace_tx.primitives.crypto import KeyPair
from marketplace_tx.rules.order_records import ORDER_STATES


@click.group()
def query() -> None:
    """Read the chain from a node."""


@query.command("status")
@node_option
@json_option
def query_status(node_url: str, as_json: bool) -> None:
    """The node's chain, height and role."""
    status = call(node_client(node_url).status)
    if as_json:
        echo_json(status)
        return
    shown = {**status, "sync": describe_sync(sync_summary(status))} if "sync" in status else status
    click.echo(key_value_table([(name, format_value(name, value)) if isinstance(value, dict) else (name, value)
                                for name, value in shown.items()]))


@query.command("validators")
@click.option("--height", type=click.IntRange(1), default=None, help="Height (default: the next block).")
@node_option
@json_option
def query_validators(height: int | None, node_url: str, as_json: bool) -> None:
    """The validator set, decided changes, pending votes and punished validators."""
    view = call(node_client(node_url).get, "/validators" + (f"?height={height}" if height else ""))
    if as_json:
        echo_json(view)
        return
    click.echo(f"height {view['height']}  proposer (round 0) {view['proposer']}")
    click.echo(column_table(["validator"], [[v["address"]] for v in view["validators"]]))
    for change in view["scheduled"]:
        click.echo(f"from height {change['height']}: {len(change['validators'])} validators")
    for vote in view["pending_votes"]:
        click.echo(f"pending: {vote['action']} {vote['validator']} ({len(vote['voters'])} vote(s))")
    for item in view["evidence"]:
        click.echo(f"punished: {item['validator']} (equivocated at height {item['evidence_height']})")


@query.command("account")
@click.argument("account")
@node_option
@json_option
def query_account(account: str, node_url: str, as_json: bool) -> None:
    """Balance, nonce, roles, loyalty points and merchant reputation of ACCOUNT (address, key name or key file)."""
    view = call(node_client(node_url).account, account_address(account))
    if as_json:
        echo_json(view)
        return
    click.echo(with_key_names(key_value_table([
        ("address", view["address"]),
        ("balance", format_amount(view["balance"])),
        ("nonce", view["nonce"]),
        ("pending nonce", view["pending_nonce"]),
        ("roles", ", ".join(view["roles"]) or "-"),
    ] + [("points", f"{points:,} in shop {shop_id}") for shop_id, points in (view.get("points") or {}).items()]
      + (reputation_rows(view["reputation"], "merchant ") if view.get("reputation") else []))))


@query.command("tx")
@click.argument("tx_hash")
@node_option
@json_option
def query_tx(tx_hash: str, node_url: str, as_json: bool) -> None:
    """A transaction and its receipt."""
    view = call(node_client(node_url).tx, tx_hash.lower())
    echo_json(view) if as_json else print_tx(view)


@query.command("block")
@click.argument("height", default="latest")
@node_option
@json_option
def query_block(height: str, node_url: str, as_json: bool) -> None:
    """A block (default: the latest)."""
    if height != "latest" and not (height.isascii() and height.isdigit()):
        fail("HEIGHT is a block number or 'latest'")
    view = call(node_client(node_url).get, f"/blocks/{height}")
    if as_json:
        echo_json(view)
        return
    header = view["header"]
    click.echo(key_value_table([
        ("height", view["height"]), ("hash", view["hash"]),
        ("time", f"{header['time']} ({time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(header['time'] / 1000))} UTC)"),
        ("proposer", header["proposer"]), ("txs", view["tx_count"]), ("tx_root", header["tx_root"]),
        ("state_root", header["state_root"]),
        ("commit", f"{len(view['commit']['signatures'])} signature(s), round {view['commit']['round']}"
         if view["commit"] else "-"),
    ] + [(f"tx {i}", tx_hash) for i, tx_hash in enumerate(view["txs"])]))


# --- marketplace queries (PROTOCOL §10) ---------------------------------------------


def page_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """`--limit N` and `--cursor NEXT` of a paged list."""
    function = click.option("--cursor", default=None, help="Continue from the `next` cursor of a previous page.")(
        function)
    return click.option("--limit", type=click.IntRange(1, 100), default=None, help="Items per page.")(function)


def print_page(view: dict[str, Any], plural: str, table: Callable[[list[Any]], str], as_json: bool,
               empty: str) -> None:
    """One page of a list: its table (or `empty`), how to get the next page, and whether older
    entries are pruned on this node (`pruned_below`, R40)."""
    if as_json:
        echo_json(view)
        return
    items = view.get(plural) or []
    click.echo(table(items) if items else empty)
    if view.get("next") is not None:
        click.echo(f"\nmore: repeat with --cursor {view['next']}")
    if view.get("pruned_below") is not None:
        click.echo(f"\nolder ones are pruned on this node: it keeps blocks from height {view['pruned_below']} on")


@query.command("shops")
@click.option("--owner", default=None, help="Only this merchant's shops: address, key name or key file.")
@page_options
@node_option
@json_option
def query_shops(owner: str | None, limit: int | None, cursor: str | None, node_url: str, as_json: bool) -> None:
    """Shops, with rating and trust score."""
    view = call(node_client(node_url).shops, account_address(owner, "--owner") if owner else None, limit, cursor)
    print_page(view, "shops", shops_table, as_json, "no shops")


@query.command("shop")
@click.argument("shop_id", type=ID)
@node_option
@json_option
def query_shop(shop_id: bytes, node_url: str, as_json: bool) -> None:
    """A shop with its reputation (R20) and stats."""
    view = call(node_client(node_url).shop, shop_id)
    echo_json(view) if as_json else click.echo(with_key_names(shop_view(view)))


@query.command("reviews")
@click.argument("shop_id", type=ID)
@page_options
@node_option
@json_option
def query_reviews(shop_id: bytes, limit: int | None, cursor: str | None, node_url: str, as_json: bool) -> None:
    """Verified-purchase reviews of a shop, with the merchant's replies."""
    view = call(node_client(node_url).shop_reviews, shop_id, limit, cursor)
    print_page(view, "reviews", reviews_view, as_json, "no reviews yet")


@query.command("listings")
@click.option("--q", "text", default=None, help="Words to search in titles, descriptions and tags.")
@click.option("--tag", default=None, help="Only listings with this tag.")
@click.option("--shop", "shop_id", type=ID, default=None, help="Only this shop's listings.")
@click.option("--min-price", type=AMOUNT, default=None, help="e.g. 1MKT.")
@click.option("--max-price", type=AMOUNT, default=None, help="e.g. 50MKT.")
@page_options
@node_option
@json_option
def query_listings(text: str | None, tag: str | None, shop_id: bytes | None, min_price: int | None,
                   max_price: int | None, limit: int | None, cursor: str | None, node_url: str,
                   as_json: bool) -> None:
    """Search listings across every shop."""
    client = node_client(node_url)
    view = call(client.listings, text, tag, shop_id, min_price, max_price, limit, cursor)
    if not as_json:
        view = {**view, "listings": with_shop_names(client, view.get("listings") or [])}
    print_page(view, "listings", listings_table, as_json, "no listing matches")


def with_shop_names(client: NodeClient, listings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The listings, each with `shop_name`: the name of its shop (read once per shop)."""
    names: dict[str, str] = {}
    for shop_id in {listing["shop_id"] for listing in listings if listing.get("shop_id")}:
        try:
            names[shop_id] = client.shop(bytes.fromhex(shop_id))["name"]
        except ClientError:
            names[shop_id] = "-"
    return [{**listing, "shop_name": names.get(listing.get("shop_id", ""), "-")} for listing in listings]


@query.command("listing")
@click.argument("listing_id", type=ID)
@node_option
@json_option
def query_listing(listing_id: bytes, node_url: str, as_json: bool) -> None:
    """A listing: price, stock, items, tags."""
    client = node_client(node_url)
    view = call(client.listing, listing_id)
    if as_json:
        echo_json(view)
        return
    click.echo(with_key_names(listing_view(with_shop_names(client, [view])[0])))


@query.command("orders")
@click.option("--buyer", default=None, help="Only this buyer's orders: address, key name or key file.")
@click.option("--merchant", default=None, help="Only this merchant's orders.")
@click.option("--state", default=None, type=click.Choice(ORDER_STATES), help="Only orders in this state.")
@click.option("--follow", is_flag=True,
              help="Then print new and changed orders as they become final (the merchant's inbox; Ctrl-C stops).")
@click.option("--count", type=click.IntRange(1), default=None, help="With --follow: stop after this many changes.")
@page_options
@node_option
@json_option
def query_orders(buyer: str | None, merchant: str | None, state: str | None, follow: bool, count: int | None,
                 limit: int | None, cursor: str | None, node_url: str, as_json: bool) -> None:
    """Orders, filtered by buyer, merchant or state; with --follow, then every change as it happens."""
    if follow:
        follow_orders(node_url, buyer, merchant, state, count, as_json)
        return
    view = call(node_client(node_url).orders, account_address(buyer, "--buyer") if buyer else None,
                 account_address(merchant, "--merchant") if merchant else None, state, limit, cursor)
    print_page(view, "orders", orders_table, as_json, "no orders")


def follow_orders(node_url: str, buyer: str | None, merchant: str | None, state: str | None, count: int | None,
                  as_json: bool) -> None:
    """Print each order change of the node's `/events` stream that matches, one line (or JSON) each."""
    party = ("buyer", account_address(buyer, "--buyer")) if buyer else \
        ("merchant", account_address(merchant, "--merchant")) if merchant else None
    node_client(node_url)  # checks the URL
    click.echo(f"following orders{f' of {party[0]} {party[1].hex()}' if party else ''} at {node_url} "
               "(Ctrl-C stops)", err=True)
    shown = 0
    try:
        for event in follow_events(node_url, account=party[1] if party else None):
            data = event.data
            if event.kind == "gap":
                click.echo("some order changes are no longer held by the node: list them with `query orders`",
                           err=True)
            if event.kind != "order" or (party and data.get(party[0]) != party[1].hex()) or \
                    (state and data.get("to") != state):
                continue
            if as_json:
                click.echo(json.dumps(data, sort_keys=True))
            else:
                change = f"{data['from']} → {data['to']}" if data.get("from") else f"new, {data['to']}"
                click.echo(f"{format_time(data.get('time'))}  order {data['order_id']}  {change}  by {data.get('by')}"
                           f"  height {data.get('height')}  tx {data.get('tx') or '-'}")
            shown += 1
            if count is not None and shown >= count:
                return
    except KeyboardInterrupt:
        return
    except ValueError as error:
        fail(f"the node's event stream is not valid: {error}")


def decrypt_shipping(order: dict[str, Any], key: KeyPair) -> tuple[str, str]:
    """(who, address): open the order's sealed address with the merchant's or the carrier's key."""
    me = key.address.hex()
    boxes = [("merchant", order.get("shipping"))]
    if order.get("shipping_for_carrier"):
        boxes.append(("carrier", order["shipping_for_carrier"]))
    for who, box in boxes:
        if box:
            try:
                return who, open_sealed(key, bytes.fromhex(box)).decode("utf-8", "replace")
            except SealError:
                continue
    if order.get("digital"):
        fail(f"key {me} is not this order's buyer ({order.get('buyer')}): a digital order's goods are sealed to the "
             "buyer's key only (R41); use the buyer's key")
    if me == order.get("carrier"):
        fail(f"key {me} is this order's carrier, but the merchant shipped without re-sealing the address "
              "for it (no shipping_for_carrier)")
    fail(f"key {me} cannot open this order's shipping address: it is sealed to the merchant "
          f"({order.get('merchant')}) and, once shipped with re-sealing, to the carrier "
          f"({order.get('carrier') or 'none yet'}); use one of their keys")


def decrypt_delivery(client: NodeClient, order_id: bytes, order: dict[str, Any], key: KeyPair,
                     genesis_file: Path | None) -> bytes:
    """The digital goods of `order` opened with the buyer's `key`, from the merchant's final
    order_deliver transaction, or with a genesis file from the proven order (R41, R36);
    fails with one line when that cannot be done."""
    try:
        genesis = read_genesis_file(genesis_file) if genesis_file is not None else None
    except GenesisFileError as error:
        fail(f"--genesis: {error}")
    try:
        return call(open_delivery, client, key, order_id, order, genesis)
    except DeliveryError as error:
        fail(str(error))
    except VerificationFailed as error:
        fail(f"refusing to open the delivery: {error} (ask another node with --node)")


def write_content(content: bytes, output: str) -> None:
    """The opened goods, byte for byte, into `output` (`-`: stdout)."""
    if output == "-":
        click.get_binary_stream("stdout").write(content)
        return
    try:
        with open(output, "wb") as handle:
            handle.write(content)
    except OSError as error:
        fail(f"--output: cannot write {output}: {error.strerror or error}")


def content_text(content: bytes) -> str | None:
    """The goods as text (UTF-8), or None if they are not text."""
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError:
        return None


@query.command("order")
@click.argument("order_id", type=ID)
@click.option("--decrypt", is_flag=True, help="Open locally: the delivered goods of a digital order (the buyer's "
              "key, R41), or the sealed shipping address (the merchant's or carrier's key, R13).")
@click.option("--key", "key_reference", envvar="MARKETCHAIN_KEY", default=None,
              help="With --decrypt: the buyer's, merchant's or carrier's key (keystore name or key file).")
@click.option("--output", default=None,
              help="With --decrypt and the buyer's key: write the delivered goods to this file (`-`: raw to stdout).")
@click.option("--genesis", "genesis_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="With --decrypt and the buyer's key: open the box of the order's state proven from this genesis "
                   "(R36, R37) instead of the merchant's final order_deliver transaction.")
@node_option
@json_option
def query_order(order_id: bytes, decrypt: bool, key_reference: str | None, output: str | None,
                genesis_file: Path | None, node_url: str, as_json: bool) -> None:
    """An order: state, escrow, deadline, logistics, history, review; a digital order's goods
    stay sealed unless --decrypt opens them with the buyer's key."""
    if (output is not None or genesis_file is not None) and not decrypt:
        fail("--output and --genesis need --decrypt and the buyer's key")
    if decrypt and not key_reference:
        fail("--decrypt needs --key: the buyer's key (digital goods), or the merchant's or the carrier's key")
    client = node_client(node_url)
    view = call(client.order, order_id)
    address = content = None
    if decrypt:
        key = load_signing_key(key_reference or "")
        if view.get("digital") and key.address.hex() == view.get("buyer"):
            content = decrypt_delivery(client, order_id, view, key, genesis_file)
        elif output is not None or genesis_file is not None:
            fail("--output and --genesis open a digital order's delivered goods: they need the buyer's key")
        else:
            who, address = decrypt_shipping(view, key)
    if content is not None and output is not None:
        write_content(content, output)
        if output == "-":
            return
    if as_json:
        if content is not None:
            echo_json({**view, "delivery_plaintext": content_text(content), "delivery_plaintext_hex": content.hex()})
        else:
            echo_json({**view, "shipping_plaintext": address} if decrypt else view)
        return
    click.echo(with_key_names(order_view(view)))
    if address is not None:
        click.echo(f"\nshipping address (opened locally with the {who}'s key):\n  {address}")
    if content is not None:
        text = content_text(content)
        where = f"written to {output} ({len(content)} bytes)" if output else text if text is not None else \
            f"(not text: {len(content)} bytes, hex) {content.hex()}; write them to a file with --output FILE"
        click.echo(f"\ndelivered goods (opened locally with the buyer's key):\n  {where}")


@query.command("item")
@click.argument("item_id", type=ITEM_ID)
@node_option
@json_option
def query_item(item_id: str, node_url: str, as_json: bool) -> None:
    """A unique item: owner, custodian and its provenance history (R22)."""
    view = call(node_client(node_url).item, item_id)
    echo_json(view) if as_json else click.echo(with_key_names(item_view(view)))


@query.command("account-txs")
@click.argument("account")
@page_options
@node_option
@json_option
def query_account_txs(account: str, limit: int | None, cursor: str | None, node_url: str, as_json: bool) -> None:
    """Transactions ACCOUNT (address, key name or key file) sent or takes part in, newest first."""
    address = account_address(account)
    view = call(node_client(node_url).account_txs, address, limit, cursor)
    print_page(view, "txs", lambda txs: account_txs_table(txs, address.hex()), as_json, "no transactions")

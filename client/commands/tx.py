"""`marketchain tx`: sign a transaction locally and send it to a node, one subcommand per
transaction type (PROTOCOL §4). Accounts, roles, validators, shops and listings live here;
orders and items in `tx_orders` and `tx_items`."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import click

from client import payloads
from client.commands.common import account_address, fail
from client.commands.sending import build, document_hash, send, tx_options
from client.commands.tx_items import ITEM_COMMANDS
from client.commands.tx_orders import ORDER_COMMANDS
from client.commands.types import AMOUNT, BPS, FILE, ID, ITEM_ID, SIGNED
from marketplace_tx.rules.schema import ROLES


@click.group()
def tx() -> None:
    """Sign a transaction locally and send it to a node."""


@tx.command("transfer")
@click.option("--to", "recipient", required=True, help="Recipient: address, key name or key file.")
@click.option("--amount", required=True, type=AMOUNT, help="With its unit: 2.5MKT or 2500000µMKT.")
@click.option("--memo", default=None, help="Up to 256 bytes of text.")
@tx_options
def tx_transfer(recipient: str, amount: int, memo: str | None, **common: Any) -> None:
    """Move µMKT to another account."""
    payload: dict[str, Any] = {"to": account_address(recipient, "--to"), "amount": amount}
    if memo is not None:
        payload["memo"] = memo
    send("transfer", payload, **common)


@tx.command("role-grant")
@click.option("--account", required=True, help="Account: address, key name or key file.")
@click.option("--role", required=True, type=click.Choice(ROLES))
@click.option("--evidence-file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="The KYC document; only its SHA-256 goes on chain.")
@click.option("--evidence-hash", default=None, help="SHA-256 of the KYC document, hex.")
@tx_options
def tx_role_grant(account: str, role: str, evidence_file: Path | None, evidence_hash: str | None, **common: Any) -> None:
    """Grant a role after off-chain KYC (registrars only)."""
    if (evidence_file is None) == (evidence_hash is None):
        fail("give exactly one of --evidence-file and --evidence-hash")
    if evidence_file is not None:
        digest = hashlib.sha256(evidence_file.read_bytes()).digest()
    else:
        try:
            digest = bytes.fromhex(evidence_hash or "")
        except ValueError:
            digest = b""
        if len(digest) != 32:
            fail("--evidence-hash must be 64 hex characters")
    send("role_grant", {"account": account_address(account, "--account"), "role": role, "evidence_hash": digest},
         **common)


@tx.command("role-revoke")
@click.option("--account", required=True, help="Account: address, key name or key file.")
@click.option("--role", required=True, type=click.Choice(ROLES))
@tx_options
def tx_role_revoke(account: str, role: str, **common: Any) -> None:
    """Revoke a role (registrars only)."""
    send("role_revoke", {"account": account_address(account, "--account"), "role": role}, **common)


@tx.command("validator-vote")
@click.option("--action", required=True, type=click.Choice(["add", "remove"]))
@click.option("--validator", required=True, help="Validator: address, key name or key file.")
@tx_options
def tx_validator_vote(action: str, validator: str, **common: Any) -> None:
    """Vote to add or remove a validator (validators only; passes with > 2/3, signs from H+2, R34)."""
    send("validator_vote", {"action": action, "validator": account_address(validator, "--validator")}, **common)


# --- shops and listings (PROTOCOL §4) -----------------------------------------------


@tx.command("shop-create")
@click.option("--name", required=True, help="Shop name, 1..64 bytes.")
@click.option("--description", default=None, help="Up to 1000 bytes.")
@click.option("--points-bps", type=BPS, default=0, show_default=True,
              help="Loyalty points earned per µMKT paid: 500 or 5%.")
@click.option("--max-redeem-bps", type=BPS, default=0, show_default=True,
              help="Most of an order payable with points: 2000 or 20%.")
@click.option("--arbiter", "arbiters", multiple=True,
              help="An arbiter buyers may name (repeat; up to 8). None: no disputes, unconditional returns.")
@tx_options
def tx_shop_create(name: str, description: str | None, points_bps: int, max_redeem_bps: int,
                   arbiters: tuple[str, ...], **common: Any) -> None:
    """Open a shop (needs the merchant role); its id is this transaction's hash."""
    send("shop_create", build(payloads.shop_create, name, points_bps, max_redeem_bps, description,
                              [account_address(a, "--arbiter") for a in arbiters]), **common)


@tx.command("shop-update")
@click.option("--shop", "shop_id", required=True, type=ID, help="Shop id (64 hex).")
@click.option("--name", default=None)
@click.option("--description", default=None)
@click.option("--points-bps", type=BPS, default=None, help="e.g. 500 or 5%.")
@click.option("--max-redeem-bps", type=BPS, default=None, help="e.g. 2000 or 20%.")
@click.option("--arbiter", "arbiters", multiple=True, help="The new list of arbiters (repeat), replacing the old one.")
@click.option("--open/--closed", "is_open", default=None, help="Take new orders, or stop taking them.")
@tx_options
def tx_shop_update(shop_id: bytes, name: str | None, description: str | None, points_bps: int | None,
                   max_redeem_bps: int | None, arbiters: tuple[str, ...], is_open: bool | None, **common: Any) -> None:
    """Change a shop's name, terms, arbiters or open/closed (owner only)."""
    send("shop_update", build(payloads.shop_update, shop_id, name, description, points_bps, max_redeem_bps,
                              [account_address(a, "--arbiter") for a in arbiters], is_open), **common)


@tx.command("listing-create")
@click.option("--shop", "shop_id", required=True, type=ID, help="Your shop's id (64 hex).")
@click.option("--title", required=True, help="1..128 bytes.")
@click.option("--price", required=True, type=AMOUNT, help="Per unit, with its unit: 12.5MKT or 12500000µMKT.")
@click.option("--stock", type=click.IntRange(0), default=None,
              help="Units for sale (default with --item-id: the number of items).")
@click.option("--description", default=None, help="Up to 2000 bytes.")
@click.option("--item-id", "item_ids", multiple=True, type=ITEM_ID,
              help="A unique item you own and hold (repeat; R22).")
@click.option("--tag", "tags", multiple=True, help="A search tag ≤ 32 bytes (repeat; up to 8).")
@click.option("--metadata-file", type=FILE, help="Photos/specs document; only its SHA-256 goes on chain.")
@click.option("--metadata-hash", default=None, help="SHA-256 of the metadata, hex.")
@click.option("--digital", is_flag=True,
              help="Digital goods (codes, keys, files), delivered on chain sealed to the buyer with "
                   "`tx order-deliver`, never shipped (R41); not with --item-id.")
@tx_options
def tx_listing_create(shop_id: bytes, title: str, price: int, stock: int | None, description: str | None,
                      item_ids: tuple[str, ...], tags: tuple[str, ...], metadata_file: Path | None,
                      metadata_hash: str | None, digital: bool, **common: Any) -> None:
    """List goods in your shop; its id is this transaction's hash."""
    digest = document_hash(metadata_file, metadata_hash, "--metadata-file/--metadata-hash")
    send("listing_create", build(payloads.listing_create, shop_id, title, price, stock, description, item_ids,
                                 tags, digest, digital), **common)


@tx.command("listing-update")
@click.option("--listing", "listing_id", required=True, type=ID, help="Listing id (64 hex).")
@click.option("--price", type=AMOUNT, default=None, help="New unit price, with its unit: 12.5MKT.")
@click.option("--stock-delta", type=SIGNED, default=None, help="Add or remove stock: +10 or -3.")
@click.option("--active/--inactive", "active", default=None, help="Take orders, or pause the listing.")
@click.option("--title", default=None)
@click.option("--description", default=None)
@click.option("--tag", "tags", multiple=True, help="The new tags (repeat), replacing the old ones.")
@tx_options
def tx_listing_update(listing_id: bytes, price: int | None, stock_delta: int | None, active: bool | None,
                      title: str | None, description: str | None, tags: tuple[str, ...], **common: Any) -> None:
    """Change a listing's price, stock, activity, title, description or tags (shop owner only)."""
    send("listing_update", build(payloads.listing_update, listing_id, price, stock_delta, active, title,
                                 description, tags), **common)


for _command in (*ORDER_COMMANDS, *ITEM_COMMANDS):
    tx.add_command(_command)

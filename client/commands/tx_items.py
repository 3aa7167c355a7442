"""`marketchain tx item-…`: unique items and their provenance (PROTOCOL §4, R22)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from client import payloads
from client.commands.common import account_address
from client.commands.sending import document_hash, send, tx_options
from client.commands.types import FILE, ITEM_ID


@click.command("item-register")
@click.option("--item-id", required=True, type=ITEM_ID, help="1..64 of [A-Za-z0-9._:-], e.g. PUER-2019-0001.")
@click.option("--description", required=True, help="What it is, ≤ 256 bytes.")
@click.option("--metadata-file", type=FILE, help="Certificate/photos; only its SHA-256 goes on chain.")
@click.option("--metadata-hash", default=None, help="SHA-256 of the metadata, hex.")
@tx_options
def tx_item_register(item_id: str, description: str, metadata_file: Path | None, metadata_hash: str | None,
                     **common: Any) -> None:
    """Register a unique item you own and hold (producer or merchant)."""
    digest = document_hash(metadata_file, metadata_hash, "--metadata-file/--metadata-hash")
    send("item_register", payloads.item_register(item_id, description, digest), **common)


@click.command("item-event")
@click.option("--item-id", required=True, type=ITEM_ID)
@click.option("--kind", required=True, help="e.g. harvested, inspected, stored (not registered/transfer/listed/sold).")
@click.option("--location", required=True, help="≤ 128 bytes.")
@click.option("--data-file", type=FILE, help="A report or certificate; only its SHA-256 goes on chain.")
@click.option("--data-hash", default=None, help="SHA-256 of the data, hex.")
@click.option("--note", default=None, help="≤ 256 bytes.")
@tx_options
def tx_item_event(item_id: str, kind: str, location: str, data_file: Path | None, data_hash: str | None,
                  note: str | None, **common: Any) -> None:
    """Record a supply-chain event on an item (owner, custodian or any inspector)."""
    digest = document_hash(data_file, data_hash, "--data-file/--data-hash")
    send("item_event", payloads.item_event(item_id, kind, location, digest, note), **common)


@click.command("item-transfer")
@click.option("--item-id", required=True, type=ITEM_ID)
@click.option("--to", "recipient", required=True, help="Recipient: address, key name or key file.")
@click.option("--custody-only", is_flag=True, help="Hand over custody only (e.g. to a carrier); keep ownership.")
@tx_options
def tx_item_transfer(item_id: str, recipient: str, custody_only: bool, **common: Any) -> None:
    """Transfer an item: ownership and custody (owner), or custody only (owner or custodian)."""
    send("item_transfer", payloads.item_transfer(item_id, account_address(recipient, "--to"), custody_only),
         **common)


ITEM_COMMANDS = (tx_item_register, tx_item_event, tx_item_transfer)
"""The unique-item commands of `marketchain tx`."""

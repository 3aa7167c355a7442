"""`marketchain merchant codes add|list`: the merchant agent's codes for digital listings
(issue 16). `add` imports a file of codes, one per line, encrypted at rest with the
inventory's passphrase; `list` shows how many are free, reserved and used per listing, never
the codes themselves (and needs no passphrase)."""

from __future__ import annotations

from pathlib import Path

import click

from client.commands.merchant_setup import SetupError, inventory_passphrase, load_merchant_config
from client.merchant.inventory import MAX_IMPORT_BYTES, Inventory, parse_codes
from client.merchant.inventory_crypto import InventoryError, create_inventory_key
from client.payloads import PayloadError, parse_id

config_option = click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False),
                             help="The agent's merchant.toml (its [agent] state_dir holds the codes).")
"""`--config merchant.toml`."""


@click.group("codes")
def codes() -> None:
    """The codes the agent delivers for digital listings (encrypted at rest)."""


@codes.command("add")
@config_option
@click.option("--listing", "listing_text", required=True, help="The digital listing's id (hex).")
@click.option("--file", "codes_file", required=True, type=click.Path(dir_okay=False, exists=True),
              help="A text file with one code per line (blank lines skipped).")
def add(config_path: str, listing_text: str, codes_file: str) -> None:
    """Import codes for a digital listing: each is delivered once, to one unit of one order."""
    config = load_merchant_config(config_path)
    try:
        listing = parse_id(listing_text, "--listing")
    except PayloadError as error:
        raise click.BadParameter(str(error), param_hint="--listing") from None
    path = Path(codes_file)
    if path.stat().st_size > MAX_IMPORT_BYTES:
        raise SetupError(f"{path} is larger than {MAX_IMPORT_BYTES} bytes: split it")
    try:
        parsed = parse_codes(path.read_text(encoding="utf-8"))
        key = create_inventory_key(config.inventory_dir, inventory_passphrase())
        added = Inventory(config.inventory_dir, key).add_codes(listing, parsed)
    except UnicodeDecodeError:
        raise SetupError(f"{path} is not UTF-8 text") from None
    except InventoryError as error:
        raise SetupError(f"{path}: {error}" if "line" in str(error) else str(error)) from None
    click.echo(f"imported {added} code(s) for listing {listing.hex()} into {config.inventory_dir}")
    if listing not in config.digital_listings:
        click.echo(f"note: listing {listing.hex()} is not in a [[digital]] table of {config_path}: "
                   "the agent does not deliver its orders until it is", err=True)


@codes.command("list")
@config_option
def list_codes(config_path: str) -> None:
    """Free, reserved and used codes per listing (never the codes)."""
    config = load_merchant_config(config_path)
    counts = Inventory(config.inventory_dir).counts() if config.inventory_dir.is_dir() else []
    if not counts:
        click.echo("no codes imported yet (marketchain merchant codes add)")
        return
    click.echo(f"{'listing':<64}  {'free':>8}  {'reserved':>8}  {'used':>8}")
    for row in counts:
        click.echo(f"{row.listing:<64}  {row.free:>8}  {row.reserved:>8}  {row.used:>8}")




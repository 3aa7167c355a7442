"""`marketchain keys`: local signing keys, encrypted with a passphrase or plain dev keys."""

from __future__ import annotations

from pathlib import Path

import click

from client.commands.common import echo_json, fail, passphrase
from client.formatting import column_table, key_value_table
from client.keystore import Keystore, KeystoreError


@click.group()
def keys() -> None:
    """Manage local signing keys (encrypted with a passphrase, or plain dev keys)."""


keystore_option = click.option(
    "--keystore", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Keystore directory (default: $MARKETCHAIN_KEYSTORE or ~/.marketchain/keys).",
)
"""`--keystore DIR`, passed as `keystore`."""


@keys.command("new")
@click.argument("name")
@click.option("--plain", is_flag=True, help="Store the seed unencrypted (dev keys only).")
@keystore_option
def keys_new(name: str, plain: bool, keystore: Path | None) -> None:
    """Create a key NAME and print its address."""
    store = Keystore(keystore)
    secret = None if plain else passphrase("Passphrase", confirm=True)
    try:
        key = store.create(name, secret)
    except KeystoreError as error:
        fail(error.message)
    click.echo(f"{name}  {key.address.hex()}  ({'plain' if plain else 'encrypted'}, {store.path_of(name)})")


@keys.command("import")
@click.argument("name")
@click.option("--seed", "seed_hex", required=True, help="The 32-byte secret seed in hex.")
@click.option("--plain", is_flag=True, help="Store the seed unencrypted (dev keys only).")
@keystore_option
def keys_import(name: str, seed_hex: str, plain: bool, keystore: Path | None) -> None:
    """Import a key from its secret seed."""
    store = Keystore(keystore)
    secret = None if plain else passphrase("Passphrase", confirm=True)
    try:
        key = store.import_seed(name, seed_hex, secret)
    except KeystoreError as error:
        fail(error.message)
    click.echo(f"{name}  {key.address.hex()}")


@keys.command("list")
@keystore_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def keys_list(keystore: Path | None, as_json: bool) -> None:
    """List the keys in the keystore."""
    store = Keystore(keystore)
    try:
        infos = [store.info(name) for name in store.names()]
    except KeystoreError as error:
        fail(error.message)
    if as_json:
        echo_json([{"name": i.name, "address": i.address.hex(), "encrypted": i.encrypted} for i in infos])
    elif not infos:
        click.echo(f"no keys in {store.directory}; create one with `marketchain keys new NAME`")
    else:
        click.echo(column_table(
            ["name", "address", "encrypted"],
            [[i.name, i.address.hex(), "yes" if i.encrypted else "no"] for i in infos],
        ))


@keys.command("show")
@click.argument("name")
@keystore_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def keys_show(name: str, keystore: Path | None, as_json: bool) -> None:
    """Show a key's address (never its secret)."""
    try:
        info = Keystore(keystore).info(name)
    except KeystoreError as error:
        fail(error.message)
    view = {"name": info.name, "address": info.address.hex(), "encrypted": info.encrypted, "path": str(info.path)}
    if as_json:
        echo_json(view)
    else:
        click.echo(key_value_table(list(view.items())))

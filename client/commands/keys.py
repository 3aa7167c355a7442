"""`marketchain keys`: local signing keys, encrypted with a passphrase or plain dev keys."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from client.commands.common import echo_json, fail, new_passphrase, passphrase
from client.formatting import column_table, key_value_table
from client.keystore import Keystore, KeystoreError, read_key_info


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
    secret = None if plain else new_passphrase()
    try:
        key = store.create(name, secret)
    except KeystoreError as error:
        fail(error.message)
    click.echo(f"{name}  {key.address.hex()}  ({'plain' if plain else 'encrypted'}, {store.path_of(name)})")


@keys.command("import")
@click.argument("name")
@click.option("--seed", "seed_hex", default=None, help="The 32-byte secret seed in hex.")
@click.option("--file", "source", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="A key file, e.g. one made by `keys export` (stored as it is, once it opens).")
@click.option("--plain", is_flag=True, help="Store the seed unencrypted (dev keys only).")
@keystore_option
def keys_import(name: str, seed_hex: str | None, source: Path | None, plain: bool, keystore: Path | None) -> None:
    """Import a key from its secret seed or from a key file."""
    if (seed_hex is None) == (source is None):
        fail("give exactly one of --seed and --file")
    store = Keystore(keystore)
    try:
        if source is not None:
            encrypted = read_key_info(source).encrypted
            key = store.import_file(name, source, passphrase(f"Passphrase of {source}") if encrypted else None)
        else:
            key = store.import_seed(name, seed_hex or "", None if plain else new_passphrase())
    except KeystoreError as error:
        fail(error.message)
    click.echo(f"{name}  {key.address.hex()}")


@keys.command("export")
@click.argument("name")
@click.option("--out", "target", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The new file to write (never overwritten).")
@keystore_option
def keys_export(name: str, target: Path, keystore: Path | None) -> None:
    """Write key NAME to a file, always encrypted (a plain dev key asks for a new passphrase)."""
    store = Keystore(keystore)
    try:
        encrypted = store.info(name).encrypted
        store.export(name, target, None if encrypted else new_passphrase("Passphrase for the exported file"))
    except KeystoreError as error:
        fail(error.message)
    click.echo(f"exported {name} to {target} (encrypted; import it with `marketchain keys import NAME --file "
               f"{target}`)")


@keys.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask: delete it.")
@keystore_option
def keys_delete(name: str, yes: bool, keystore: Path | None) -> None:
    """Delete key NAME for good (export it first if its account holds anything)."""
    store = Keystore(keystore)
    try:
        info = store.info(name)
        if not yes:
            if not sys.stdin.isatty():
                fail(f"deleting key {name} ({info.address.hex()}) cannot be undone: pass --yes")
            click.confirm(f"Delete key {name} ({info.address.hex()}) for good?", abort=True)
        store.delete(name)
    except KeystoreError as error:
        fail(error.message)
    click.echo(f"deleted {name}  {info.address.hex()}")


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

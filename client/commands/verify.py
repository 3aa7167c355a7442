"""`marketchain verify`: check finality proofs locally instead of trusting the node (R7, R23-R26)."""

from __future__ import annotations

from pathlib import Path

import click

from client.commands.common import call, echo_json, fail, json_option, node_client, node_option
from client.formatting import key_value_table
from client.verification import (
    GenesisFileError,
    VerificationFailed,
    read_genesis_file,
    verify_transaction,
)


@click.group()
def verify() -> None:
    """Check finality proofs locally instead of trusting the node."""


@verify.command("tx")
@click.argument("tx_hash")
@click.option("--genesis", "genesis_file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Trust anchor: take the validator set from this genesis file, not from the node.")
@node_option
@json_option
def verify_tx(tx_hash: str, genesis_file: Path | None, node_url: str, as_json: bool) -> None:
    """Verify a transaction's inclusion proof against its block's commit signatures."""
    try:
        genesis = read_genesis_file(genesis_file) if genesis_file else None
    except GenesisFileError as error:
        fail(str(error))
    try:
        result = call(verify_transaction, node_client(node_url), tx_hash.lower(), genesis)
    except VerificationFailed as error:
        fail(f"NOT verified: {error}")
    view = {"tx": result.tx_hash, "verified": True, "height": result.height, "block_hash": result.block_hash,
            "signatures": f"{result.signers} of {result.validators} validators"}
    if as_json:
        echo_json(view)
    else:
        click.echo(key_value_table(list(view.items())))

"""`marketchain verify`: check finality and state proofs locally instead of trusting the node
(R7, R23-R26; R36-R38 for the state commands of `client.commands.verify_state`)."""

from __future__ import annotations

from pathlib import Path

import click

from client.commands.common import call, echo_json, fail, json_option, node_client, node_option
from client.commands.verify_state import STATE_COMMANDS
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
              help="Trust anchor: verify the block's header from this genesis file through every "
                   "validator-set change (R37), instead of trusting the node's validator list.")
@node_option
@json_option
def verify_tx(tx_hash: str, genesis_file: Path | None, node_url: str, as_json: bool) -> None:
    """Verify a transaction's inclusion proof against its block's commit signatures.

    With --genesis the signing set is the light client's (R37, from the genesis file);
    without it, the set the node names.
    """
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
        echo_json({**view, "trust": "genesis" if result.from_genesis else "node"})
    else:
        trust = ("the genesis file (R37)" if result.from_genesis
                 else "the node's validator list (pass --genesis FILE to verify from the genesis)")
        click.echo(key_value_table([*view.items(), ("validators from", trust)]))


for state_command in STATE_COMMANDS:
    verify.add_command(state_command)

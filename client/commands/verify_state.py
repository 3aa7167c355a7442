"""`marketchain verify account|order|state|shop|listing|item`: a value of the state, proven (R36)
against a header verified from the genesis file (R37), never trusting the node (R38).

Exit status: 0 verified; 1 the node's answer did not verify (the message names the rule and
step) or the node failed; 2 a usage error, such as no `--genesis` (without a trust anchor
nothing can be verified).
"""

from __future__ import annotations

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
    node_client,
    node_option,
)
from client.commands.types import ID, ITEM_ID
from client.formatting import format_amount, format_value, key_value_table
from client.state_verification import (
    StateVerificationFailed,
    VerifiedState,
    verify_account,
    verify_item,
    verify_listing,
    verify_order,
    verify_shop,
    verify_state_key,
)
from client.verification import GenesisFileError, read_genesis_file
from marketplace_tx.chain.genesis import Genesis

ABSENT = "absent (proven)"
"""What a verified absence prints as."""

ORDER_FIELDS = ("state", "escrow", "buyer", "shop_id")
"""The order fields shown first (R35 names them as in §10)."""


def jsonable(value: Any) -> Any:
    """`value` with bytes as hex (R5), recursively, for `--json` and the tables."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list):
        return [jsonable(item) for item in value]
    if isinstance(value, dict):
        return {name: jsonable(item) for name, item in value.items()}
    return value


def _genesis(genesis_file: Path | None) -> Genesis:
    """The trust anchor, or a usage error (exit 2) saying why it is needed."""
    if genesis_file is None:
        raise click.UsageError("--genesis FILE is required: the genesis file is the trust anchor; without it the "
                               "validators that sign headers would come from the node being checked, so nothing "
                               "could be verified (R37). Use the chain's genesis.json (e.g. from a node home).")
    try:
        return read_genesis_file(genesis_file)
    except GenesisFileError as error:
        fail(f"--genesis: {error}")


def state_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """`--genesis FILE`, `--height H`, `--node`, `--json`."""
    function = json_option(function)
    function = node_option(function)
    function = click.option("--height", type=click.IntRange(1), default=None,
                            help="Verify the state after this block (default: the node's latest).")(function)
    return click.option("--genesis", "genesis_file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
                        default=None, help="The chain's genesis file: the trust anchor (required).")(function)


def _run(verify: Callable[..., VerifiedState], subject: Any, genesis: Genesis, height: int | None,
         node_url: str) -> VerifiedState:
    """Verify, turning a failed check into `NOT verified: …` (exit 1)."""
    try:
        return call(verify, node_client(node_url), genesis, subject, height)
    except StateVerificationFailed as error:
        fail(f"NOT verified: {error}")


def proof_rows(result: VerifiedState) -> list[tuple[str, Any]]:
    """The rows every verification prints: the header it was checked against and who signed it."""
    header = result.header
    return [
        ("verified", f"against block {header.height} (R37 from the genesis file, through "
                     f"{result.change_points} validator-set change(s))"),
        ("block height", header.height),
        ("block hash", header.block_hash.hex()),
        ("state root", header.header.state_root.hex()),
        ("signers", f"{len(header.signers)} of {len(header.validators)} validators"),
    ]


def result_json(result: VerifiedState, **fields: Any) -> dict[str, Any]:
    """The `--json` view: the value, the decoded fields, the header and its signers."""
    header = result.header
    decoded = result.decoded()
    return {"verified": True, "key": result.key.hex(), "present": result.value is not None,
            "value": None if result.value is None else result.value.hex(), "decoded": jsonable(decoded),
            "height": header.height, "block_hash": header.block_hash.hex(),
            "state_root": header.header.state_root.hex(), "signers": [signer.hex() for signer in header.signers],
            "validators": len(header.validators), "change_points": result.change_points, **fields}


def record_rows(result: VerifiedState, first: tuple[str, ...] = ()) -> list[tuple[str, Any]]:
    """A decoded record's fields (those in `first` first), or `absent (proven)`."""
    decoded = jsonable(result.decoded())
    if result.value is None:
        return [("value", ABSENT)]
    if not isinstance(decoded, dict):
        return [("value", result.value.hex() or '"" (empty)')]
    names = [name for name in first if name in decoded] + [name for name in decoded if name not in first]
    return [(name, _field_text(name, decoded[name])) for name in names]


def _field_text(name: str, value: Any) -> str:
    """One decoded field for the table: a list of records is counted (`--json` shows them)."""
    if isinstance(value, list) and any(isinstance(item, dict) for item in value):
        return f"{len(value)} entries (--json shows them)"
    return format_value(name, value)


def show(result: VerifiedState, as_json: bool, rows: list[tuple[str, Any]], **fields: Any) -> None:
    """Print the verified value and the header it was checked against."""
    if as_json:
        echo_json(result_json(result, **fields))
    else:
        click.echo(key_value_table(rows + proof_rows(result)))


@click.command("account")
@click.argument("account")
@state_options
def verify_account_command(account: str, genesis_file: Path | None, height: int | None, node_url: str,
                           as_json: bool) -> None:
    """Verify ACCOUNT's balance and nonce (address, key name or key file) from the genesis file."""
    genesis = _genesis(genesis_file)  # a missing trust anchor is named first (exit 2)
    address = account_address(account)
    result = _run(verify_account, address, genesis, height, node_url)
    decoded = result.decoded() or {}
    balance, nonce = decoded.get("balance", 0), decoded.get("nonce", 0)
    rows = [("account", address.hex()), ("balance", format_amount(balance)), ("nonce", nonce)]
    if result.value is None:
        rows.append(("record", f"{ABSENT}: balance and nonce are 0"))
    show(result, as_json, rows, address=address.hex(), balance=balance, nonce=nonce)


@click.command("order")
@click.argument("order_id", type=ID)
@state_options
def verify_order_command(order_id: bytes, genesis_file: Path | None, height: int | None, node_url: str,
                         as_json: bool) -> None:
    """Verify order ORDER_ID's state and escrow from the genesis file."""
    result = _run(verify_order, order_id, _genesis(genesis_file), height, node_url)
    show(result, as_json, [("order", order_id.hex()), *record_rows(result, ORDER_FIELDS)])


@click.command("state")
@click.argument("key")
@state_options
def verify_state_command(key: str, genesis_file: Path | None, height: int | None, node_url: str,
                         as_json: bool) -> None:
    """Verify any state KEY (hex, R35) from the genesis file."""
    try:
        raw_key = bytes.fromhex(key.removeprefix("0x"))
    except ValueError:
        raise click.BadParameter(f"{key!r} is not hex (a state key of R35, e.g. 61 ‖ address)",
                                 param_hint="KEY") from None
    if not raw_key:
        raise click.BadParameter("the key is empty", param_hint="KEY")
    result = _run(verify_state_key, raw_key, _genesis(genesis_file), height, node_url)
    rows = [("key", raw_key.hex()), *record_rows(result)]
    if result.value is not None and isinstance(result.decoded(), dict):
        rows.insert(1, ("value (hex)", result.value.hex()))
    show(result, as_json, rows)


def _object_command(name: str, verify: Callable[..., VerifiedState], id_type: click.ParamType,
                    describe: str) -> click.Command:
    """`verify shop|listing|item ID`: the record, proven."""

    @click.command(name)
    @click.argument("object_id", metavar="ID", type=id_type)
    @state_options
    def command(object_id: Any, genesis_file: Path | None, height: int | None, node_url: str,
                as_json: bool) -> None:
        result = _run(verify, object_id, _genesis(genesis_file), height, node_url)
        shown = object_id.hex() if isinstance(object_id, bytes) else object_id
        show(result, as_json, [(name, shown), *record_rows(result)])

    command.help = f"Verify {describe} from the genesis file."
    return command


verify_shop_command = _object_command("shop", verify_shop, ID, "shop ID")
"""`marketchain verify shop ID`."""
verify_listing_command = _object_command("listing", verify_listing, ID, "listing ID")
"""`marketchain verify listing ID`."""
verify_item_command = _object_command("item", verify_item, ITEM_ID, "item ID (owner, custodian)")
"""`marketchain verify item ID`."""

STATE_COMMANDS = (verify_account_command, verify_order_command, verify_state_command, verify_shop_command,
                  verify_listing_command, verify_item_command)
"""The commands `client.commands.verify` adds to the `verify` group."""

"""How every `marketchain tx` command ends: check the payload (R10), sign locally, submit,
and with `--wait` print the receipt; plus the options they share."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from client import payloads
from client.commands.common import call, echo_json, fail, load_signing_key, node_client
from client.commands.types import AMOUNT, ID
from client.formatting import AMOUNT_FIELDS, format_amount, format_value, key_value_table
from client.money import render_money_message
from client.node_client import DEFAULT_NODE_URL
from client.payloads import CREATED_OBJECTS, PayloadError
from client.transactions import build_transaction
from marketplace_tx.primitives.crypto import KeyPair
from marketplace_tx.primitives.errors import RuleError
from marketplace_tx.rules.schema import check_payload


def send(tx_type: str, payload: dict[str, Any], key_reference: str, node_url: str, fee: int | None,
         nonce: int | None, wait: bool, as_json: bool, key: KeyPair | None = None) -> None:
    """Check, sign locally, submit; with `wait`, print the receipt and the id of what it created.

    Exits 1 when the transaction is final but its rule failed.
    """
    try:
        check_payload(tx_type, payload)
    except RuleError as error:
        fail(f"{error.code}: {error.message}")
    key = key or load_signing_key(key_reference)
    client = node_client(node_url)
    tx = call(build_transaction, client, key, tx_type, payload, nonce, fee)
    tx_hash = call(client.submit, tx.raw)
    created = CREATED_OBJECTS.get(tx_type)
    if not wait:
        if as_json:
            echo_json({"hash": tx_hash, **({created.replace(" ", "_"): tx_hash} if created else {})})
        else:
            click.echo(tx_hash)
        if created and not as_json:
            click.echo(f"{created}: {tx_hash} (exists once the transaction is final; --wait waits for it)", err=True)
        return
    view = call(client.wait_for_tx, tx_hash)
    ok = view["result"]["ok"]
    if as_json:
        if created and ok:
            view = {**view, created.replace(" ", "_"): tx_hash}
        echo_json(view)
    else:
        print_tx(view)
        if created and ok:
            click.echo(f"{created}: {tx_hash}")
        elif tx_type == "item_register" and ok:
            click.echo(f"item id: {payload['item_id']}")
    if not ok:
        sys.exit(1)


def print_tx(view: dict[str, Any]) -> None:
    """A transaction view of the node (`GET /txs/{hash}`) as a name/value table."""
    rows: list[tuple[str, Any]] = [
        ("hash", view["hash"]), ("status", view["status"]), ("type", view["type"]),
        ("sender", view["sender"]), ("nonce", view["nonce"]), ("fee", format_amount(view["fee"])),
    ]
    if view["status"] == "committed":
        result = view["result"]
        rows += [("height", view["height"]), ("index", view["index"]),
                 ("result", "ok" if result["ok"] else
                  f"failed: {result['code']}: {render_money_message(result['message'])}")]
    rows += [(f"payload.{name}", format_value(name, value) if name in AMOUNT_FIELDS else value)
             for name, value in view["payload"].items()]
    if view["status"] == "committed":
        rows += [(f"event {i}", _event_text(event)) for i, event in enumerate(view["result"]["events"])]
    click.echo(key_value_table(rows))


def _event_text(event: dict[str, Any]) -> str:
    """An event as JSON, its µMKT fields shown in MKT (`"amount": "2 MKT (2000000 µMKT)"`)."""
    return json.dumps({name: format_value(name, value) if name in AMOUNT_FIELDS and isinstance(value, int)
                       else value for name, value in event.items()}, ensure_ascii=False)


def tx_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """The options every `tx` command takes: --key, --node, --fee, --nonce, --wait, --json."""
    options = [
        click.option("--key", "key_reference", envvar="MARKETCHAIN_KEY", required=True,
                     help="Signing key: keystore name or key file path ($MARKETCHAIN_KEY)."),
        click.option("--node", "node_url", envvar="MARKETCHAIN_NODE", default=DEFAULT_NODE_URL, show_default=True,
                     help="Node API URL ($MARKETCHAIN_NODE)."),
        click.option("--fee", type=AMOUNT, default=None,
                     help="Fee with its unit, e.g. 0.01MKT or 10µMKT (default: the chain's min_fee)."),
        click.option("--nonce", type=click.IntRange(0), default=None, help="Nonce (default: the next one)."),
        click.option("--wait", is_flag=True, help="Wait until final and show the receipt."),
        click.option("--json", "as_json", is_flag=True, help="Print JSON."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def order_option(function: Callable[..., Any]) -> Callable[..., Any]:
    """`--order ID` (required), passed as `order_id`."""
    return click.option("--order", "order_id", required=True, type=ID, help="Order id (64 hex).")(function)


def reason_option(function: Callable[..., Any]) -> Callable[..., Any]:
    """`--reason TEXT` (required)."""
    return click.option("--reason", required=True, help="Why, up to 256 bytes of text.")(function)


def build(builder: Callable[..., dict[str, Any]], *arguments: Any, **keywords: Any) -> dict[str, Any]:
    """Run a payload builder of `client.payloads`, turning its error into a CLI error."""
    try:
        return builder(*arguments, **keywords)
    except PayloadError as error:
        fail(str(error))


def document_hash(path: Path | None, hash_text: str | None, option: str) -> bytes | None:
    """SHA-256 of a file (only the hash goes on chain), or a hash given in hex."""
    try:
        return payloads.one_hash(path.read_bytes() if path else None, hash_text, option)
    except PayloadError as error:
        fail(str(error))
    except OSError as error:
        fail(f"{option}: cannot read {path}: {error}")

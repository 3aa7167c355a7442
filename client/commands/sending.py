"""How every `marketchain tx` command ends: check the payload (R10), sign locally, submit,
and with `--wait` print the receipt; plus the options they share."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from client import payloads
from client.commands.common import (
    call,
    client_error_text,
    echo_json,
    fail,
    load_signing_key,
    node_client,
    with_key_names,
)
from client.commands.types import AMOUNT, ID
from client.formatting import AMOUNT_FIELDS, format_amount, format_value, key_value_table
from client.money import render_money_message
from client.node_client import DEFAULT_NODE_URL, ClientError, NodeClient
from client.nonces import lock_path_of, submit_with_fresh_nonce
from client.payloads import CREATED_OBJECTS, PayloadError
from client.preflight import Refused, check_before_signing
from client.transactions import DEFAULT_WAIT_SECONDS
from marketplace_tx.primitives.crypto import KeyPair
from marketplace_tx.primitives.errors import RuleError
from marketplace_tx.rules.schema import check_payload


def send(tx_type: str, payload: dict[str, Any], key_reference: str, node_url: str, fee: int | None,
         nonce: int | None, wait: bool, as_json: bool, timeout: float = DEFAULT_WAIT_SECONDS,
         dry_run: bool = False, force: bool = False, key: KeyPair | None = None) -> None:
    """Check, sign locally, submit; by default wait until final and print the receipt and the id
    of what it created (`--no-wait`: print the hash, say it is not final yet, exit 0).

    Before signing, the state the transaction needs is read and a transaction the chain would
    refuse is refused here, naming the rule (`--force` sends it anyway); `--dry-run` prints what
    it would do and sends nothing. The nonce is allocated under the key's lock and, when the CLI chose it, re-chosen after a
    `bad_nonce` or `duplicate` refusal (R7). Exits 1 when the transaction is final but its rule
    failed (R11), naming the code and message.
    """
    try:
        check_payload(tx_type, payload)
    except RuleError as error:
        fail(f"{error.code}: {error.message}")
    key = key or load_signing_key(key_reference)
    client = node_client(node_url)
    effects = preflight(client, key.address, tx_type, payload, fee, force)
    if dry_run:
        if as_json:
            echo_json({"dry_run": True, "type": tx_type, "sender": key.address.hex(), "effects": effects})
        else:
            click.echo("\n".join([f"dry run: {tx_type} from {key.address.hex()}", *[f"  {line}" for line in effects],
                                   "nothing was signed or sent"]))
        return
    try:
        tx = submit_with_fresh_nonce(client, key, tx_type, payload, nonce, fee,
                                     lock_path_of(key_reference, key.address))
    except ClientError as error:
        fail(client_error_text(error, nonce_given=nonce is not None))
    tx_hash = tx.hash.hex()
    created = CREATED_OBJECTS.get(tx_type)
    if not wait:
        if as_json:
            echo_json({"hash": tx_hash, "status": "submitted",
                       **({created.replace(" ", "_"): tx_hash} if created else {})})
        else:
            click.echo(tx_hash)
        click.echo(f"submitted, not final yet: look it up with `marketchain query tx {tx_hash}`"
                   + (f"; the {created} exists once it is final" if created else ""), err=True)
        return
    view = call(wait_with_progress, client, tx_hash, timeout, tx.raw)
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
        result = view["result"]
        fail(f"{result['code']}: {render_money_message(result.get('message', ''))} (the transaction is final "
             f"but its rule failed: only the fee of {format_amount(view['fee'])} was paid)")


def preflight(client: NodeClient, sender: bytes, tx_type: str, payload: dict[str, Any], fee: int | None,
              force: bool) -> list[str]:
    """`check_before_signing`, failing with its rule and advice unless `force` (then only a warning)."""
    try:
        return check_before_signing(client, sender, tx_type, payload, fee)
    except Refused as refusal:
        if not force:
            fail(refusal.text())
        click.echo(f"warning: {refusal.code}: {refusal.message} ({refusal.rule}); sending anyway (--force)",
                   err=True)
        return []
    except ClientError as error:
        fail(client_error_text(error))


def wait_with_progress(client: NodeClient, tx_hash: str, timeout: float, raw: bytes) -> dict[str, Any]:
    """Wait until `tx_hash` is final, sending `raw` again if the node lost it (e.g. restarted);
    on a terminal, show a spinner with its status and the time waited."""
    if not sys.stderr.isatty():
        return client.wait_for_tx(tx_hash, timeout, resend=raw)
    console = Console(stderr=True)
    where = {"pending": "pending in the mempool", "not_found": "not seen by the node yet",
             "unreachable": "the node is unreachable, retrying", "sent again": "the node had lost it: sent again"}
    with console.status(f"waiting for {tx_hash[:16]}… to be final") as spinner:
        def show(status: str, elapsed: float) -> None:
            """Put the status and the time waited on the spinner."""
            spinner.update(f"waiting for {tx_hash[:16]}… to be final: {where.get(status, status)}, "
                           f"{elapsed:.0f} s of {timeout:.0f} s")
        return client.wait_for_tx(tx_hash, timeout, on_poll=show, resend=raw)


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
    click.echo(with_key_names(key_value_table(rows)))


def _event_text(event: dict[str, Any]) -> str:
    """An event as JSON, its µMKT fields shown in MKT (`"amount": "2 MKT (2000000 µMKT)"`)."""
    return json.dumps({name: format_value(name, value) if name in AMOUNT_FIELDS and isinstance(value, int)
                       else value for name, value in event.items()}, ensure_ascii=False)


def tx_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """The options every `tx` command takes: --key, --node, --fee, --nonce, --wait/--no-wait, --timeout, --json,
    --dry-run, --force."""
    options = [
        click.option("--key", "key_reference", envvar="MARKETCHAIN_KEY", required=True,
                     help="Signing key: keystore name or key file path ($MARKETCHAIN_KEY)."),
        click.option("--node", "node_url", envvar="MARKETCHAIN_NODE", default=DEFAULT_NODE_URL, show_default=True,
                     help="Node API URL ($MARKETCHAIN_NODE)."),
        click.option("--fee", type=AMOUNT, default=None,
                     help="Fee with its unit, e.g. 0.01MKT or 10µMKT (default: the chain's min_fee)."),
        click.option("--nonce", type=click.IntRange(0), default=None, help="Nonce (default: the next one)."),
        click.option("--wait/--no-wait", default=True, show_default=True,
                     help="Wait until final and show the receipt; --no-wait prints the hash and returns."),
        click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=DEFAULT_WAIT_SECONDS,
                     show_default=True, help="Seconds to wait for finality."),
        click.option("--json", "as_json", is_flag=True, help="Print JSON."),
        click.option("--dry-run", is_flag=True, help="Check and print what it would do; sign and send nothing."),
        click.option("--force", is_flag=True,
                     help="Send even when the check before signing says the chain would refuse it (the fee is paid)."),
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

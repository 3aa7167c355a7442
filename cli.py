"""`marketchain`: the command line of the marketchain node (PROTOCOL §11).

Signing commands sign locally; keys never leave the machine. Reads talk to a node
over HTTP (`--node`, or `MARKETCHAIN_NODE`, default http://127.0.0.1:26657).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import click

from marketplace_tx.crypto import KeyPair
from marketplace_tx.errors import RuleError
from marketplace_tx.params import Params
from marketplace_tx.schema import ROLES, check_payload
from marketplace_tx.transaction import sign_transaction
from node.client import DEFAULT_NODE_URL, ClientError, NodeClient
from node.config import ConfigError, HttpConfig, P2pConfig
from node.formatting import column_table, format_amount, key_value_table, parse_amount
from node.home import init_home, load_home, read_genesis
from node.keystore import Keystore, KeystoreError, load_key_file, read_key_info
from node.testnet import (
    TestnetError,
    create_testnet,
    start_testnet,
    stop_testnet,
    testnet_status,
)

PASSPHRASE_ENVIRONMENT_VARIABLE = "MARKETCHAIN_PASSPHRASE"


def _fail(message: str) -> None:
    raise click.ClickException(message)


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True))


def _parse_params(values: tuple[str, ...]) -> Params:
    overrides = {}
    for item in values:
        name, separator, value = item.partition("=")
        if not separator:
            _fail(f"--param {item!r}: write NAME=VALUE, e.g. --param min_fee=1")
        overrides[name.strip()] = value.strip()
    try:
        return Params().with_overrides(overrides)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--param") from None


def _address(text: str, what: str = "address") -> bytes:
    """An address from 64 hex characters, a keystore name or a key file path."""
    try:
        address = bytes.fromhex(text)
        if len(address) == 32:
            return address
    except ValueError:
        pass
    path = Path(text)
    try:
        if path.is_file():
            return read_key_info(path).address
        return Keystore().info(text).address
    except KeystoreError:
        pass
    _fail(f"{what} {text!r} is neither 64 hex characters, a key name nor a key file")
    raise AssertionError


def _passphrase(prompt: str, confirm: bool = False) -> str:
    value = os.environ.get(PASSPHRASE_ENVIRONMENT_VARIABLE)
    if value is not None:
        return value
    if not sys.stdin.isatty():
        _fail(f"a passphrase is needed: set {PASSPHRASE_ENVIRONMENT_VARIABLE} or run interactively")
    return click.prompt(prompt, hide_input=True, confirmation_prompt=confirm)


def _load_signing_key(reference: str) -> KeyPair:
    """The key named by --key: a key file path or a keystore name."""
    path = Path(reference)
    try:
        if path.is_file():
            info = read_key_info(path)
            return load_key_file(path, _passphrase(f"Passphrase for {path}") if info.encrypted else None)
        keystore = Keystore()
        info = keystore.info(reference)
        return keystore.load(reference, _passphrase(f"Passphrase for key {reference}") if info.encrypted else None)
    except KeystoreError as error:
        _fail(error.message)
        raise AssertionError from None


def _client(node: str) -> NodeClient:
    return NodeClient(node)


def _call(function, *args):  # type: ignore[no-untyped-def]
    try:
        return function(*args)
    except ClientError as error:
        hint = ""
        if error.code == "unreachable":
            hint = " (is a node running? start one with `marketchain testnet start` or pass --node)"
        _fail(f"{error.code}: {error.message}{hint}")


@click.group()
@click.version_option(package_name="marketchain")
def main() -> None:
    """marketchain: a peer-to-peer marketplace blockchain node."""


# --- keys ---------------------------------------------------------------------------


@main.group()
def keys() -> None:
    """Manage local signing keys (encrypted with a passphrase, or plain dev keys)."""


keystore_option = click.option(
    "--keystore", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Keystore directory (default: $MARKETCHAIN_KEYSTORE or ~/.marketchain/keys).",
)


@keys.command("new")
@click.argument("name")
@click.option("--plain", is_flag=True, help="Store the seed unencrypted (dev keys only).")
@keystore_option
def keys_new(name: str, plain: bool, keystore: Path | None) -> None:
    """Create a key NAME and print its address."""
    store = Keystore(keystore)
    passphrase = None if plain else _passphrase("Passphrase", confirm=True)
    try:
        key = store.create(name, passphrase)
    except KeystoreError as error:
        _fail(error.message)
        return
    click.echo(f"{name}  {key.address.hex()}  ({'plain' if plain else 'encrypted'}, {store.path_of(name)})")


@keys.command("import")
@click.argument("name")
@click.option("--seed", "seed_hex", required=True, help="The 32-byte secret seed in hex.")
@click.option("--plain", is_flag=True, help="Store the seed unencrypted (dev keys only).")
@keystore_option
def keys_import(name: str, seed_hex: str, plain: bool, keystore: Path | None) -> None:
    """Import a key from its secret seed."""
    store = Keystore(keystore)
    passphrase = None if plain else _passphrase("Passphrase", confirm=True)
    try:
        key = store.import_seed(name, seed_hex, passphrase)
    except KeystoreError as error:
        _fail(error.message)
        return
    click.echo(f"{name}  {key.address.hex()}")


@keys.command("list")
@keystore_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def keys_list(keystore: Path | None, as_json: bool) -> None:
    """List the keys in the keystore."""
    store = Keystore(keystore)
    infos = [store.info(name) for name in store.names()]
    if as_json:
        _echo_json([{"name": i.name, "address": i.address.hex(), "encrypted": i.encrypted} for i in infos])
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
        _fail(error.message)
        return
    view = {"name": info.name, "address": info.address.hex(), "encrypted": info.encrypted, "path": str(info.path)}
    click.echo(json.dumps(view, indent=2) if as_json else key_value_table(list(view.items())))


# --- init and node ------------------------------------------------------------------


@main.command("init")
@click.option("--home", required=True, type=click.Path(file_okay=False, path_type=Path), help="Node home directory.")
@click.option("--chain-id", default="marketchain-local", show_default=True, help="Chain id of a new chain.")
@click.option("--genesis", "genesis_file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Join an existing chain: copy this genesis instead of making a new one.")
@click.option("--http-port", default=26657, show_default=True, type=click.IntRange(0, 65535))
@click.option("--p2p-port", default=26656, show_default=True, type=click.IntRange(0, 65535))
@click.option("--moniker", default="node", show_default=True, help="Human name of the node.")
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE", help="Genesis parameter (new chain).")
@click.option("--fund", multiple=True, metavar="ADDRESS=AMOUNT", help="Fund an account in a new genesis.")
def init_command(home: Path, chain_id: str, genesis_file: Path | None, http_port: int, p2p_port: int,
                 moniker: str, params: tuple[str, ...], fund: tuple[str, ...]) -> None:
    """Create a node home: config.toml, node key, validator key and genesis."""
    accounts = {}
    for item in fund:
        address_text, separator, amount_text = item.partition("=")
        if not separator:
            _fail(f"--fund {item!r}: write ADDRESS=AMOUNT")
        try:
            accounts[_address(address_text)] = parse_amount(amount_text)
        except ValueError as error:
            _fail(f"--fund: {error}")
    try:
        genesis = read_genesis(genesis_file) if genesis_file else None
        created = init_home(
            home, chain_id=chain_id, genesis=genesis, params=_parse_params(params),
            http=HttpConfig(port=http_port), p2p=P2pConfig(port=p2p_port), moniker=moniker, accounts=accounts,
        )
    except ConfigError as error:
        _fail(str(error))
        return
    assert created.validator_key is not None
    click.echo(key_value_table([
        ("home", str(home)),
        ("chain_id", created.genesis.chain_id),
        ("genesis_hash", created.genesis.hash.hex()),
        ("validator", created.validator_key.address.hex()),
        ("node_id", created.node_key.address.hex()),
        ("http", f"http://127.0.0.1:{http_port}"),
    ]))
    click.echo(f"\nstart it with: marketchain node start --home {home}")


@main.group()
def node() -> None:
    """Run a node."""


@node.command("start")
@click.option("--home", required=True, type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--http-port", type=click.IntRange(0, 65535), default=None, help="Override [http] port.")
@click.option("--http-host", default=None, help="Override [http] host.")
@click.option("--log-level", default=None, type=click.Choice(["debug", "info", "warning", "error"]))
def node_start(home: Path, http_port: int | None, http_host: str | None, log_level: str | None) -> None:
    """Run a node in the foreground; SIGTERM or Ctrl-C stops it cleanly."""
    from node.node import run_node
    from node.storage import StorageError

    try:
        loaded = load_home(home, http_port=http_port, http_host=http_host)
    except ConfigError as error:
        _fail(str(error))
        return
    logging.basicConfig(
        level=(log_level or loaded.config.log.level).upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        asyncio.run(run_node(loaded))
    except StorageError as error:
        _fail(str(error))
    except OSError as error:
        _fail(f"cannot start: {error}")


# --- testnet and devnet -------------------------------------------------------------


@main.group()
def testnet() -> None:
    """Local multi-process testnets on loopback."""


@testnet.command("start")
@click.option("--nodes", "node_count", default=1, show_default=True, type=click.IntRange(1, 64))
@click.option("--home", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--base-port", default=26656, show_default=True, type=click.IntRange(1024, 65000))
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE", help="Genesis parameter.")
@click.option("--chain-id", default="marketchain-testnet", show_default=True)
def testnet_start(node_count: int, home: Path, base_port: int, params: tuple[str, ...], chain_id: str) -> None:
    """Start N validators in the background (or restart an existing testnet in HOME)."""
    try:
        if not (home / "testnet.json").exists():
            create_testnet(home, node_count, base_port, _parse_params(params), chain_id)
        elif params:
            click.echo("note: the testnet exists; --param applies only to a new one", err=True)
        nodes = start_testnet(home, progress=lambda n: click.echo(f"{n.name} serving {n.http}", err=True))
    except (TestnetError, ConfigError) as error:
        _fail(str(error))
        return
    click.echo(column_table(["name", "http", "p2p", "pid", "validator"],
                            [[n.name, n.http, n.p2p, n.pid, n.validator] for n in nodes]))
    click.echo(f"\ndev accounts: {home}/accounts/*.json   stop: marketchain testnet stop --home {home}")


@testnet.command("stop")
@click.option("--home", required=True, type=click.Path(file_okay=False, exists=True, path_type=Path))
def testnet_stop(home: Path) -> None:
    """Stop every node of the testnet (SIGTERM, then SIGKILL after 30 s)."""
    try:
        stopped = stop_testnet(home)
    except TestnetError as error:
        _fail(str(error))
        return
    click.echo(f"stopped {', '.join(stopped)}" if stopped else "no node was running")


@testnet.command("status")
@click.option("--home", required=True, type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def testnet_status_command(home: Path, as_json: bool) -> None:
    """Show each node's process, height and peers."""
    try:
        rows = testnet_status(home)
    except TestnetError as error:
        _fail(str(error))
        return
    if as_json:
        _echo_json(rows)
        return
    click.echo(column_table(
        ["name", "http", "pid", "running", "height", "peers"],
        [[r["name"], r["http"], r["pid"] or "-", "yes" if r["running"] else "no",
          r.get("height", "-"), r.get("peers", "-")] for r in rows],
    ))


@main.command("devnet")
@click.option("--home", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep the devnet in this directory (default: a fresh temporary one, removed on exit).")
@click.option("--nodes", "node_count", default=1, show_default=True, type=click.IntRange(1, 64))
@click.option("--base-port", default=26656, show_default=True, type=click.IntRange(1024, 65000))
def devnet(home: Path | None, node_count: int, base_port: int) -> None:
    """The one-command demo: a local testnet with demo data; Ctrl-C stops it."""
    import shutil
    import signal
    import tempfile

    from node.devnet import seed_demo_data

    temporary = home is None
    directory = Path(tempfile.mkdtemp(prefix="marketchain-devnet-")) if home is None else home
    fresh = not (directory / "testnet.json").exists()
    try:
        if fresh:
            create_testnet(directory, node_count, base_port, Params(), "marketchain-devnet")
        nodes = start_testnet(directory, progress=lambda n: click.echo(f"{n.name} serving {n.http}"))
    except (TestnetError, ConfigError) as error:
        if temporary:
            shutil.rmtree(directory, ignore_errors=True)
        _fail(str(error))
        return
    stop_requested = False

    def request_stop(signal_number: int, frame: Any) -> None:
        nonlocal stop_requested
        stop_requested = True

    # Installed explicitly: a process started in the background inherits SIGINT ignored.
    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        if fresh:
            click.echo("seeding demo data (roles with KYC evidence, transfers)…")
            seed_demo_data(nodes[0].http, directory / "accounts", click.echo)
        url = nodes[0].http
        click.echo(f"""
marketchain devnet is running ({len(nodes)} node(s), chain marketchain-devnet)
  explorer      {url}/
  API           {url}/status   {url}/blocks/latest
  dev accounts  {directory}/accounts/  (faucet is a funded registrar)
  try           marketchain query account {directory}/accounts/alice.json --node {url}
                marketchain tx transfer --key {directory}/accounts/alice.json --to {directory}/accounts/bob.json \\
                    --amount 1MKT --node {url} --wait
Press Ctrl-C to stop.""")
        while not stop_requested:
            time.sleep(0.2)
    except ClientError as error:
        click.echo(f"demo data failed: {error}", err=True)
    finally:
        click.echo("\nstopping the devnet…")
        stop_testnet(directory)
        if temporary:
            shutil.rmtree(directory, ignore_errors=True)


# --- transactions -------------------------------------------------------------------


def _send(tx_type: str, payload: dict[str, Any], key_reference: str, node_url: str, fee: int | None,
          nonce: int | None, wait: bool, as_json: bool) -> None:
    try:
        check_payload(tx_type, payload)
    except RuleError as error:
        _fail(f"{error.code}: {error.message}")
    key = _load_signing_key(key_reference)
    client = _client(node_url)
    status = _call(client.status)
    if nonce is None:
        nonce = _call(client.account, key.address)["pending_nonce"]
    tx = sign_transaction(key, status["chain_id"], tx_type, payload, nonce, fee if fee is not None else status["min_fee"])
    tx_hash = _call(client.submit, tx.raw)
    if not wait:
        _echo_json({"hash": tx_hash}) if as_json else click.echo(tx_hash)
        return
    view = _call(client.wait_for_tx, tx_hash)
    if as_json:
        _echo_json(view)
        return
    _print_tx(view)
    if not view["result"]["ok"]:
        sys.exit(1)


def _tx_options(function):  # type: ignore[no-untyped-def]
    options = [
        click.option("--key", "key_reference", envvar="MARKETCHAIN_KEY", required=True,
                     help="Signing key: keystore name or key file path ($MARKETCHAIN_KEY)."),
        click.option("--node", "node_url", envvar="MARKETCHAIN_NODE", default=DEFAULT_NODE_URL, show_default=True,
                     help="Node API URL ($MARKETCHAIN_NODE)."),
        click.option("--fee", type=click.IntRange(0), default=None, help="Fee in µMKT (default: the chain's min_fee)."),
        click.option("--nonce", type=click.IntRange(0), default=None, help="Nonce (default: the next one)."),
        click.option("--wait", is_flag=True, help="Wait until final and show the receipt."),
        click.option("--json", "as_json", is_flag=True, help="Print JSON."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


@main.group()
def tx() -> None:
    """Sign a transaction locally and send it to a node."""


class AmountType(click.ParamType):
    """An amount: `2.5MKT` or µMKT."""

    name = "amount"

    def convert(self, value, param, ctx):  # type: ignore[no-untyped-def]
        if isinstance(value, int):
            return value
        try:
            return parse_amount(value)
        except ValueError as error:
            self.fail(str(error), param, ctx)


@tx.command("transfer")
@click.option("--to", "recipient", required=True, help="Recipient: address, key name or key file.")
@click.option("--amount", required=True, type=AmountType(), help="e.g. 2.5MKT or 2500000 (µMKT).")
@click.option("--memo", default=None, help="Up to 256 bytes of text.")
@_tx_options
def tx_transfer(recipient: str, amount: int, memo: str | None, **common: Any) -> None:
    """Move µMKT to another account."""
    payload: dict[str, Any] = {"to": _address(recipient, "--to"), "amount": amount}
    if memo is not None:
        payload["memo"] = memo
    _send("transfer", payload, **common)


@tx.command("role-grant")
@click.option("--account", required=True, help="Account: address, key name or key file.")
@click.option("--role", required=True, type=click.Choice(ROLES))
@click.option("--evidence-file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="The KYC document; only its SHA-256 goes on chain.")
@click.option("--evidence-hash", default=None, help="SHA-256 of the KYC document, hex.")
@_tx_options
def tx_role_grant(account: str, role: str, evidence_file: Path | None, evidence_hash: str | None, **common: Any) -> None:
    """Grant a role after off-chain KYC (registrars only)."""
    if (evidence_file is None) == (evidence_hash is None):
        _fail("give exactly one of --evidence-file and --evidence-hash")
    if evidence_file is not None:
        digest = hashlib.sha256(evidence_file.read_bytes()).digest()
    else:
        try:
            digest = bytes.fromhex(evidence_hash or "")
        except ValueError:
            digest = b""
        if len(digest) != 32:
            _fail("--evidence-hash must be 64 hex characters")
    _send("role_grant", {"account": _address(account, "--account"), "role": role, "evidence_hash": digest}, **common)


@tx.command("role-revoke")
@click.option("--account", required=True, help="Account: address, key name or key file.")
@click.option("--role", required=True, type=click.Choice(ROLES))
@_tx_options
def tx_role_revoke(account: str, role: str, **common: Any) -> None:
    """Revoke a role (registrars only)."""
    _send("role_revoke", {"account": _address(account, "--account"), "role": role}, **common)


# --- queries ------------------------------------------------------------------------


node_option = click.option("--node", "node_url", envvar="MARKETCHAIN_NODE", default=DEFAULT_NODE_URL,
                           show_default=True, help="Node API URL ($MARKETCHAIN_NODE).")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


@main.group()
def query() -> None:
    """Read the chain from a node."""


@query.command("status")
@node_option
@json_option
def query_status(node_url: str, as_json: bool) -> None:
    """The node's chain, height and role."""
    status = _call(_client(node_url).status)
    _echo_json(status) if as_json else click.echo(key_value_table(list(status.items())))


@query.command("account")
@click.argument("account")
@node_option
@json_option
def query_account(account: str, node_url: str, as_json: bool) -> None:
    """Balance, nonce and roles of ACCOUNT (address, key name or key file)."""
    view = _call(_client(node_url).account, _address(account))
    if as_json:
        _echo_json(view)
        return
    click.echo(key_value_table([
        ("address", view["address"]),
        ("balance", format_amount(view["balance"])),
        ("nonce", view["nonce"]),
        ("pending nonce", view["pending_nonce"]),
        ("roles", ", ".join(view["roles"]) or "-"),
    ]))


def _print_tx(view: dict[str, Any]) -> None:
    rows: list[tuple[str, Any]] = [
        ("hash", view["hash"]), ("status", view["status"]), ("type", view["type"]),
        ("sender", view["sender"]), ("nonce", view["nonce"]), ("fee", f"{view['fee']} µMKT"),
    ]
    if view["status"] == "committed":
        result = view["result"]
        rows += [("height", view["height"]), ("index", view["index"]),
                 ("result", "ok" if result["ok"] else f"failed: {result['code']}: {result['message']}")]
    rows += [(f"payload.{name}", value) for name, value in view["payload"].items()]
    if view["status"] == "committed":
        rows += [(f"event {i}", json.dumps(event)) for i, event in enumerate(view["result"]["events"])]
    click.echo(key_value_table(rows))


@query.command("tx")
@click.argument("tx_hash")
@node_option
@json_option
def query_tx(tx_hash: str, node_url: str, as_json: bool) -> None:
    """A transaction and its receipt."""
    view = _call(_client(node_url).tx, tx_hash.lower())
    _echo_json(view) if as_json else _print_tx(view)


@query.command("block")
@click.argument("height", default="latest")
@node_option
@json_option
def query_block(height: str, node_url: str, as_json: bool) -> None:
    """A block (default: the latest)."""
    if height != "latest" and not (height.isascii() and height.isdigit()):
        _fail("HEIGHT is a block number or 'latest'")
    view = _call(_client(node_url).get, f"/blocks/{height}")
    if as_json:
        _echo_json(view)
        return
    header = view["header"]
    click.echo(key_value_table([
        ("height", view["height"]), ("hash", view["hash"]),
        ("time", f"{header['time']} ({time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(header['time'] / 1000))} UTC)"),
        ("proposer", header["proposer"]), ("txs", view["tx_count"]), ("tx_root", header["tx_root"]),
        ("state_root", header["state_root"]),
        ("commit", f"{len(view['commit']['signatures'])} signature(s), round {view['commit']['round']}"
         if view["commit"] else "-"),
    ] + [(f"tx {i}", tx_hash) for i, tx_hash in enumerate(view["txs"])]))


@main.group()
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
    from node.verification import VerificationFailed, verify_transaction

    try:
        genesis = read_genesis(genesis_file) if genesis_file else None
    except ConfigError as error:
        _fail(str(error))
        return
    try:
        result = _call(verify_transaction, _client(node_url), tx_hash.lower(), genesis)
    except VerificationFailed as error:
        _fail(f"NOT verified: {error}")
        return
    view = {"tx": result.tx_hash, "verified": True, "height": result.height, "block_hash": result.block_hash,
            "signatures": f"{result.signers} of {result.validators} validators"}
    _echo_json(view) if as_json else click.echo(key_value_table(list(view.items())))


if __name__ == "__main__":
    main()

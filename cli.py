"""`marketchain`: the command line of the marketchain node (PROTOCOL §11).

Signing commands sign locally; keys never leave the machine. Reads talk to a node
over HTTP (`--node`, or `MARKETCHAIN_NODE`, default http://127.0.0.1:26657).
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import json
import logging
import os
import re
import socket
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

import click

from client import payloads
from client.formatting import (
    account_txs_table,
    column_table,
    format_amount,
    format_value,
    item_view,
    key_value_table,
    listing_view,
    listings_table,
    order_view,
    orders_table,
    parse_amount,
    reputation_rows,
    reviews_view,
    shop_view,
    shops_table,
)
from client.keystore import Keystore, KeystoreError, load_key_file, read_key_info
from client.node_client import DEFAULT_NODE_URL, ClientError, NodeClient
from client.payloads import (
    CREATED_OBJECTS,
    PayloadError,
    parse_bps,
    parse_id,
    parse_item_id,
    parse_signed,
)
from client.progress import Steps, describe_sync, sync_summary, watch_sync
from client.sealing import SealError, open_sealed, seal_for
from client.testnet import (
    TestnetError,
    create_testnet,
    read_testnet,
    start_testnet,
    stop_testnet,
    testnet_status,
)
from marketplace_tx.chain.params import Params
from marketplace_tx.chain.transaction import sign_transaction
from marketplace_tx.primitives.crypto import KeyPair
from marketplace_tx.primitives.errors import RuleError
from marketplace_tx.rules.order_records import ORDER_STATES
from marketplace_tx.rules.schema import ROLES, SHIPMENT_STATUSES, check_payload
from node.config import (
    ConfigError,
    HttpConfig,
    NodeConfig,
    Override,
    P2pConfig,
    config_to_json,
    effective_config,
    environment_variable,
    option_names,
    parse_set_option,
    render_config,
)
from node.home import init_home, load_home, read_genesis
from node.logging_setup import FORMATS, configure_logging

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
    parsed = urllib.parse.urlparse(node)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        _fail(f"--node {node!r} is not a node URL: write e.g. {DEFAULT_NODE_URL} (or set MARKETCHAIN_NODE)")
    return NodeClient(node)


CLIENT_ERROR_HINTS = {
    "unreachable": " (is a node running? start one with `marketchain testnet start` or pass --node)",
    "not_found": " (ids are transaction hashes; an object exists once its transaction is final: "
                 "send with --wait, or check the id and --node)",
    "timeout": " (the node is up but slow or stalled; look it up later with `marketchain query tx HASH`)",
    "bad_nonce": " (another transaction of this key is pending or committed; omit --nonce to use the next one)",
    "fee_too_low": " (omit --fee to pay the chain's min_fee)",
}
"""What to do about a node error, by its code."""


def _client_error_text(error: ClientError) -> str:
    hint = CLIENT_ERROR_HINTS.get(error.code, "")
    where = f" [node {error.node}]" if error.node and error.code != "unreachable" else ""
    return f"{error.code}: {error.message}{where}{hint}"


def _call(function, *args):  # type: ignore[no-untyped-def]
    try:
        return function(*args)
    except ClientError as error:
        _fail(_client_error_text(error))


class _Commands(click.Group):
    """The root group: a user error that escaped a command is a one-line message, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (ConfigError, TestnetError) as error:
            raise click.ClickException(str(error)) from None
        except KeystoreError as error:
            raise click.ClickException(error.message) from None
        except ClientError as error:
            raise click.ClickException(_client_error_text(error)) from None
        except PermissionError as error:
            raise click.ClickException(f"permission denied: {error.filename or error}") from None


@click.group(cls=_Commands)
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
    try:
        infos = [store.info(name) for name in store.names()]
    except KeystoreError as error:
        _fail(error.message)
        return
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
    _echo_json(view) if as_json else click.echo(key_value_table(list(view.items())))


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
    """Run a node, or follow a node's block sync."""


set_option = click.option(
    "--set", "settings", multiple=True, metavar="SECTION.OPTION=VALUE",
    help="Override any config option, e.g. --set mempool.max_transactions=1000 (repeatable).",
)


def _listen_problem(config: NodeConfig) -> str | None:
    """Why the node could not listen on its configured ports, or None (checked before starting)."""
    for section, host, port in (("http", config.http.host, config.http.port),
                                ("p2p", config.p2p.host, config.p2p.port)):
        if port == 0:
            continue
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as error:
                return _listen_error_text(error, config, section, port)
    return None


def _listen_error_text(error: OSError, config: NodeConfig, section: str | None = None,
                       port: int | None = None) -> str:
    """`port 26657 is in use: change [http] port or pass --http-port`, and the like."""
    if section is None:
        match = re.search(r"\('?\[?([^'\]]*)\]?'?, (\d+)", str(error))
        port = int(match.group(2)) if match else None
        section = "p2p" if port is not None and port == config.p2p.port and port != config.http.port else "http"
    host = config.http.host if section == "http" else config.p2p.host
    flag = f"--{section}-port"
    variable = environment_variable(f"{section}.port")
    if error.errno == errno.EADDRINUSE:
        return (f"port {port} is in use (address already in use by another node or program, for the "
                f"{section} listener): change [{section}] port in config.toml, set {variable}, or pass {flag}")
    if error.errno in (errno.EADDRNOTAVAIL, socket.EAI_NONAME) or isinstance(error, socket.gaierror):
        return (f"cannot listen on {host}:{port} ({section} listener): {error.strerror or error}; "
                f"change [{section}] host to an address of this machine (e.g. 127.0.0.1 or 0.0.0.0)")
    if error.errno == errno.EACCES:
        return (f"not allowed to listen on port {port} ({section} listener): ports below 1024 need privileges; "
                f"change [{section}] port or pass {flag}")
    return f"cannot listen on {host}:{port} ({section} listener): {error.strerror or error}"


def _node_overrides(http_port: int | None, http_host: str | None, p2p_port: int | None, p2p_host: str | None,
                    log_level: str | None, log_format: str | None, settings: tuple[str, ...]) -> list[Override]:
    overrides = [parse_set_option(item) for item in settings]
    for option, value, flag in (("http.port", http_port, "--http-port"), ("http.host", http_host, "--http-host"),
                                ("p2p.port", p2p_port, "--p2p-port"), ("p2p.host", p2p_host, "--p2p-host"),
                                ("log.level", log_level, "--log-level"), ("log.format", log_format, "--log-format")):
        if value is not None:
            overrides.append(Override(option, value, flag))
    return overrides


@node.command("start")
@click.option("--home", required=True, type=click.Path(file_okay=False, path_type=Path), help="Node home directory.")
@click.option("--http-port", type=click.IntRange(0, 65535), default=None, help="Override [http] port.")
@click.option("--http-host", default=None, help="Override [http] host.")
@click.option("--p2p-port", type=click.IntRange(0, 65535), default=None, help="Override [p2p] port.")
@click.option("--p2p-host", default=None, help="Override [p2p] host.")
@click.option("--log-level", default=None, metavar="SPEC",
              help="Override [log] level: a level (debug, info, warning, error) or per-logger levels, "
                   "e.g. p2p:debug,marketchain.consensus:info,*:warning.")
@click.option("--log-format", default=None, type=click.Choice(FORMATS), help="Override [log] format.")
@set_option
def node_start(home: Path, http_port: int | None, http_host: str | None, p2p_port: int | None,
               p2p_host: str | None, log_level: str | None, log_format: str | None,
               settings: tuple[str, ...]) -> None:
    """Run a node in the foreground; SIGTERM or Ctrl-C stops it cleanly.

    Options come from flags, then MARKETCHAIN_<SECTION>_<OPTION> environment variables,
    then HOME/config.toml, then the defaults (docs/configuration.md).
    """
    from node.node import run_node
    from node.storage import StorageError

    overrides = _node_overrides(http_port, http_host, p2p_port, p2p_host, log_level, log_format, settings)
    loaded = load_home(home, environ=os.environ, overrides=overrides)
    configure_logging(loaded.config.log.level, loaded.config.log.format)
    log = logging.getLogger("marketchain.node")
    applied = sorted(name for name in map(environment_variable, option_names()) if name in os.environ)
    if applied or overrides:
        log.info("configuration: %s/config.toml, overridden by %s", home,
                 ", ".join(applied + [override.source for override in overrides]))
    problem = _listen_problem(loaded.config)
    if problem:
        _fail(problem)
    try:
        asyncio.run(run_node(loaded))
    except StorageError as error:
        _fail(f"{error} (is another node running with --home {home}?)")
    except OSError as error:
        _fail(_listen_error_text(error, loaded.config) if error.errno else f"cannot start: {error}")


@node.command("sync-status")
@click.option("--node", "node_url", envvar="MARKETCHAIN_NODE", default=DEFAULT_NODE_URL, show_default=True,
              help="Node API URL ($MARKETCHAIN_NODE).")
@click.option("--watch", is_flag=True, help="Follow until the node has caught up with its peers.")
@click.option("--timeout", "timeout_s", type=click.FloatRange(0), default=None, help="With --watch: give up after S seconds.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or lines.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def node_sync_status(node_url: str, watch: bool, timeout_s: float | None, quiet: bool, as_json: bool) -> None:
    """A node's block sync: its height, the highest height its peers report, how far behind."""
    client = _client(node_url)
    if watch:
        try:
            summary = watch_sync(lambda: _call(client.status), quiet=quiet or as_json, timeout_s=timeout_s)
        except TimeoutError as error:
            _fail(f"{error} [node {node_url}]")
            return
    else:
        summary = sync_summary(_call(client.status))
    view = {"node": client.base_url, **summary}
    if as_json:
        _echo_json(view)
    else:
        click.echo(key_value_table([("node", view["node"]), ("state", describe_sync(summary)),
                                    ("height", summary["height"]), ("target", summary["target"]),
                                    ("behind", summary["behind"]), ("peers", summary["peers"])]))


# --- config -------------------------------------------------------------------------


@main.group()
def config() -> None:
    """A node's configuration (HOME/config.toml, MARKETCHAIN_* variables, flags)."""


@config.command("show")
@click.option("--home", required=True, type=click.Path(file_okay=False, path_type=Path), help="Node home directory.")
@set_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def config_show(home: Path, settings: tuple[str, ...], as_json: bool) -> None:
    """Print the effective configuration: defaults, then config.toml, then the environment, then --set.

    Keys are not configuration and are never printed.
    """
    effective = effective_config(home, os.environ, [parse_set_option(item) for item in settings])
    if as_json:
        _echo_json(config_to_json(effective))
        return
    click.echo(f"# effective configuration of {home} (defaults < config.toml < MARKETCHAIN_* environment < flags)")
    click.echo(render_config(effective).rstrip("\n"))


# --- testnet and devnet -------------------------------------------------------------


@main.group()
def testnet() -> None:
    """Local multi-process testnets on loopback."""


@testnet.command("start")
@click.option("--nodes", "node_count", default=4, show_default=True, type=click.IntRange(1, 64))
@click.option("--home", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--base-port", default=26656, show_default=True, type=click.IntRange(1024, 65000))
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE", help="Genesis parameter.")
@click.option("--chain-id", default="marketchain-testnet", show_default=True)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or lines on stderr.")
@click.option("--json", "as_json", is_flag=True, help="Print the nodes as JSON.")
def testnet_start(node_count: int, home: Path, base_port: int, params: tuple[str, ...], chain_id: str,
                  quiet: bool, as_json: bool) -> None:
    """Start N validators in the background (or restart an existing testnet in HOME)."""
    try:
        if not (home / "testnet.json").exists():
            create_testnet(home, node_count, base_port, _parse_params(params), chain_id)
        elif params:
            click.echo("note: the testnet exists; --param applies only to a new one", err=True)
        total = len(read_testnet(home)["nodes"])
        with Steps("nodes serving", total, quiet=quiet) as steps:
            nodes = start_testnet(home, progress=lambda n: steps.advance(f"{n.name} serving {n.http}"))
    except (TestnetError, ConfigError) as error:
        _fail(str(error))
        return
    if as_json:
        _echo_json([n.to_json() for n in nodes])
        return
    click.echo(column_table(["name", "http", "p2p", "pid", "validator"],
                            [[n.name, n.http, n.p2p, n.pid, n.validator] for n in nodes]))
    click.echo(f"\ndev accounts: {home}/accounts/*.json   stop: marketchain testnet stop --home {home}")


@testnet.command("stop")
@click.option("--home", required=True, type=click.Path(file_okay=False, path_type=Path))
def testnet_stop(home: Path) -> None:
    """Stop every node of the testnet (SIGTERM, then SIGKILL after 30 s)."""
    try:
        stopped = stop_testnet(home)
    except TestnetError as error:
        _fail(str(error))
        return
    click.echo(f"stopped {', '.join(stopped)}" if stopped else "no node was running")


@testnet.command("status")
@click.option("--home", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def testnet_status_command(home: Path, as_json: bool) -> None:
    """Show each node's process, height, block sync and peers."""
    try:
        rows = testnet_status(home)
    except TestnetError as error:
        _fail(str(error))
        return
    if as_json:
        _echo_json(rows)
        return
    click.echo(column_table(
        ["name", "http", "pid", "running", "height", "sync", "peers", "round"],
        [[r["name"], r["http"], r["pid"] or "-", "yes" if r["running"] else "no", r.get("height", "-"),
          _sync_cell(r), r.get("peers", "-"),
          f"{r['round']} {r['step']}" if r.get("round") is not None else "-"] for r in rows],
    ))
    for row in rows:
        if row["running"] and "error" in row:
            click.echo(f"{row['name']}: {row['error']}", err=True)


def _sync_cell(row: dict[str, Any]) -> str:
    if "height" not in row:
        return "-"
    if not row.get("syncing"):
        return "synced"
    target = row.get("target", row["height"])
    return f"{row['height']}/{target} ({100 * row['height'] // max(target, 1)}%)"


@main.command("devnet")
@click.option("--home", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep the devnet in this directory (default: a fresh temporary one, removed on exit).")
@click.option("--nodes", "node_count", default=4, show_default=True, type=click.IntRange(1, 64))
@click.option("--base-port", default=26656, show_default=True, type=click.IntRange(1024, 65000))
def devnet(home: Path | None, node_count: int, base_port: int) -> None:
    """The one-command demo: a local testnet with demo data; Ctrl-C stops it."""
    import shutil
    import signal
    import tempfile

    from client.devnet import DEMO_ACCEPT_WINDOW_MS, DemoError, describe, seed_demo_data

    temporary = home is None
    directory = Path(tempfile.mkdtemp(prefix="marketchain-devnet-")) if home is None else home
    fresh = not (directory / "testnet.json").exists()
    try:
        if fresh:
            # A one-minute accept window: the demo's placed order visibly expires by deadline (R15).
            params = Params().with_overrides({"accept_window_ms": str(DEMO_ACCEPT_WINDOW_MS)})
            create_testnet(directory, node_count, base_port, params, "marketchain-devnet")
        with Steps("nodes serving", len(read_testnet(directory)["nodes"])) as steps:
            nodes = start_testnet(directory, progress=lambda n: steps.advance(f"{n.name} serving {n.http}"))
    except (TestnetError, ConfigError) as error:
        if temporary:
            shutil.rmtree(directory, ignore_errors=True)
        _fail(str(error))
        return
    stop_requested = False
    failed = False

    def request_stop(signal_number: int, frame: Any) -> None:
        nonlocal stop_requested
        stop_requested = True

    # Installed explicitly: a process started in the background inherits SIGINT ignored.
    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    url = nodes[0].http
    accounts = directory / "accounts"
    try:
        if fresh:
            click.echo("seeding demo data through real transactions…")
            started = time.monotonic()
            demo = seed_demo_data(url, accounts, click.echo)
            click.echo(f"seeded in {time.monotonic() - started:.1f} s\n")
            click.echo(describe(demo, url))
        click.echo(f"""
marketchain devnet is running ({len(nodes)} node(s), chain marketchain-devnet)
  explorer      {url}/
  API           {url}/status   {url}/shops   {url}/orders?state=completed
  dev accounts  {accounts}/  (faucet: registrar; alice, bob: merchants; carol: arbiter;
                dave: carrier; frank: producer; grace: inspector; erin, heidi: buyers)
  try           marketchain query shops --node {url}
                marketchain query orders --buyer {accounts}/erin.json --node {url}
                marketchain query listings --q tea --node {url}
                marketchain query item PUER-2019-0001 --node {url}
Press Ctrl-C to stop.""")
        while not stop_requested:
            time.sleep(0.2)
    except (ClientError, DemoError) as error:
        click.echo(f"demo data failed: {error}", err=True)
        failed = True
    finally:
        click.echo("\nstopping the devnet…")
        stop_testnet(directory)
        if temporary:
            shutil.rmtree(directory, ignore_errors=True)
    if failed:
        sys.exit(1)


# --- transactions -------------------------------------------------------------------


def _send(tx_type: str, payload: dict[str, Any], key_reference: str, node_url: str, fee: int | None,
          nonce: int | None, wait: bool, as_json: bool, key: KeyPair | None = None) -> None:
    """Check, sign locally, submit; with `wait`, print the receipt and the id of what it created."""
    try:
        check_payload(tx_type, payload)
    except RuleError as error:
        _fail(f"{error.code}: {error.message}")
    key = key or _load_signing_key(key_reference)
    client = _client(node_url)
    status = _call(client.status)
    if nonce is None:
        nonce = _call(client.account, key.address)["pending_nonce"]
    tx = sign_transaction(key, status["chain_id"], tx_type, payload, nonce, fee if fee is not None else status["min_fee"])
    tx_hash = _call(client.submit, tx.raw)
    created = CREATED_OBJECTS.get(tx_type)
    if not wait:
        _echo_json({"hash": tx_hash, **({created.replace(" ", "_"): tx_hash} if created else {})}) if as_json \
            else click.echo(tx_hash)
        if created and not as_json:
            click.echo(f"{created}: {tx_hash} (exists once the transaction is final; --wait waits for it)", err=True)
        return
    view = _call(client.wait_for_tx, tx_hash)
    ok = view["result"]["ok"]
    if as_json:
        if created and ok:
            view = {**view, created.replace(" ", "_"): tx_hash}
        _echo_json(view)
    else:
        _print_tx(view)
        if created and ok:
            click.echo(f"{created}: {tx_hash}")
        elif tx_type == "item_register" and ok:
            click.echo(f"item id: {payload['item_id']}")
    if not ok:
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


@tx.command("validator-vote")
@click.option("--action", required=True, type=click.Choice(["add", "remove"]))
@click.option("--validator", required=True, help="Validator: address, key name or key file.")
@_tx_options
def tx_validator_vote(action: str, validator: str, **common: Any) -> None:
    """Vote to add or remove a validator (validators only; passes with > 2/3, signs from H+2, R34)."""
    _send("validator_vote", {"action": action, "validator": _address(validator, "--validator")}, **common)


# --- marketplace transactions (PROTOCOL §4) -----------------------------------------


class BpsType(click.ParamType):
    """Basis points: `500`, `500bps` or `5%`."""

    name = "bps"

    def convert(self, value, param, ctx):  # type: ignore[no-untyped-def]
        if isinstance(value, int):
            return value
        try:
            return parse_bps(value, param.opts[0] if param else "bps")
        except PayloadError as error:
            self.fail(error.message, param, ctx)


class IdType(click.ParamType):
    """A shop, listing or order id (the hash of the transaction that created it), 64 hex."""

    name = "id"

    def convert(self, value, param, ctx):  # type: ignore[no-untyped-def]
        if isinstance(value, bytes):
            return value
        try:
            return parse_id(value, param.opts[0] if param else "id")
        except PayloadError as error:
            self.fail(error.message, param, ctx)


class SignedType(click.ParamType):
    """A signed whole number: `+5`, `-3`."""

    name = "signed"

    def convert(self, value, param, ctx):  # type: ignore[no-untyped-def]
        if isinstance(value, int):
            return value
        try:
            return parse_signed(value, param.opts[0] if param else "value")
        except PayloadError as error:
            self.fail(error.message, param, ctx)


class ItemIdType(click.ParamType):
    """A unique item's id: 1..64 of [A-Za-z0-9._:-]."""

    name = "item"

    def convert(self, value, param, ctx):  # type: ignore[no-untyped-def]
        try:
            return parse_item_id(value, param.opts[0] if param else "--item-id")
        except PayloadError as error:
            self.fail(error.message, param, ctx)


ID = IdType()
BPS = BpsType()
ITEM_ID = ItemIdType()
FILE = click.Path(dir_okay=False, exists=True, path_type=Path)


def _build(builder, *args: Any, **kwargs: Any) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Run a payload builder of node/payloads.py, turning its error into a CLI error."""
    try:
        return builder(*args, **kwargs)
    except PayloadError as error:
        _fail(str(error))
        raise AssertionError from None


def _document_hash(path: Path | None, hash_text: str | None, option: str) -> bytes | None:
    """SHA-256 of a file (only the hash goes on chain), or a hash given in hex."""
    try:
        return payloads.one_hash(path.read_bytes() if path else None, hash_text, option)
    except PayloadError as error:
        _fail(str(error))
        raise AssertionError from None
    except OSError as error:
        _fail(f"{option}: cannot read {path}: {error}")
        raise AssertionError from None


def _order_option(function):  # type: ignore[no-untyped-def]
    return click.option("--order", "order_id", required=True, type=ID, help="Order id (64 hex).")(function)


def _reason_option(function):  # type: ignore[no-untyped-def]
    return click.option("--reason", required=True, help="Why, up to 256 bytes of text.")(function)


@tx.command("shop-create")
@click.option("--name", required=True, help="Shop name, 1..64 bytes.")
@click.option("--description", default=None, help="Up to 1000 bytes.")
@click.option("--points-bps", type=BPS, default=0, show_default=True,
              help="Loyalty points earned per µMKT paid: 500 or 5%.")
@click.option("--max-redeem-bps", type=BPS, default=0, show_default=True,
              help="Most of an order payable with points: 2000 or 20%.")
@click.option("--arbiter", "arbiters", multiple=True,
              help="An arbiter buyers may name (repeat; up to 8). None: no disputes, unconditional returns.")
@_tx_options
def tx_shop_create(name: str, description: str | None, points_bps: int, max_redeem_bps: int,
                   arbiters: tuple[str, ...], **common: Any) -> None:
    """Open a shop (needs the merchant role); its id is this transaction's hash."""
    _send("shop_create", _build(payloads.shop_create, name, points_bps, max_redeem_bps, description,
                                [_address(a, "--arbiter") for a in arbiters]), **common)


@tx.command("shop-update")
@click.option("--shop", "shop_id", required=True, type=ID, help="Shop id (64 hex).")
@click.option("--name", default=None)
@click.option("--description", default=None)
@click.option("--points-bps", type=BPS, default=None, help="e.g. 500 or 5%.")
@click.option("--max-redeem-bps", type=BPS, default=None, help="e.g. 2000 or 20%.")
@click.option("--arbiter", "arbiters", multiple=True, help="The new list of arbiters (repeat), replacing the old one.")
@click.option("--open/--closed", "is_open", default=None, help="Take new orders, or stop taking them.")
@_tx_options
def tx_shop_update(shop_id: bytes, name: str | None, description: str | None, points_bps: int | None,
                   max_redeem_bps: int | None, arbiters: tuple[str, ...], is_open: bool | None, **common: Any) -> None:
    """Change a shop's name, terms, arbiters or open/closed (owner only)."""
    _send("shop_update", _build(payloads.shop_update, shop_id, name, description, points_bps, max_redeem_bps,
                                [_address(a, "--arbiter") for a in arbiters], is_open), **common)


@tx.command("listing-create")
@click.option("--shop", "shop_id", required=True, type=ID, help="Your shop's id (64 hex).")
@click.option("--title", required=True, help="1..128 bytes.")
@click.option("--price", required=True, type=AmountType(), help="Per unit: 12.5MKT or 12500000 (µMKT).")
@click.option("--stock", type=click.IntRange(0), default=None,
              help="Units for sale (default with --item-id: the number of items).")
@click.option("--description", default=None, help="Up to 2000 bytes.")
@click.option("--item-id", "item_ids", multiple=True, type=ITEM_ID,
              help="A unique item you own and hold (repeat; R22).")
@click.option("--tag", "tags", multiple=True, help="A search tag ≤ 32 bytes (repeat; up to 8).")
@click.option("--metadata-file", type=FILE, help="Photos/specs document; only its SHA-256 goes on chain.")
@click.option("--metadata-hash", default=None, help="SHA-256 of the metadata, hex.")
@_tx_options
def tx_listing_create(shop_id: bytes, title: str, price: int, stock: int | None, description: str | None,
                      item_ids: tuple[str, ...], tags: tuple[str, ...], metadata_file: Path | None,
                      metadata_hash: str | None, **common: Any) -> None:
    """List goods in your shop; its id is this transaction's hash."""
    digest = _document_hash(metadata_file, metadata_hash, "--metadata-file/--metadata-hash")
    _send("listing_create", _build(payloads.listing_create, shop_id, title, price, stock, description, item_ids,
                                   tags, digest), **common)


@tx.command("listing-update")
@click.option("--listing", "listing_id", required=True, type=ID, help="Listing id (64 hex).")
@click.option("--price", type=AmountType(), default=None, help="New unit price.")
@click.option("--stock-delta", type=SignedType(), default=None, help="Add or remove stock: +10 or -3.")
@click.option("--active/--inactive", "active", default=None, help="Take orders, or pause the listing.")
@click.option("--title", default=None)
@click.option("--description", default=None)
@click.option("--tag", "tags", multiple=True, help="The new tags (repeat), replacing the old ones.")
@_tx_options
def tx_listing_update(listing_id: bytes, price: int | None, stock_delta: int | None, active: bool | None,
                      title: str | None, description: str | None, tags: tuple[str, ...], **common: Any) -> None:
    """Change a listing's price, stock, activity, title, description or tags (shop owner only)."""
    _send("listing_update", _build(payloads.listing_update, listing_id, price, stock_delta, active, title,
                                   description, tags), **common)


@tx.command("order-place")
@click.option("--listing", "listing_id", required=True, type=ID, help="Listing id (64 hex).")
@click.option("--quantity", default=1, show_default=True, type=click.IntRange(1))
@click.option("--max-unit-price", type=AmountType(), default=None,
              help="Refuse if the price rose above this (default: the price now).")
@click.option("--ship-to", required=True,
              help="Delivery address; sealed locally to the merchant's key, never sent in clear.")
@click.option("--arbiter", default=None, help="One of the shop's arbiters (default: its first one).")
@click.option("--redeem-points", type=click.IntRange(0), default=None, help="Loyalty points to spend (1 = 1 µMKT).")
@_tx_options
def tx_order_place(listing_id: bytes, quantity: int, max_unit_price: int | None, ship_to: str, arbiter: str | None,
                   redeem_points: int | None, **common: Any) -> None:
    """Order from a listing, paying price × quantity into escrow (R13); the order id is this tx's hash."""
    client = _client(common["node_url"])
    listing = _call(client.listing, listing_id)
    shop = _call(client.shop, bytes.fromhex(listing["shop_id"]))
    merchant = bytes.fromhex(shop["owner"])
    if max_unit_price is None:
        max_unit_price = listing["price"]
    named = _address(arbiter, "--arbiter") if arbiter else None
    if named is None and shop.get("arbiters"):
        named = bytes.fromhex(shop["arbiters"][0])
        click.echo(f"arbiter: {named.hex()} (the shop's first; choose with --arbiter)", err=True)
    try:
        sealed = seal_for(merchant, ship_to.encode())
    except SealError as error:
        _fail(f"--ship-to: {error}")
        return
    _send("order_place", _build(payloads.order_place, listing_id, quantity, max_unit_price, sealed, named,
                                redeem_points), **common)


@tx.command("order-accept")
@_order_option
@_tx_options
def tx_order_accept(order_id: bytes, **common: Any) -> None:
    """Accept a placed order (merchant)."""
    _send("order_accept", payloads.order_only(order_id), **common)


@tx.command("order-reject")
@_order_option
@_reason_option
@_tx_options
def tx_order_reject(order_id: bytes, reason: str, **common: Any) -> None:
    """Reject a placed or accepted order: escrow back to the buyer (merchant)."""
    _send("order_reject", payloads.order_with_reason(order_id, reason), **common)


@tx.command("order-cancel")
@_order_option
@_tx_options
def tx_order_cancel(order_id: bytes, **common: Any) -> None:
    """Cancel your order while it is still placed: escrow back (buyer)."""
    _send("order_cancel", payloads.order_only(order_id), **common)


@tx.command("order-ship")
@_order_option
@click.option("--carrier", required=True, help="The carrier: address, key name or key file.")
@click.option("--tracking", required=True, help="The carrier's tracking number, ≤ 64 bytes.")
@click.option("--no-reseal", is_flag=True,
              help="Do not re-seal the buyer's address to the carrier (shipping_for_carrier).")
@_tx_options
def tx_order_ship(order_id: bytes, carrier: str, tracking: str, no_reseal: bool, **common: Any) -> None:
    """Hand the order to a carrier (merchant); re-seals the address for the carrier locally."""
    carrier_address = _address(carrier, "--carrier")
    key = _load_signing_key(common["key_reference"])
    for_carrier = None
    if not no_reseal:
        order = _call(_client(common["node_url"]).order, order_id)
        if key.address.hex() != order["merchant"]:
            _fail(f"--key {key.address.hex()} is not this order's merchant ({order['merchant']}): only the "
                  "merchant can open the buyer's address to re-seal it; sign with the merchant's key "
                  "(or pass --no-reseal)")
        try:
            for_carrier = seal_for(carrier_address, open_sealed(key, bytes.fromhex(order["shipping"])))
        except SealError as error:
            _fail(f"cannot re-seal the shipping address: {error} (pass --no-reseal to ship without it)")
    _send("order_ship", payloads.order_ship(order_id, carrier_address, tracking, for_carrier), key=key, **common)


@tx.command("shipment-update")
@_order_option
@click.option("--status", required=True, type=click.Choice(SHIPMENT_STATUSES))
@click.option("--location", required=True, help="Where, ≤ 128 bytes.")
@click.option("--note", default=None, help="≤ 256 bytes.")
@_tx_options
def tx_shipment_update(order_id: bytes, status: str, location: str, note: str | None, **common: Any) -> None:
    """Post a shipment event (the order's carrier); `delivered` marks the order delivered."""
    _send("shipment_update", payloads.shipment_update(order_id, status, location, note), **common)


@tx.command("order-confirm")
@_order_option
@_tx_options
def tx_order_confirm(order_id: bytes, **common: Any) -> None:
    """Confirm receipt: escrow goes to the merchant, points and items to you (buyer)."""
    _send("order_confirm", payloads.order_only(order_id), **common)


@tx.command("return-request")
@_order_option
@_reason_option
@_tx_options
def tx_return_request(order_id: bytes, reason: str, **common: Any) -> None:
    """Ask to return a shipped or delivered order (buyer)."""
    _send("return_request", payloads.order_with_reason(order_id, reason), **common)


@tx.command("order-refund")
@_order_option
@click.option("--amount", type=AmountType(), default=None, help="µMKT or MKT; less than the escrow is an offer.")
@click.option("--all", "refund_all", is_flag=True, help="Refund the whole escrow (ends the order as refunded).")
@_tx_options
def tx_order_refund(order_id: bytes, amount: int | None, refund_all: bool, **common: Any) -> None:
    """Refund part or all of the escrow to the buyer (merchant)."""
    if (amount is None) == (not refund_all):
        _fail("give exactly one of --amount and --all")
    if refund_all:
        order = _call(_client(common["node_url"]).order, order_id)
        amount = order["escrow"]
        if not amount:
            _fail(f"--all: the order is {order['state']} and holds nothing in escrow")
    assert amount is not None
    _send("order_refund", payloads.order_refund(order_id, amount), **common)


@tx.command("dispute-open")
@_order_option
@_reason_option
@_tx_options
def tx_dispute_open(order_id: bytes, reason: str, **common: Any) -> None:
    """Escalate to the order's arbiter (buyer; merchant only from return_requested)."""
    _send("dispute_open", payloads.order_with_reason(order_id, reason), **common)


@tx.command("dispute-resolve")
@_order_option
@click.option("--buyer-amount", required=True, type=AmountType(), help="What the buyer gets back; the rest, "
              "after the arbiter fee, goes to the merchant.")
@click.option("--ruling", required=True, help="The ruling, ≤ 512 bytes.")
@_tx_options
def tx_dispute_resolve(order_id: bytes, buyer_amount: int, ruling: str, **common: Any) -> None:
    """Resolve a dispute (the order's arbiter)."""
    _send("dispute_resolve", payloads.dispute_resolve(order_id, buyer_amount, ruling), **common)


@tx.command("review-submit")
@_order_option
@click.option("--rating", required=True, type=click.IntRange(1, 5), help="1 to 5 stars.")
@click.option("--text", default=None, help="≤ 1000 bytes.")
@_tx_options
def tx_review_submit(order_id: bytes, rating: int, text: str | None, **common: Any) -> None:
    """Review a completed, refunded or resolved order, once (its buyer, R19)."""
    _send("review_submit", payloads.review_submit(order_id, rating, text), **common)


@tx.command("review-reply")
@_order_option
@click.option("--text", required=True, help="≤ 1000 bytes.")
@_tx_options
def tx_review_reply(order_id: bytes, text: str, **common: Any) -> None:
    """Answer the review of an order, once (its merchant)."""
    _send("review_reply", payloads.review_reply(order_id, text), **common)


@tx.command("item-register")
@click.option("--item-id", required=True, type=ITEM_ID, help="1..64 of [A-Za-z0-9._:-], e.g. PUER-2019-0001.")
@click.option("--description", required=True, help="What it is, ≤ 256 bytes.")
@click.option("--metadata-file", type=FILE, help="Certificate/photos; only its SHA-256 goes on chain.")
@click.option("--metadata-hash", default=None, help="SHA-256 of the metadata, hex.")
@_tx_options
def tx_item_register(item_id: str, description: str, metadata_file: Path | None, metadata_hash: str | None,
                     **common: Any) -> None:
    """Register a unique item you own and hold (producer or merchant)."""
    digest = _document_hash(metadata_file, metadata_hash, "--metadata-file/--metadata-hash")
    _send("item_register", payloads.item_register(item_id, description, digest), **common)


@tx.command("item-event")
@click.option("--item-id", required=True, type=ITEM_ID)
@click.option("--kind", required=True, help="e.g. harvested, inspected, stored (not registered/transfer/listed/sold).")
@click.option("--location", required=True, help="≤ 128 bytes.")
@click.option("--data-file", type=FILE, help="A report or certificate; only its SHA-256 goes on chain.")
@click.option("--data-hash", default=None, help="SHA-256 of the data, hex.")
@click.option("--note", default=None, help="≤ 256 bytes.")
@_tx_options
def tx_item_event(item_id: str, kind: str, location: str, data_file: Path | None, data_hash: str | None,
                  note: str | None, **common: Any) -> None:
    """Record a supply-chain event on an item (owner, custodian or any inspector)."""
    digest = _document_hash(data_file, data_hash, "--data-file/--data-hash")
    _send("item_event", payloads.item_event(item_id, kind, location, digest, note), **common)


@tx.command("item-transfer")
@click.option("--item-id", required=True, type=ITEM_ID)
@click.option("--to", "recipient", required=True, help="Recipient: address, key name or key file.")
@click.option("--custody-only", is_flag=True, help="Hand over custody only (e.g. to a carrier); keep ownership.")
@_tx_options
def tx_item_transfer(item_id: str, recipient: str, custody_only: bool, **common: Any) -> None:
    """Transfer an item: ownership and custody (owner), or custody only (owner or custodian)."""
    _send("item_transfer", payloads.item_transfer(item_id, _address(recipient, "--to"), custody_only), **common)


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
    if as_json:
        _echo_json(status)
        return
    shown = {**status, "sync": describe_sync(sync_summary(status))} if "sync" in status else status
    click.echo(key_value_table([(name, format_value(name, value)) if isinstance(value, dict) else (name, value)
                                for name, value in shown.items()]))


@query.command("validators")
@click.option("--height", type=click.IntRange(1), default=None, help="Height (default: the next block).")
@node_option
@json_option
def query_validators(height: int | None, node_url: str, as_json: bool) -> None:
    """The validator set, decided changes, pending votes and punished validators."""
    view = _call(_client(node_url).get, "/validators" + (f"?height={height}" if height else ""))
    if as_json:
        _echo_json(view)
        return
    click.echo(f"height {view['height']}  proposer (round 0) {view['proposer']}")
    click.echo(column_table(["validator"], [[v["address"]] for v in view["validators"]]))
    for change in view["scheduled"]:
        click.echo(f"from height {change['height']}: {len(change['validators'])} validators")
    for vote in view["pending_votes"]:
        click.echo(f"pending: {vote['action']} {vote['validator']} ({len(vote['voters'])} vote(s))")
    for item in view["evidence"]:
        click.echo(f"punished: {item['validator']} (equivocated at height {item['evidence_height']})")


@query.command("account")
@click.argument("account")
@node_option
@json_option
def query_account(account: str, node_url: str, as_json: bool) -> None:
    """Balance, nonce, roles, loyalty points and merchant reputation of ACCOUNT (address, key name or key file)."""
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
    ] + [("points", f"{points:,} in shop {shop_id}") for shop_id, points in (view.get("points") or {}).items()]
      + (reputation_rows(view["reputation"], "merchant ") if view.get("reputation") else [])))


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


# --- marketplace queries (PROTOCOL §10) ---------------------------------------------


def _page_options(function):  # type: ignore[no-untyped-def]
    function = click.option("--cursor", default=None, help="Continue from the `next` cursor of a previous page.")(
        function)
    return click.option("--limit", type=click.IntRange(1, 100), default=None, help="Items per page.")(function)


def _print_page(view: dict[str, Any], plural: str, table, as_json: bool, empty: str) -> None:  # type: ignore[no-untyped-def]
    if as_json:
        _echo_json(view)
        return
    items = view.get(plural) or []
    click.echo(table(items) if items else empty)
    if view.get("next") is not None:
        click.echo(f"\nmore: repeat with --cursor {view['next']}")


@query.command("shops")
@click.option("--owner", default=None, help="Only this merchant's shops: address, key name or key file.")
@_page_options
@node_option
@json_option
def query_shops(owner: str | None, limit: int | None, cursor: str | None, node_url: str, as_json: bool) -> None:
    """Shops, with rating and trust score."""
    view = _call(_client(node_url).shops, _address(owner, "--owner") if owner else None, limit, cursor)
    _print_page(view, "shops", shops_table, as_json, "no shops")


@query.command("shop")
@click.argument("shop_id", type=ID)
@node_option
@json_option
def query_shop(shop_id: bytes, node_url: str, as_json: bool) -> None:
    """A shop with its reputation (R20) and stats."""
    view = _call(_client(node_url).shop, shop_id)
    _echo_json(view) if as_json else click.echo(shop_view(view))


@query.command("reviews")
@click.argument("shop_id", type=ID)
@_page_options
@node_option
@json_option
def query_reviews(shop_id: bytes, limit: int | None, cursor: str | None, node_url: str, as_json: bool) -> None:
    """Verified-purchase reviews of a shop, with the merchant's replies."""
    view = _call(_client(node_url).shop_reviews, shop_id, limit, cursor)
    _print_page(view, "reviews", reviews_view, as_json, "no reviews yet")


@query.command("listings")
@click.option("--q", "text", default=None, help="Words to search in titles, descriptions and tags.")
@click.option("--tag", default=None, help="Only listings with this tag.")
@click.option("--shop", "shop_id", type=ID, default=None, help="Only this shop's listings.")
@click.option("--min-price", type=AmountType(), default=None, help="e.g. 1MKT.")
@click.option("--max-price", type=AmountType(), default=None, help="e.g. 50MKT.")
@_page_options
@node_option
@json_option
def query_listings(text: str | None, tag: str | None, shop_id: bytes | None, min_price: int | None,
                   max_price: int | None, limit: int | None, cursor: str | None, node_url: str,
                   as_json: bool) -> None:
    """Search listings across every shop."""
    view = _call(_client(node_url).listings, text, tag, shop_id, min_price, max_price, limit, cursor)
    _print_page(view, "listings", listings_table, as_json, "no listing matches")


@query.command("listing")
@click.argument("listing_id", type=ID)
@node_option
@json_option
def query_listing(listing_id: bytes, node_url: str, as_json: bool) -> None:
    """A listing: price, stock, items, tags."""
    view = _call(_client(node_url).listing, listing_id)
    _echo_json(view) if as_json else click.echo(listing_view(view))


@query.command("orders")
@click.option("--buyer", default=None, help="Only this buyer's orders: address, key name or key file.")
@click.option("--merchant", default=None, help="Only this merchant's orders.")
@click.option("--state", default=None, type=click.Choice(ORDER_STATES), help="Only orders in this state.")
@_page_options
@node_option
@json_option
def query_orders(buyer: str | None, merchant: str | None, state: str | None, limit: int | None,
                 cursor: str | None, node_url: str, as_json: bool) -> None:
    """Orders, filtered by buyer, merchant or state."""
    view = _call(_client(node_url).orders, _address(buyer, "--buyer") if buyer else None,
                 _address(merchant, "--merchant") if merchant else None, state, limit, cursor)
    _print_page(view, "orders", orders_table, as_json, "no orders")


def _decrypt_shipping(order: dict[str, Any], key: KeyPair) -> tuple[str, str]:
    """(who, address): open the order's sealed address with the merchant's or the carrier's key."""
    me = key.address.hex()
    boxes = [("merchant", order.get("shipping"))]
    if order.get("shipping_for_carrier"):
        boxes.append(("carrier", order["shipping_for_carrier"]))
    for who, box in boxes:
        if box:
            try:
                return who, open_sealed(key, bytes.fromhex(box)).decode("utf-8", "replace")
            except SealError:
                continue
    if me == order.get("carrier"):
        _fail(f"key {me} is this order's carrier, but the merchant shipped without re-sealing the address "
              "for it (no shipping_for_carrier)")
    _fail(f"key {me} cannot open this order's shipping address: it is sealed to the merchant "
          f"({order.get('merchant')}) and, once shipped with re-sealing, to the carrier "
          f"({order.get('carrier') or 'none yet'}); use one of their keys")
    raise AssertionError


@query.command("order")
@click.argument("order_id", type=ID)
@click.option("--decrypt", is_flag=True, help="Open the sealed shipping address locally (merchant or carrier).")
@click.option("--key", "key_reference", envvar="MARKETCHAIN_KEY", default=None,
              help="With --decrypt: the merchant's or carrier's key (keystore name or key file).")
@node_option
@json_option
def query_order(order_id: bytes, decrypt: bool, key_reference: str | None, node_url: str, as_json: bool) -> None:
    """An order: state, escrow, deadline, logistics, history, review."""
    view = _call(_client(node_url).order, order_id)
    address = None
    if decrypt:
        if not key_reference:
            _fail("--decrypt needs --key: the merchant's or the carrier's key")
        who, address = _decrypt_shipping(view, _load_signing_key(key_reference or ""))
    if as_json:
        _echo_json({**view, "shipping_plaintext": address} if decrypt else view)
        return
    click.echo(order_view(view))
    if address is not None:
        click.echo(f"\nshipping address (opened locally with the {who}'s key):\n  {address}")


@query.command("item")
@click.argument("item_id", type=ITEM_ID)
@node_option
@json_option
def query_item(item_id: str, node_url: str, as_json: bool) -> None:
    """A unique item: owner, custodian and its provenance history (R22)."""
    view = _call(_client(node_url).item, item_id)
    _echo_json(view) if as_json else click.echo(item_view(view))


@query.command("account-txs")
@click.argument("account")
@_page_options
@node_option
@json_option
def query_account_txs(account: str, limit: int | None, cursor: str | None, node_url: str, as_json: bool) -> None:
    """Transactions ACCOUNT (address, key name or key file) sent or takes part in, newest first."""
    address = _address(account)
    view = _call(_client(node_url).account_txs, address, limit, cursor)
    _print_page(view, "txs", lambda txs: account_txs_table(txs, address.hex()), as_json, "no transactions")


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
    from client.verification import VerificationFailed, verify_transaction

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

"""The CLI commands that run a node's own code in this process: `init`, `node start`,
`config show`, and the hidden `testnet-homes` that `client.testnet` runs as a subprocess
to write every home of a new testnet at once (so that `client` never imports `node`).

`cli.py` adds them to the groups of `client.commands`. Like `node.home`, this module
imports from `client` only `client.keystore` (the key file format both sides share).
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import re
import socket
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from client.keystore import (
    MINIMUM_PASSPHRASE_LENGTH,
    PASSPHRASE_ENVIRONMENT_VARIABLE,
    PASSPHRASE_TRIES,
    resolve_address,
)
from marketplace_tx.chain.genesis import Genesis
from marketplace_tx.chain.params import MalformedAssignment, Params, params_from_assignments
from marketplace_tx.primitives.amounts import format_amount, parse_money
from marketplace_tx.primitives.crypto import KeyPair
from marketplace_tx.primitives.errors import InvalidGenesis
from node.config import (
    CONFIG_FILE,
    VALIDATOR_KEY_FILE,
    ConfigError,
    HttpConfig,
    NodeConfig,
    Override,
    P2pConfig,
    StatesyncConfig,
    config_to_json,
    effective_config,
    environment_variable,
    option_names,
    parse_set_option,
    render_config,
)
from node.home import (
    Home,
    check_home_permissions,
    init_home,
    is_node_home,
    load_home,
    read_genesis,
    rewrite_config,
)
from node.logging_setup import FORMATS, configure_logging


def _fail(message: str) -> NoReturn:
    raise click.ClickException(message)


def _key_value_table(rows: list[tuple[str, Any]]) -> str:
    """Aligned `name  value` lines, the layout of `client.formatting.key_value_table`."""
    width = max((len(name) for name, _ in rows), default=0)
    return "\n".join(f"{name.ljust(width)}  {value}" for name, value in rows)


def _parse_params(values: tuple[str, ...]) -> Params:
    """Genesis parameters from repeated `--param NAME=VALUE` options, as `client.commands` reads them."""
    try:
        return params_from_assignments(values)
    except MalformedAssignment as error:
        _fail(str(error))
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--param") from None


def _funded_accounts(fund: tuple[str, ...]) -> dict[bytes, int]:
    """`--fund ADDRESS=AMOUNT` options: an address, key file or keystore name, and µMKT or MKT."""
    accounts = {}
    for item in fund:
        address_text, separator, amount_text = item.partition("=")
        if not separator:
            _fail(f"--fund {item!r}: write ADDRESS=AMOUNT")
        address = resolve_address(address_text)
        if address is None:
            _fail(f"address {address_text!r} is neither 64 hex characters, a key name nor a key file")
        try:
            accounts[address] = parse_money(amount_text)
        except ValueError as error:
            _fail(f"--fund: {error}")
    return accounts


home_option = click.option("--home", required=True, type=click.Path(file_okay=False, path_type=Path),
                           help="Node home directory.")
"""`--home DIR` of a node (required)."""

OLDER_PASSPHRASE_VARIABLE = "MARKETCHAIN_VALIDATOR_PASSPHRASE"
"""The older name, read by `node start` when `PASSPHRASE_ENVIRONMENT_VARIABLE` is not set."""

passphrase_file_option = click.option(
    "--passphrase-file", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
    help="Read the passphrase of the home's encrypted keys from the first line of this file "
         f"(else ${PASSPHRASE_ENVIRONMENT_VARIABLE}, else a prompt at a terminal).",
)
"""`--passphrase-file FILE` (like geth's `--password`), passed as `passphrase_file`."""


def _passphrase_from_file(path: Path) -> str:
    """The first line of `path`, without its line ending (geth's `--password` convention)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        _fail(f"--passphrase-file {path}: cannot read it: {getattr(error, 'strerror', None) or error}")
    if not lines or not lines[0]:
        _fail(f"--passphrase-file {path}: its first line is empty")
    return lines[0]


def home_passphrase(passphrase_file: Path | None, *, new: bool) -> str:
    """The passphrase of a home's keys: `--passphrase-file`, else $MARKETCHAIN_PASSPHRASE (for an
    existing home also $MARKETCHAIN_VALIDATOR_PASSPHRASE), else a hidden prompt at a terminal
    (confirmed when `new`); fails with a one-line error when none is possible."""
    if passphrase_file is not None:
        value = _passphrase_from_file(passphrase_file)
    else:
        value = os.environ.get(PASSPHRASE_ENVIRONMENT_VARIABLE)
        if value is None and not new:
            value = os.environ.get(OLDER_PASSPHRASE_VARIABLE)
        if value is None:
            if not sys.stdin.isatty():
                _fail(f"{'--encrypt needs' if new else 'this home holds encrypted keys:'} a passphrase: pass "
                      f"--passphrase-file FILE, set {PASSPHRASE_ENVIRONMENT_VARIABLE}, or run at a terminal")
            prompt = "New passphrase for the home's keys" if new else "Passphrase of the home's keys"
            value = click.prompt(prompt, hide_input=True, confirmation_prompt=new, err=True)
    if new and len(value) < MINIMUM_PASSPHRASE_LENGTH:
        _fail(f"a new passphrase needs at least {MINIMUM_PASSPHRASE_LENGTH} characters")
    return value


@click.command("init")
@home_option
@click.option("--chain-id", default="marketchain-local", show_default=True, help="Chain id of a new chain.")
@click.option("--genesis", "genesis_file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Join an existing chain: copy this genesis instead of making a new one.")
@click.option("--http-port", default=26657, show_default=True, type=click.IntRange(0, 65535))
@click.option("--p2p-port", default=26656, show_default=True, type=click.IntRange(0, 65535))
@click.option("--moniker", default="node", show_default=True, help="Human name of the node.")
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE", help="Genesis parameter (new chain).")
@click.option("--fund", multiple=True, metavar="ADDRESS=AMOUNT", help="Fund an account in a new genesis.")
@click.option("--force", is_flag=True,
              help="In an existing home, rewrite config.toml only (keys, genesis and data are kept).")
@click.option("--encrypt", is_flag=True,
              help="Write the node and validator keys encrypted with a passphrase (Argon2id moderate).")
@click.option("--state-sync", "state_sync", is_flag=True,
              help="Join the chain of --genesis by state sync (R39): writes [statesync] enable = true.")
@passphrase_file_option
def init_command(home: Path, chain_id: str, genesis_file: Path | None, http_port: int, p2p_port: int,
                 moniker: str, params: tuple[str, ...], fund: tuple[str, ...], force: bool, encrypt: bool,
                 state_sync: bool, passphrase_file: Path | None) -> None:
    """Create a node home in a new or empty directory: config.toml, node key, validator key and genesis."""
    config = NodeConfig(moniker=moniker, http=HttpConfig(port=http_port), p2p=P2pConfig(port=p2p_port),
                        statesync=StatesyncConfig(enable=state_sync))
    if home.exists() and not home.is_dir():
        _fail(f"--home {home} is a file, not a directory")
    if passphrase_file is not None and not encrypt:
        _fail("--passphrase-file is the passphrase of --encrypt: pass both, or neither for plain keys")
    if encrypt and force and is_node_home(home):
        _fail("--encrypt writes new keys; --force keeps an existing home's keys as they are: use one of them")
    if force and is_node_home(home):
        rewrite_config(home, config)
        click.echo(f"rewrote {home / CONFIG_FILE}; keys, genesis and data are unchanged")
        click.echo(f"\nstart it with: marketchain node start --home {home}")
        return
    occupied = sorted(entry.name for entry in home.iterdir()) if home.is_dir() else []
    if occupied:
        shown = ", ".join(occupied[:5]) + (", ..." if len(occupied) > 5 else "")
        if (home / CONFIG_FILE).exists():
            _fail(f"{home} is already initialized ({CONFIG_FILE} exists): pass --force to rewrite its "
                  f"{CONFIG_FILE} only (keys and genesis are kept), or choose another --home")
        _fail(f"{home} is not empty ({shown}): init writes keys only into a new or empty directory; "
              "choose another --home, outside the source tree (e.g. ~/.marketchain)")
    accounts = _funded_accounts(fund)
    passphrase = home_passphrase(passphrase_file, new=True) if encrypt else None
    try:
        genesis = read_genesis(genesis_file) if genesis_file else None
        created = init_home(
            home, chain_id=chain_id, genesis=genesis, params=_parse_params(params),
            http=config.http, p2p=config.p2p, moniker=moniker, accounts=accounts, passphrase=passphrase,
        )
        if state_sync:
            rewrite_config(home, config)  # init_home writes the defaults; this adds [statesync] enable
    except ConfigError as error:
        _fail(str(error))
    assert created.validator_key is not None
    click.echo(_key_value_table([
        ("home", str(home)),
        ("chain_id", created.genesis.chain_id),
        ("genesis_hash", created.genesis.hash.hex()),
        ("validator", created.validator_key.address.hex()),
        ("node_id", created.node_key.address.hex()),
        ("http", f"http://127.0.0.1:{http_port}"),
        ("keys", "encrypted with the passphrase (Argon2id moderate)" if encrypt else "plain (no passphrase)"),
        *([("state_sync", "enabled: joins from a verified snapshot of its peers (R39)")] if state_sync else []),
    ]))
    click.echo("\n" + funding_summary(created.genesis, created.validator_key.address,
                                      home / VALIDATOR_KEY_FILE))
    unlock = f" (with --passphrase-file FILE or ${PASSPHRASE_ENVIRONMENT_VARIABLE}, or at a terminal)" if encrypt else ""
    click.echo(f"\nstart it with: marketchain node start --home {home}{unlock}")


def funding_summary(genesis: Genesis, validator: bytes, validator_key_path: Path) -> str:
    """Which genesis accounts are funded and which hold `registrar` (R5), naming this home's validator key."""
    lines = []
    for account in genesis.accounts:
        name = f"{validator_key_path} ({account.address.hex()})" if account.address == validator else \
            account.address.hex()
        roles = f" and holds {', '.join(account.roles)}" if account.roles else ""
        lines.append(f"funded: {name} with {format_amount(account.balance)}{roles}")
    if not any(account.address == validator for account in genesis.accounts):
        lines.append(f"this node's validator key ({validator_key_path}) is not funded in this genesis")
    if "registrar" in {role for account in genesis.accounts for role in account.roles}:
        lines.append("the registrar grants roles: marketchain tx role-grant --key KEY_OF_THE_REGISTRAR ...")
    return "\n".join(lines)


@click.command("testnet-homes", hidden=True)
def testnet_homes_command() -> None:
    """Write the homes of a new testnet from a JSON spec on stdin (run by `client.testnet`).

    The spec is `{"genesis": GENESIS, "nodes": [{"home", "moniker", "http_port", "p2p_port",
    "persistent_peers", "validator_seed", "node_seed"}]}`, seeds in hex: the client makes
    the keys and the genesis, the node writes its own file formats.
    """
    try:
        spec = json.load(sys.stdin)
        genesis = Genesis.from_json(spec["genesis"])
        for node in spec["nodes"]:
            init_home(
                Path(node["home"]),
                genesis=genesis,
                http=HttpConfig(port=node["http_port"]),
                p2p=P2pConfig(port=node["p2p_port"], persistent_peers=tuple(node["persistent_peers"])),
                moniker=node["moniker"],
                validator_key=KeyPair.from_seed(bytes.fromhex(node["validator_seed"])),
                node_key=KeyPair.from_seed(bytes.fromhex(node["node_seed"])),
            )
    except ConfigError as error:
        _fail(str(error))
    except InvalidGenesis as error:
        _fail(f"the testnet's genesis: {error.message}")
    except (ValueError, KeyError, TypeError) as error:
        _fail(f"not a testnet spec: {error!r}")


set_option = click.option(
    "--set", "settings", multiple=True, metavar="SECTION.OPTION=VALUE",
    help="Override any config option, e.g. --set mempool.max_transactions=1000 (repeatable).",
)
"""`--set SECTION.OPTION=VALUE` (repeatable), passed as `settings`."""


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
                return listen_error_text(error, config, section, port)
    return None


def listen_error_text(error: OSError, config: NodeConfig, section: str | None = None,
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


@click.command("start")
@home_option
@click.option("--http-port", type=click.IntRange(0, 65535), default=None, help="Override [http] port.")
@click.option("--http-host", default=None, help="Override [http] host.")
@click.option("--p2p-port", type=click.IntRange(0, 65535), default=None, help="Override [p2p] port.")
@click.option("--p2p-host", default=None, help="Override [p2p] host.")
@click.option("--log-level", default=None, metavar="SPEC",
              help="Override [log] level: a level (debug, info, warning, error) or per-logger levels, "
                   "e.g. p2p:debug,marketchain.consensus:info,*:warning.")
@click.option("--log-format", default=None, type=click.Choice(FORMATS), help="Override [log] format.")
@set_option
@passphrase_file_option
def start_command(home: Path, http_port: int | None, http_host: str | None, p2p_port: int | None,
                  p2p_host: str | None, log_level: str | None, log_format: str | None,
                  settings: tuple[str, ...], passphrase_file: Path | None) -> None:
    """Run a node in the foreground; SIGTERM or Ctrl-C stops it cleanly.

    Options come from flags, then MARKETCHAIN_<SECTION>_<OPTION> environment variables,
    then HOME/config.toml, then the defaults (docs/configuration.md).
    """
    from node.node import run_node
    from node.storage import StorageError

    overrides = _node_overrides(http_port, http_host, p2p_port, p2p_host, log_level, log_format, settings)
    permission_warnings = check_home_permissions(home)
    loaded = _load_home_with_passphrase(home, overrides, passphrase_file)
    configure_logging(loaded.config.log.level, loaded.config.log.format)
    log = logging.getLogger("marketchain.node")
    for warning in permission_warnings:
        log.warning("%s", warning)
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
        _fail(listen_error_text(error, loaded.config) if error.errno else f"cannot start: {error}")


def _load_home_with_passphrase(home: Path, overrides: list[Override], passphrase_file: Path | None) -> Home:
    """`load_home`, asking for the passphrase only if a key is encrypted: 3 tries at a prompt, one otherwise."""
    prompted = passphrase_file is None and os.environ.get(PASSPHRASE_ENVIRONMENT_VARIABLE) is None and \
        os.environ.get(OLDER_PASSPHRASE_VARIABLE) is None and sys.stdin.isatty()
    for attempt in range(1, PASSPHRASE_TRIES + 1):
        try:
            return load_home(home, environ=os.environ, overrides=overrides,
                             passphrase=lambda: home_passphrase(passphrase_file, new=False))
        except ConfigError as error:
            if not prompted or "wrong passphrase" not in str(error) or attempt == PASSPHRASE_TRIES:
                raise
            click.echo(f"{error}; try again", err=True)
    raise AssertionError("unreachable")


@click.group("config")
def config_group() -> None:
    """A node's configuration (HOME/config.toml, MARKETCHAIN_* variables, flags)."""


@config_group.command("show")
@home_option
@set_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def config_show(home: Path, settings: tuple[str, ...], as_json: bool) -> None:
    """Print the effective configuration: defaults, then config.toml, then the environment, then --set.

    Keys are not configuration and are never printed.
    """
    effective = effective_config(home, os.environ, [parse_set_option(item) for item in settings])
    if as_json:
        click.echo(json.dumps(config_to_json(effective), indent=2, sort_keys=True))
        return
    click.echo(f"# effective configuration of {home} (defaults < config.toml < MARKETCHAIN_* environment < flags)")
    click.echo(render_config(effective).rstrip("\n"))


COMMANDS = (init_command, config_group, testnet_homes_command)
"""Top-level commands of the node side."""

NODE_COMMANDS = (start_command,)
"""Commands of the node side under `marketchain node`."""

USER_ERRORS = (ConfigError,)
"""Errors of the node side whose text is a whole one-line CLI error."""

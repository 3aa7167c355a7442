"""What every command group of the CLI shares: failing with one line, JSON output, options,
accounts and keys named on the command line, and the node client with its error hints."""

from __future__ import annotations

import json
import os
import re
import sys
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from client.keystore import (
    MINIMUM_PASSPHRASE_LENGTH,
    PASSPHRASE_ENVIRONMENT_VARIABLE,
    PASSPHRASE_TRIES,
    KeyInfo,
    Keystore,
    KeystoreError,
    default_keystore_dir,
    load_key_file,
    read_key_info,
    resolve_address,
)
from client.money import render_money_message
from client.node_client import DEFAULT_NODE_URL, ClientError, NodeClient
from client.testnet import TestnetError
from marketplace_tx.chain.params import MalformedAssignment, Params, params_from_assignments
from marketplace_tx.primitives.crypto import KeyPair

Result = TypeVar("Result")


def fail(message: str) -> NoReturn:
    """Stop the command with `Error: MESSAGE` on stderr and exit code 1."""
    raise click.ClickException(message)


def echo_json(value: Any) -> None:
    """Print `value` as indented JSON with sorted keys."""
    click.echo(json.dumps(value, indent=2, sort_keys=True))


def parse_params(values: tuple[str, ...]) -> Params:
    """Genesis parameters from repeated `--param NAME=VALUE` options."""
    try:
        return params_from_assignments(values)
    except MalformedAssignment as error:
        fail(str(error))
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--param") from None



def looks_like_path(reference: str) -> bool:
    """True when `reference` names a file rather than a keystore key (a `/` or a `.json` ending)."""
    return "/" in reference or reference.endswith(".json")


def account_address(text: str, what: str = "address") -> bytes:
    """An address from 64 hex characters, a keystore name or a key file path; `what` names the option."""
    address = resolve_address(text)
    if address is None:
        if looks_like_path(text) and not Path(text).exists():
            fail(f"{what}: key file {text} does not exist")
        fail(f"{what} {text!r} is neither 64 hex characters, a key name nor a key file")
    return address


def passphrase(prompt: str, confirm: bool = False) -> str:
    """$MARKETCHAIN_PASSPHRASE, or a hidden prompt on a terminal; fails when neither is possible."""
    value = os.environ.get(PASSPHRASE_ENVIRONMENT_VARIABLE)
    if value is not None:
        return value
    if not sys.stdin.isatty():
        fail(f"a passphrase is needed: set {PASSPHRASE_ENVIRONMENT_VARIABLE} or run interactively")
    return click.prompt(prompt, hide_input=True, confirmation_prompt=confirm)


def new_passphrase(prompt: str = "New passphrase") -> str:
    """A passphrase for a new or exported key: at least 8 characters, asked up to 3 times on a terminal."""
    for _ in range(PASSPHRASE_TRIES):
        value = passphrase(prompt, confirm=True)
        if len(value) >= MINIMUM_PASSPHRASE_LENGTH:
            return value
        message = f"a new passphrase needs at least {MINIMUM_PASSPHRASE_LENGTH} characters"
        if os.environ.get(PASSPHRASE_ENVIRONMENT_VARIABLE) is not None:
            fail(f"{message} (${PASSPHRASE_ENVIRONMENT_VARIABLE} has {len(value)})")
        click.echo(f"{message}; try again", err=True)
    fail(f"a new passphrase needs at least {MINIMUM_PASSPHRASE_LENGTH} characters")


def _with_passphrase(load: Callable[[str | None], KeyPair], encrypted: bool, prompt: str) -> KeyPair:
    """`load(passphrase)`; a wrong passphrase typed at a terminal gets 3 tries in all."""
    if not encrypted:
        return load(None)
    tries = 1 if os.environ.get(PASSPHRASE_ENVIRONMENT_VARIABLE) is not None else PASSPHRASE_TRIES
    for attempt in range(1, tries + 1):
        try:
            return load(passphrase(prompt))
        except KeystoreError as error:
            if "wrong passphrase" not in error.message or attempt == tries:
                raise
            click.echo(f"{error.message}; try again ({tries - attempt} left)", err=True)
    raise AssertionError("unreachable")


def load_signing_key(reference: str) -> KeyPair:
    """The key named by --key: a key file path or a keystore name (asks for its passphrase if encrypted)."""
    path = Path(reference)
    try:
        if path.is_file():
            info: KeyInfo = read_key_info(path)
            return _with_passphrase(lambda secret: load_key_file(path, secret), info.encrypted,
                                    f"Passphrase for {path}")
        if looks_like_path(reference):
            fail(f"--key: key file {reference} does not exist")
        keystore = Keystore()
        info = keystore.info(reference)
        return _with_passphrase(lambda secret: keystore.load(reference, secret), info.encrypted,
                                f"Passphrase for key {reference}")
    except KeystoreError as error:
        fail(error.message)


def key_names() -> dict[str, str]:
    """Address (hex) → name of every key in the local keystore (never created here; none if it is missing)."""
    directory = default_keystore_dir()
    if not directory.is_dir():
        return {}
    try:
        keystore = Keystore(directory)
        return {keystore.info(name).address.hex(): name for name in keystore.names()}
    except KeystoreError:
        return {}


ADDRESS_TEXT = re.compile(r"\b[0-9a-f]{64}\b")
"""A 64-hex-character word: an address, or an id (a hash), in a view."""


def with_key_names(text: str) -> str:
    """`text` with every address the local keystore knows followed by its key name: `5f3a… (alice)`."""
    names = key_names()
    if not names:
        return text
    return ADDRESS_TEXT.sub(lambda match: f"{match[0]} ({names[match[0]]})" if match[0] in names else match[0], text)


def node_client(node_url: str) -> NodeClient:
    """The client of the node at --node, after checking that it looks like a URL."""
    parsed = urllib.parse.urlparse(node_url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        fail(f"--node {node_url!r} is not a node URL: write e.g. {DEFAULT_NODE_URL} (or set MARKETCHAIN_NODE)")
    return NodeClient(node_url)


CLIENT_ERROR_HINTS = {
    "unreachable": " (is a node running? start one with `marketchain testnet start` or pass --node)",
    "not_found": " (ids are transaction hashes; an object exists once its transaction is final: "
                 "send without --no-wait, or check the id and --node)",
    "timeout": " (the node is up but slow or stalled; wait longer with --timeout, or look it up later with "
               "`marketchain query tx HASH`)",
    "fee_too_low": " (omit --fee to pay the chain's min_fee)",
}
"""What to do about a node error, by its code."""


ID_LOOKUP = re.compile(r"no (shop|listing|order|transaction|committed transaction) [0-9a-f]{64}$")
"""A `not_found` about an id that is a transaction hash: the only one the `not_found` hint is about."""

NONCE_HINTS = {
    True: " (another transaction of this key is pending or committed; omit --nonce to use the next one)",
    False: " (other programs kept taking this key's next nonce; retry when they are done)",
}
"""The hint of `bad_nonce`, by whether `--nonce` was given (only then is omitting it advice)."""


def client_error_text(error: ClientError, nonce_given: bool = False) -> str:
    """`code: message [node URL] (hint)`: a node error as one line of advice, its money figures in MKT
    (a 410 reads "pruned on this node: <what the node keeps>")."""
    hint = NONCE_HINTS[nonce_given] if error.code == "bad_nonce" else CLIENT_ERROR_HINTS.get(error.code, "")
    if error.code == "not_found" and not ID_LOOKUP.match(error.message):
        hint = ""
    where = f" [node {error.node}]" if error.node and error.code != "unreachable" else ""
    if error.code == "pruned":  # 410 (R40): the node no longer keeps it, or never had it (state sync)
        return f"pruned on this node: {error.message}{where}"
    return f"{error.code}: {render_money_message(error.message)}{where}{hint}"


def call(function: Callable[..., Result], *arguments: Any) -> Result:
    """`function(*arguments)`, turning a node error into a one-line CLI error."""
    try:
        return function(*arguments)
    except ClientError as error:
        fail(client_error_text(error))


class CommandGroup(click.Group):
    """A root group: a user error that escaped a command is a one-line message, never a traceback.

    `user_errors` lists the error types whose text is the whole message; the CLI adds
    those of the node's configuration to it.
    """

    user_errors: tuple[type[Exception], ...] = (TestnetError,)
    """Errors whose text is the whole message (printed with `str`)."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command, converting user errors to `click.ClickException`."""
        try:
            return super().invoke(ctx)
        except self.user_errors as error:
            raise click.ClickException(str(error)) from None
        except KeystoreError as error:
            raise click.ClickException(error.message) from None
        except ClientError as error:
            raise click.ClickException(client_error_text(error)) from None
        except PermissionError as error:
            raise click.ClickException(f"permission denied: {error.filename or error}") from None


node_option = click.option("--node", "node_url", envvar="MARKETCHAIN_NODE", default=DEFAULT_NODE_URL,
                           show_default=True, help="Node API URL ($MARKETCHAIN_NODE).")
"""`--node URL` (or $MARKETCHAIN_NODE), passed as `node_url`."""

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
"""`--json`, passed as `as_json`."""

home_option = click.option("--home", required=True, type=click.Path(file_okay=False, path_type=Path))
"""`--home DIR` of a testnet (required)."""

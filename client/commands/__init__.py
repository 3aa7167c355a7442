"""The command groups of the `marketchain` CLI that run on a user's machine.

One module per group: `keys`, `testnet`, `devnet`, `tx` (with `tx_orders`, `tx_items`),
`query`, `verify`, `merchant`, and `sync` (`node sync-status`); `common`, `types` and `sending` hold
what they share. None of them imports `node`: the commands that run a node in this
process (`init`, `node start`, `config show`) live in `node.commands`, and `cli.py`
hands them to `command_line` to assemble the whole CLI.
"""

from __future__ import annotations

from collections.abc import Sequence

import click

from client.commands.common import CommandGroup
from client.commands.devnet import devnet
from client.commands.keys import keys
from client.commands.merchant import merchant
from client.commands.query import query
from client.commands.sync import sync_status
from client.commands.testnet import testnet
from client.commands.tx import tx
from client.commands.verify import verify

CLIENT_COMMANDS: tuple[click.Command, ...] = (keys, testnet, devnet, tx, query, verify, merchant)
"""The top-level commands that only read local files or talk to a node over HTTP."""


def command_line(
    commands: Sequence[click.Command] = (),
    node_commands: Sequence[click.Command] = (),
    user_errors: tuple[type[Exception], ...] = (),
) -> click.Group:
    """The root `marketchain` group: the client's commands plus `commands` (top level) and
    `node_commands` (under `marketchain node`, beside `sync-status`).

    `user_errors` are further exception types printed as a one-line error, never a traceback.
    """
    root = CommandGroup("main", help="marketchain: a peer-to-peer marketplace blockchain node.")
    root.user_errors = (*root.user_errors, *user_errors)
    click.version_option(package_name="marketchain")(root)
    node = click.Group("node", help="Run a node, or follow a node's block sync.")
    for command in (*node_commands, sync_status):
        node.add_command(command)
    for command in (*CLIENT_COMMANDS, node, *commands):
        root.add_command(command)
    whole_summaries(root)
    return root


def whole_summaries(command: click.Command) -> None:
    """Give every command without one a `short_help`: the first paragraph of its help, whole, so that
    `--help` lists never cut a summary mid-sentence (click would truncate it to fit)."""
    if command.short_help is None and command.help:
        command.short_help = " ".join(command.help.strip().split("\n\n")[0].split())
    for child in getattr(command, "commands", {}).values():
        whole_summaries(child)

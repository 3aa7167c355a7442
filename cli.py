"""`marketchain`: the command line of the marketchain node (PROTOCOL §11).

Signing commands sign locally; keys never leave the machine. Reads talk to a node
over HTTP (`--node`, or `MARKETCHAIN_NODE`, default http://127.0.0.1:26657).

This file only assembles the groups: the client's commands (`client.commands`: keys,
testnet, devnet, tx, query, verify, node sync-status) and the node's (`node.commands`:
init, node start, config show).
"""

from __future__ import annotations

from client.commands import command_line
from node.commands import COMMANDS, NODE_COMMANDS, USER_ERRORS

main = command_line(commands=COMMANDS, node_commands=NODE_COMMANDS, user_errors=USER_ERRORS)
"""The `marketchain` command (entry point `cli:main`, or `python -m cli`)."""


if __name__ == "__main__":
    main()

"""`marketchain tx` checks its options and the payload schema (R10) before it signs or
talks to a node: a bad value is refused naming the option."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from client.commands import command_line
from marketplace_tx.primitives.crypto import KeyPair

main = command_line()
"""The client's commands (no node-side command is needed here)."""


def test_tx_commands_check_options_before_signing(tmp_path: Path) -> None:
    runner = CliRunner()
    key = tmp_path / "k.json"
    key.write_text(
        json.dumps({"address": KeyPair.generate().address.hex(), "secret_seed": "11" * 32})
    )
    cases = [
        (["shop-create", "--name", "Tea", "--points-bps", "150%"], "between 0 and 10000"),
        (["listing-update", "--listing", "12"], "not 64 hex"),
        (["listing-create", "--shop", "ab" * 32, "--title", "T", "--price", "1MKT"], "--stock"),
        (["shop-update", "--shop", "ab" * 32], "at least one"),
        (["order-refund", "--order", "ab" * 32], "exactly one of --amount and --all"),
        (["item-register", "--item-id", "no spaces", "--description", "d"], "letters, digits"),
        (["shop-create", "--name", "x" * 65], "invalid_field: payload.name"),
    ]
    for arguments, fragment in cases:
        result = runner.invoke(
            main, ["tx", *arguments, "--key", str(key), "--node", "http://127.0.0.1:9"]
        )
        assert result.exit_code != 0, arguments
        assert fragment in result.output, (arguments, result.output)

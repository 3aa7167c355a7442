"""The CLI's shared pieces: the option types of one factory (same messages as the four
classes they replaced), account references, and the assembly of the groups."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from client.commands import CLIENT_COMMANDS, command_line
from client.commands.types import AMOUNT, BPS, ID, ITEM_ID, SIGNED, parameter_type
from client.keystore import Keystore, resolve_address, write_plain_key
from marketplace_tx.primitives.crypto import KeyPair


def refusal(parameter_type: click.ParamType, text: str, option: str | None = None) -> str:
    """The usage error's message for `text`, given on `option` (or with no option at all)."""
    parameter = click.Option([option]) if option else None
    with pytest.raises(click.BadParameter) as raised:
        parameter_type.convert(text, parameter, None)
    return raised.value.message


def test_types_parse_and_pass_parsed_defaults_through() -> None:
    assert AMOUNT.convert("2.5MKT", None, None) == 2_500_000 and AMOUNT.convert(7, None, None) == 7
    assert BPS.convert("5%", None, None) == 500 and BPS.convert(0, None, None) == 0
    assert ID.convert("ab" * 32, None, None) == bytes([0xAB]) * 32
    assert ID.convert(bytes(32), None, None) == bytes(32)
    assert SIGNED.convert("-3", None, None) == -3
    assert ITEM_ID.convert("PUER-2019-0001", None, None) == "PUER-2019-0001"
    assert [t.name for t in (AMOUNT, BPS, ID, SIGNED, ITEM_ID)] == ["amount", "bps", "id", "signed", "item"]


def test_types_fail_with_the_parsers_messages() -> None:
    assert refusal(AMOUNT, "lots") == "'lots' is not an amount: write e.g. 2.5MKT or 2500000µMKT"
    assert refusal(AMOUNT, "12", "--price") == "12 is ambiguous: write 12MKT (12 MKT) or 12µMKT (0.000012 MKT)"
    assert refusal(BPS, "150%", "--points-bps") == "'150%' must be between 0 and 10000 basis points (100 %)"
    assert refusal(ID, "12", "--order") == "'12' is not 64 hex characters (an id is a transaction hash)"
    assert refusal(SIGNED, "3.5") == "'3.5' is not a whole number such as +5 or -3"
    assert refusal(ITEM_ID, "no spaces") == "'no spaces': 1 to 64 letters, digits or . _ : -"


def test_a_made_type_names_the_option_it_parses() -> None:
    seen = []

    def parse(text: str, option: str) -> str:
        seen.append(option)
        return text.upper()

    shout = parameter_type("shout", parse, "--default")
    assert shout.convert("a", click.Option(["--word"]), None) == "A"
    assert shout.convert("b", None, None) == "B"
    assert seen == ["--word", "--default"]


def test_an_account_is_hex_a_key_file_or_a_keystore_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARKETCHAIN_KEYSTORE", str(tmp_path / "keys"))
    key = KeyPair.generate()
    write_plain_key(tmp_path / "alice.json", key)
    named = Keystore().create("bob", None)
    assert resolve_address(key.address.hex()) == key.address
    assert resolve_address(str(tmp_path / "alice.json")) == key.address
    assert resolve_address("bob") == named.address
    assert resolve_address("carol") is None and resolve_address("ab" * 31) is None


def test_command_line_assembles_the_client_and_the_given_node_commands() -> None:
    @click.command("start")
    def start() -> None:
        """Run."""

    @click.command("init")
    def init() -> None:
        """Make a home."""

    client_only = command_line()
    assert set(client_only.commands) == {command.name for command in CLIENT_COMMANDS} | {"node"}
    assert set(client_only.commands["node"].commands) == {"sync-status"}
    whole = command_line(commands=[init], node_commands=[start])
    assert {"init", "keys", "tx", "query", "verify", "testnet", "devnet"} <= set(whole.commands)
    assert set(whole.commands["node"].commands) == {"start", "sync-status"}
    help_text = CliRunner().invoke(whole, ["--help"]).output
    assert "marketchain: a peer-to-peer marketplace blockchain node." in help_text


def test_user_errors_are_one_line(tmp_path: Path) -> None:
    class Refused(Exception):
        pass

    @click.command("refuse")
    def refuse() -> None:
        """Always refuses."""
        raise Refused("no, because")

    result = CliRunner().invoke(command_line(commands=[refuse], user_errors=(Refused,)), ["refuse"])
    assert result.exit_code == 1 and result.output == "Error: no, because\n"
    missing = CliRunner().invoke(command_line(), ["testnet", "status", "--home", str(tmp_path), "--json"])
    assert missing.exit_code == 1 and "no testnet in" in missing.output
    keys = CliRunner().invoke(command_line(), ["keys", "list", "--json", "--keystore", str(tmp_path / "k")])
    assert keys.exit_code == 0 and json.loads(keys.output) == []

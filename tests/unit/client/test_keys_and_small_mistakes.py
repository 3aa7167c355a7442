"""Keys stay out of harm's way, and small mistakes are named (issue 12, points 5 and 6): new
passphrases of at least 8 characters, three tries for a wrong one, `keys delete/export/import`,
a missing key file is not called a bad key name, and an empty `--ship-to` is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from client.commands import command_line, common
from client.keystore import Keystore
from tests.fast_keys import fast_key_derivation

main = command_line()
"""The client's commands (no node-side command is needed here)."""


def environment(tmp_path: Path, secret: str = "correct horse") -> dict[str, str]:
    return {"MARKETCHAIN_KEYSTORE": str(tmp_path / "keys"), "MARKETCHAIN_PASSPHRASE": secret}


def test_a_new_passphrase_needs_eight_characters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fast_key_derivation(monkeypatch)
    short = CliRunner().invoke(main, ["keys", "new", "alice"], env=environment(tmp_path, "x"))
    assert short.exit_code == 1 and "at least 8 characters" in short.output
    assert not (tmp_path / "keys" / "alice.json").exists()
    assert CliRunner().invoke(main, ["keys", "new", "alice"], env=environment(tmp_path)).exit_code == 0


def test_keys_export_import_and_delete(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fast_key_derivation(monkeypatch)
    runner, env = CliRunner(), environment(tmp_path)
    address = runner.invoke(main, ["keys", "new", "carol", "--plain"], env=env).output.split()[1]
    exported = tmp_path / "carol-backup.json"
    done = runner.invoke(main, ["keys", "export", "carol", "--out", str(exported)], env=env)
    assert done.exit_code == 0, done.output
    document = json.loads(exported.read_text())
    assert "crypto" in document and "secret_seed" not in document and document["address"] == address
    again = runner.invoke(main, ["keys", "export", "carol", "--out", str(exported)], env=env)
    assert again.exit_code == 1 and "already exists" in again.output
    refused = runner.invoke(main, ["keys", "delete", "carol"], env=env)
    assert refused.exit_code == 1 and "--yes" in refused.output
    assert runner.invoke(main, ["keys", "delete", "carol", "--yes"], env=env).exit_code == 0
    assert Keystore(tmp_path / "keys").names() == []
    imported = runner.invoke(main, ["keys", "import", "carol2", "--file", str(exported)], env=env)
    assert imported.exit_code == 0 and address in imported.output
    wrong = runner.invoke(main, ["keys", "import", "carol3", "--file", str(exported)],
                          env={**env, "MARKETCHAIN_PASSPHRASE": "not the one"})
    assert wrong.exit_code == 1 and "wrong passphrase" in wrong.output
    shown = json.loads(runner.invoke(main, ["keys", "show", "carol2", "--json"], env=env).output)
    assert shown["address"] == address and shown["encrypted"] is True


def test_a_wrong_passphrase_gets_three_tries_at_a_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Keystore(tmp_path / "keys")
    key = store.create("dave", "correct horse", opslimit=1, memlimit=8192)
    monkeypatch.setenv("MARKETCHAIN_KEYSTORE", str(tmp_path / "keys"))
    monkeypatch.delenv("MARKETCHAIN_PASSPHRASE", raising=False)
    typed = iter(["wrong one", "wrong two", "correct horse"])
    monkeypatch.setattr(common, "passphrase", lambda prompt, confirm=False: next(typed))
    assert common.load_signing_key("dave").address == key.address
    typed = iter(["wrong one", "wrong two", "wrong three", "correct horse"])
    with pytest.raises(Exception, match="wrong passphrase"):
        common.load_signing_key("dave")


def test_a_missing_key_file_is_not_a_bad_key_name(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["tx", "transfer", "--key", str(tmp_path / "nope.json"), "--to", "ab" * 32,
                                       "--amount", "1MKT", "--node", "http://127.0.0.1:9"])
    assert result.exit_code == 1 and f"key file {tmp_path / 'nope.json'} does not exist" in result.output
    assert "invalid key name" not in result.output
    recipient = CliRunner().invoke(main, ["query", "account", "./accounts/nobody.json",
                                          "--node", "http://127.0.0.1:9"])
    assert "key file ./accounts/nobody.json does not exist" in recipient.output


def test_an_empty_ship_to_is_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["tx", "order-place", "--listing", "ab" * 32, "--ship-to", " ",
                                       "--key", "x.json", "--node", "http://127.0.0.1:9"])
    assert result.exit_code == 1 and "--ship-to is empty" in result.output


def test_the_ids_hint_only_for_an_id_lookup() -> None:
    from client.node_client import ClientError

    assert "ids are transaction hashes" in common.client_error_text(ClientError("not_found", f"no order {'ab' * 32}"))
    assert "ids are transaction hashes" not in common.client_error_text(ClientError("not_found", "no block at height 9"))
    assert "ids are transaction hashes" not in common.client_error_text(ClientError("not_found", "no item PUER-1"))


def test_help_summaries_are_never_cut() -> None:
    for group in ("tx", "query", "keys", "testnet", "node"):
        listing = CliRunner().invoke(main, [group, "--help"]).output.split("Commands:")[1]
        assert "..." not in listing, (group, listing)

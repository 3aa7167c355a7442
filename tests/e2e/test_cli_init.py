"""`marketchain init` keeps keys out of harm's way (issue 12, point 5): it never writes into a
non-empty directory, `--force` rewrites the config only, it says which key is funded and holds
`registrar`, and `.gitignore` covers the usual homes inside a checkout."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from client.commands import command_line
from node.commands import COMMANDS, NODE_COMMANDS, USER_ERRORS
from tests.paths import REPO_ROOT

main = command_line(commands=COMMANDS, node_commands=NODE_COMMANDS, user_errors=USER_ERRORS)
"""The whole `marketchain` command, assembled as cli.py does."""


def test_init_refuses_a_non_empty_directory_such_as_a_source_package(tmp_path: Path) -> None:
    package = tmp_path / "node"
    package.mkdir()
    (package / "__init__.py").write_text('"""A package."""\n')
    result = CliRunner().invoke(main, ["init", "--home", str(package)])
    assert result.exit_code == 1
    assert "is not empty (__init__.py)" in result.output and "choose another --home" in result.output
    assert sorted(path.name for path in package.iterdir()) == ["__init__.py"]
    forced = CliRunner().invoke(main, ["init", "--home", str(package), "--force"])
    assert forced.exit_code == 1 and "is not empty" in forced.output
    assert sorted(path.name for path in package.iterdir()) == ["__init__.py"]


def test_init_into_an_empty_directory_says_which_key_is_funded_and_registrar(tmp_path: Path) -> None:
    home = tmp_path / "empty"
    home.mkdir()
    result = CliRunner().invoke(main, ["init", "--home", str(home), "--fund", f"{'ab' * 32}=2MKT"])
    assert result.exit_code == 0, result.output
    validator = json.loads((home / "validator_key.json").read_text())["address"]
    assert (f"funded: {home / 'validator_key.json'} ({validator}) with 1,000,000 MKT (1000000000000 µMKT) "
            "and holds registrar") in result.output
    assert f"funded: {'ab' * 32} with 2 MKT (2000000 µMKT)\n" in result.output


def test_init_force_rewrites_the_config_and_never_the_keys(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert CliRunner().invoke(main, ["init", "--home", str(home), "--http-port", "30001"]).exit_code == 0
    kept = {name: (home / name).read_bytes() for name in ("node_key.json", "validator_key.json", "genesis.json")}
    again = CliRunner().invoke(main, ["init", "--home", str(home), "--http-port", "30002"])
    assert again.exit_code == 1 and "already initialized" in again.output and "--force" in again.output
    assert "port = 30001" in (home / "config.toml").read_text()
    forced = CliRunner().invoke(main, ["init", "--home", str(home), "--http-port", "30002", "--force"])
    assert forced.exit_code == 0, forced.output
    assert "keys, genesis and data are unchanged" in forced.output
    assert "port = 30002" in (home / "config.toml").read_text()
    assert {name: (home / name).read_bytes() for name in kept} == kept


@pytest.mark.parametrize("path", [
    "node/node_key.json", "node/validator_key.json", "node/config.toml", "node/genesis.json", "node/data/CURRENT",
    "home/validator_key.json", "testnet/node0/config.toml", "mynet/accounts/faucet.json", "alice_key.json",
])
def test_gitignore_covers_node_homes_in_a_checkout(path: str) -> None:
    assert subprocess.run(["git", "check-ignore", "-q", "--no-index", path], cwd=REPO_ROOT).returncode == 0


@pytest.mark.parametrize("path", ["node/node.py", "node/http/app.py", "client/keystore.py",
                                  "tests/vectors/protocol-v1.json", "configs/default.toml"])
def test_gitignore_keeps_source_files(path: str) -> None:
    assert subprocess.run(["git", "check-ignore", "-q", "--no-index", path], cwd=REPO_ROOT).returncode == 1


def test_init_fund_refuses_a_bare_number(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["init", "--home", str(tmp_path / "h"), "--fund", f"{'ab' * 32}=2"])
    assert result.exit_code == 1 and "2 is ambiguous: write 2MKT (2 MKT) or 2µMKT" in result.output
    assert not (tmp_path / "h").exists()

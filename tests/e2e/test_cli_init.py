"""`marketchain init` keeps keys out of harm's way (issue 12, point 5): it never writes into a
non-empty directory, `--force` rewrites the config only, it says which key is funded and holds
`registrar`, and `.gitignore` covers the usual homes inside a checkout. Issue 13: the home is
0700 and its keys 0600, `init --encrypt` writes them encrypted, and `node start` needs the
passphrase (a clear error without it or with a wrong one) and refuses a home others may write."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from client.commands import command_line
from client.keystore import read_key_info
from node.commands import COMMANDS, NODE_COMMANDS, USER_ERRORS
from node.config import ConfigError
from node.home import load_home
from tests.e2e.node_process import NodeProcess, free_port
from tests.fast_keys import fast_key_derivation
from tests.paths import REPO_ROOT

main = command_line(commands=COMMANDS, node_commands=NODE_COMMANDS, user_errors=USER_ERRORS)
"""The whole `marketchain` command, assembled as cli.py does."""

PASSPHRASE = "correct horse battery"
"""The passphrase of the encrypted homes below."""


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


# --- issue 13: keys at rest ----------------------------------------------------------------


def mode_of(path: Path) -> int:
    """The permission bits of `path`."""
    return stat.S_IMODE(path.stat().st_mode)


def encrypted_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *arguments: str) -> tuple[Path, Path]:
    """`init --encrypt --passphrase-file` in-process (fast Argon2id, tests/fast_keys.py): (home, file)."""
    fast_key_derivation(monkeypatch)
    secret = tmp_path / "passphrase.txt"
    secret.write_text(f"{PASSPHRASE}\n")
    home = tmp_path / "home"
    result = CliRunner().invoke(main, ["init", "--home", str(home), "--encrypt", "--passphrase-file", str(secret),
                                       *arguments])
    assert result.exit_code == 0, result.output
    assert "encrypted with the passphrase" in result.output and "--passphrase-file FILE" in result.output
    return home, secret


def test_init_writes_a_0700_home_and_0600_keys(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert CliRunner().invoke(main, ["init", "--home", str(home)]).exit_code == 0
    assert mode_of(home) == mode_of(home / "data") == 0o700
    assert mode_of(home / "node_key.json") == mode_of(home / "validator_key.json") == 0o600
    assert not read_key_info(home / "validator_key.json").encrypted  # without --encrypt: plain, as before


def test_init_encrypt_writes_both_keys_encrypted_and_load_needs_the_passphrase(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home, _ = encrypted_home(tmp_path, monkeypatch)
    for name in ("node_key.json", "validator_key.json"):
        assert read_key_info(home / name).encrypted and mode_of(home / name) == 0o600
        assert "secret_seed" not in (home / name).read_text()
    asked = []
    loaded = load_home(home, environ={}, passphrase=lambda: asked.append(1) or PASSPHRASE)
    assert asked == [1]  # asked once for both keys
    assert loaded.validator_key is not None
    assert loaded.validator_key.address == read_key_info(home / "validator_key.json").address
    with pytest.raises(ConfigError, match="is encrypted: a passphrase is needed"):
        load_home(home, environ={})
    with pytest.raises(ConfigError, match="wrong passphrase for key file .*node_key.json"):
        load_home(home, environ={}, passphrase=lambda: "not the passphrase")


def test_init_encrypt_refuses_a_short_or_missing_passphrase(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MARKETCHAIN_PASSPHRASE", raising=False)
    missing = CliRunner().invoke(main, ["init", "--home", str(tmp_path / "a"), "--encrypt"])
    assert missing.exit_code == 1 and "--encrypt needs a passphrase: pass --passphrase-file FILE" in missing.output
    short = CliRunner().invoke(main, ["init", "--home", str(tmp_path / "b"), "--encrypt"],
                               env={"MARKETCHAIN_PASSPHRASE": "x"})
    assert short.exit_code == 1 and "at least 8 characters" in short.output
    alone = CliRunner().invoke(main, ["init", "--home", str(tmp_path / "c"), "--passphrase-file", __file__])
    assert alone.exit_code == 1 and "pass both" in alone.output
    assert not any((tmp_path / name).exists() for name in "abc")


@pytest.mark.integration
def test_node_start_of_an_encrypted_home_needs_its_passphrase(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home, secret = encrypted_home(tmp_path, monkeypatch, "--http-port", str(free_port()),
                                  "--p2p-port", str(free_port()))
    monkeypatch.delenv("MARKETCHAIN_PASSPHRASE", raising=False)
    monkeypatch.delenv("MARKETCHAIN_VALIDATOR_PASSPHRASE", raising=False)
    start = [sys.executable, "-m", "cli", "node", "start", "--home", str(home)]
    for extra, env, expected in (
        ([], {}, "this home holds encrypted keys: a passphrase: pass --passphrase-file FILE, set "
                 "MARKETCHAIN_PASSPHRASE, or run at a terminal"),
        ([], {"MARKETCHAIN_PASSPHRASE": "not the passphrase"}, f"wrong passphrase for key file {home}/node_key.json"),
    ):
        refused = subprocess.run([*start, *extra], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
                                 stdin=subprocess.DEVNULL, env={**os.environ, **env})
        assert refused.returncode == 1 and expected in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr
    os.chmod(home, 0o750)  # readable by the group: tightened with a warning on start
    monkeypatch.setenv("MARKETCHAIN_PASSPHRASE", PASSPHRASE)
    with NodeProcess(home) as node:
        assert node.status()["validator"] == read_key_info(home / "validator_key.json").address.hex()
        assert mode_of(home) == 0o700 and "tightened to 700" in node.log_tail()
    os.chmod(home / "config.toml", 0o664)  # writable by the group: refused, as ssh refuses
    refused = subprocess.run([*start, "--passphrase-file", str(secret)], cwd=REPO_ROOT, capture_output=True,
                             text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert refused.returncode == 1 and "config.toml is writable by group or others (mode 664)" in refused.stderr

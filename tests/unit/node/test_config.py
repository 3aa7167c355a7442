"""Node configuration: the documented defaults, round trips and clear errors."""

from __future__ import annotations

import shutil
import tomllib
from dataclasses import replace
from pathlib import Path

import pytest

from client.formatting import format_amount, parse_amount
from node.config import ConfigError, HttpConfig, NodeConfig, load_config, render_config, render_toml
from tests.e2e.harness.config_file import edit_config
from tests.paths import REPO_ROOT

ROOT = REPO_ROOT


def test_documented_defaults_match_the_code(tmp_path: Path) -> None:
    shutil.copy(ROOT / "configs" / "default.toml", tmp_path / "config.toml")
    assert load_config(tmp_path) == NodeConfig()


def test_render_then_load_round_trips(tmp_path: Path) -> None:
    config = replace(NodeConfig(), moniker='say "hi"', http=HttpConfig(host="127.0.0.2", port=1234))
    (tmp_path / "config.toml").write_text(render_config(config))
    assert load_config(tmp_path) == config


def test_the_one_toml_writer_round_trips_any_config_mapping() -> None:
    values = {"moniker": "café\x7f", "http": {"port": 1, "open": True, "peers": ["a@b:1", "c"]}, "p2p": {}}
    assert tomllib.loads(render_toml(values)) == values


def test_the_harness_edits_config_with_the_node_writer(tmp_path: Path) -> None:
    """`edit_config` (tests/e2e/harness) writes exactly what `render_config` writes for the same options."""
    (tmp_path / "config.toml").write_text(render_config(NodeConfig()))
    edit_config(tmp_path, {"http": {"port": 4321}})
    expected = replace(NodeConfig(), http=replace(NodeConfig().http, port=4321))
    assert (tmp_path / "config.toml").read_text() == render_config(expected)
    assert load_config(tmp_path) == expected


def test_missing_options_take_defaults(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("[http]\nport = 9999\n")
    config = load_config(tmp_path)
    assert config.http.port == 9999
    assert config.http.host == "127.0.0.1"
    assert config.mempool == NodeConfig().mempool


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[http]\nport = \"x\"\n", "http.port must be a int"),
        ("[http]\nbogus = 1\n", "unknown option 'bogus'"),
        ("[nowhere]\n", "unknown section [nowhere]"),
        ("[http]\nport = 70000\n", "out of range"),
        ("[p2p]\npersistent_peers = [1]\n", "list of strings"),
        ("not toml at all = = =", "not valid TOML"),
        ("moniker = 5\n", "moniker must be a string"),
    ],
)
def test_bad_config_is_a_clear_error(tmp_path: Path, text: str, fragment: str) -> None:
    (tmp_path / "config.toml").write_text(text)
    with pytest.raises(ConfigError, match=None) as raised:
        load_config(tmp_path)
    assert fragment in str(raised.value)


def test_missing_config_says_how_to_create_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(tmp_path)
    assert "marketchain init" in str(raised.value)


@pytest.mark.parametrize(
    ("text", "micro"),
    [("2500000", 2_500_000), ("2.5MKT", 2_500_000), ("2 mkt", 2_000_000), ("7umkt", 7), ("1_000µMKT", 1000),
     ("0.000001MKT", 1)],
)
def test_amounts_parse(text: str, micro: int) -> None:
    assert parse_amount(text) == micro


@pytest.mark.parametrize("text", ["", "abc", "1.5", "0.0000001MKT", "-3", "5 btc", "1e6"])
def test_bad_amounts_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_amount(text)


def test_amounts_format() -> None:
    assert format_amount(1_234_500_000) == "1,234.5 MKT (1234500000 µMKT)"
    assert format_amount(7) == "0.000007 MKT (7 µMKT)"

"""Fuzzing of the files a node reads at start: genesis.json (PROTOCOL R33) and config.toml.

A genesis document of any JSON shape is refused with InvalidGenesis or survives a
JSON round trip; a config.toml of any content is refused with ConfigError or loads to
a configuration whose rendered text (`marketchain config show`) loads back to it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from marketplace_tx.chain.genesis import Genesis
from marketplace_tx.primitives.errors import InvalidGenesis
from node.config import ConfigError, NodeConfig, load_config, render_config
from tests.fuzz.strategies import (
    COUNTS,
    TEXT,
    fuzz_settings,
    genesis_documents,
    iteration_report,
    json_values,
    mutated,
    toml_documents,
    valid_genesis_json,
)

print_iteration_counts = iteration_report("tests/fuzz/test_fuzz_genesis_config.py")


@fuzz_settings(500)
@given(value=genesis_documents() | json_values)
def test_genesis_from_json(value: Any) -> None:
    """R33: a genesis document of any JSON shape is refused with InvalidGenesis."""
    COUNTS["Genesis.from_json"] += 1
    try:
        genesis = Genesis.from_json(value)
    except InvalidGenesis as error:
        assert error.code == "invalid_genesis"
        return
    assert Genesis.from_json(genesis.to_json()) == genesis
    assert len(genesis.hash) == 32


def test_genesis_with_a_lone_surrogate_chain_id() -> None:
    COUNTS["Genesis.from_json (lone surrogate chain_id)"] += 1
    document = valid_genesis_json()
    document["chain_id"] = json.loads('"\\ud800"')
    with pytest.raises(InvalidGenesis):
        Genesis.from_json(document)




CONFIG_HOME: dict[str, Path] = {}
"""One scratch directory per file-based decoder, reused across examples."""

@fuzz_settings(400)
@given(text=toml_documents() | TEXT | mutated(toml_documents().map(str.encode)).map(
    lambda data: data.decode("utf-8", "replace")))
def test_load_config(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    """`load_config` refuses any config.toml it cannot use with ConfigError naming the option."""
    COUNTS["load_config"] += 1
    home = CONFIG_HOME.setdefault("home", tmp_path_factory.mktemp("config-fuzz"))
    (home / "config.toml").write_text(text)
    try:
        config = load_config(home)
    except ConfigError:
        return
    assert isinstance(config, NodeConfig)
    _assert_render_round_trip(home, config)


def _assert_render_round_trip(home: Path, config: NodeConfig) -> None:
    """What `marketchain config show` prints for `config` loads back to `config`."""
    (home / "config.toml").write_text(render_config(config))
    assert load_config(home) == config


def test_rendered_config_is_loadable_toml(tmp_path: Path) -> None:
    COUNTS["load_config (render round trip, DEL)"] += 1
    (tmp_path / "config.toml").write_text('moniker = "a\\u007fb"\n')
    config = load_config(tmp_path)
    (tmp_path / "config.toml").write_text(render_config(config))
    assert load_config(tmp_path) == config


@fuzz_settings(100)
@given(data=st.binary(max_size=100))
def test_load_config_raw_bytes(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    """Raw bytes as config.toml: ConfigError, or a configuration that renders and loads back."""
    COUNTS["load_config (raw bytes)"] += 1
    home = CONFIG_HOME.setdefault("raw", tmp_path_factory.mktemp("config-raw"))
    (home / "config.toml").write_bytes(data)
    try:
        config = load_config(home)
    except ConfigError:
        return
    _assert_render_round_trip(home, config)

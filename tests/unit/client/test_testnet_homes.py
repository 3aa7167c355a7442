"""A new testnet's layout: `client.testnet.create_testnet` makes the keys and the genesis,
and one `marketchain testnet-homes` process (the node's own code) writes every home."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from client import testnet
from client.testnet import DEV_ACCOUNTS, create_testnet
from marketplace_tx.chain.params import Params


def test_create_testnet_writes_accounts_homes_and_the_description(tmp_path: Path) -> None:
    nodes = create_testnet(tmp_path / "net", 2, 30100, Params().with_overrides({"min_fee": "2"}), "chain-x")
    net = tmp_path / "net"
    assert sorted(path.stem for path in (net / "accounts").glob("*.json")) == sorted(DEV_ACCOUNTS)
    description = json.loads((net / "testnet.json").read_text())
    assert description == {"chain_id": "chain-x", "nodes": [node.to_json() for node in nodes]}
    genesis_texts = {(net / f"node{i}" / "genesis.json").read_text() for i in range(2)}
    assert len(genesis_texts) == 1, "one shared genesis"
    genesis = json.loads(genesis_texts.pop())
    assert genesis["chain_id"] == "chain-x" and genesis["params"]["min_fee"] == 2
    assert genesis["validators"] == sorted(node.validator for node in nodes)
    node_ids = [json.loads((net / f"node{i}" / "node_key.json").read_text())["address"] for i in range(2)]
    for index, node in enumerate(nodes):
        home = net / f"node{index}"
        assert node.home == str(home.resolve())
        assert json.loads((home / "validator_key.json").read_text())["address"] == node.validator
        config = tomllib.loads((home / "config.toml").read_text())
        assert config["moniker"] == f"node{index}"
        assert (config["p2p"]["port"], config["http"]["port"]) == (30100 + 2 * index, 30101 + 2 * index)
        other = 1 - index
        assert config["p2p"]["persistent_peers"] == [f"{node_ids[other]}@127.0.0.1:{30100 + 2 * other}"]


def test_a_home_that_exists_is_refused_with_the_nodes_message(tmp_path: Path) -> None:
    (tmp_path / "net" / "node0").mkdir(parents=True)
    (tmp_path / "net" / "node0" / "config.toml").write_text("")
    with pytest.raises(testnet.TestnetError, match=r"node0 is already initialized \(config.toml exists\)"):
        create_testnet(tmp_path / "net", 1, 30200, Params())
    assert not (tmp_path / "net" / "testnet.json").exists()


def test_an_existing_testnet_or_devnet_refuses_another_node_count(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from client.commands import command_line

    create_testnet(tmp_path / "net", 2, 30200, Params(), "chain-y")
    for command in (["testnet", "start"], ["devnet"]):
        result = CliRunner().invoke(command_line(), [*command, "--home", str(tmp_path / "net"), "--nodes", "4"])
        assert result.exit_code == 1 and "holds a 2-node" in result.output and "--nodes 4 does not apply" in \
            result.output, (command, result.output)

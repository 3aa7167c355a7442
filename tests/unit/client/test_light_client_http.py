"""Verified state reads over HTTP (PROTOCOL R38 then R37 then R36) against a node on a real
loopback socket (light_node.py) whose validator set changed three times: the SDK and the
`marketchain verify account|order|state|shop|listing|item` commands, honest and lying."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from client import (
    ClientError,
    NodeClient,
    StateVerificationFailed,
    verify_account,
    verify_item,
    verify_order,
    verify_shop,
)
from client.commands import command_line
from client.state_verification import verify_state_key
from marketplace_tx.rules.state_keys import account_key
from tests.unit.client.light_chain import TOP, genesis
from tests.unit.client.light_node import (
    ALICE,
    DEADLINE_KEY,
    ITEM_ID,
    ORDER_ID,
    SHOP_ID,
    Lies,
    light_node,
)

NOBODY = bytes(range(32))


def test_an_account_is_proven_through_three_set_changes() -> None:
    with light_node() as (url, lies):
        verified = verify_account(NodeClient(url), genesis(), ALICE)
    assert verified.decoded() == {"balance": 2_500_000, "nonce": 3}
    assert verified.height == TOP and verified.change_points == 3
    assert len(verified.header.signers) == 5 == len(verified.header.validators)
    # one change point per page: the client followed the cursor
    assert [path for path in lies.requests if path.startswith("/light/changes")] == [
        "/light/changes?after=0&limit=1000", "/light/changes?after=3&limit=1000",
        "/light/changes?after=6&limit=1000"]


def test_absence_is_proven_and_older_heights_need_fewer_changes() -> None:
    with light_node() as (url, _):
        absent = verify_account(NodeClient(url), genesis(), NOBODY)
        older = verify_account(NodeClient(url), genesis(), ALICE, 5)
    assert absent.value is None and absent.decoded() is None
    assert older.height == 5 and older.change_points == 1


def test_orders_shops_items_and_raw_keys_are_proven() -> None:
    with light_node() as (url, _):
        client = NodeClient(url)
        order = verify_order(client, genesis(), ORDER_ID).decoded()
        shop = verify_shop(client, genesis(), SHOP_ID).decoded()
        item = verify_item(client, genesis(), ITEM_ID).decoded()
        deadline = verify_state_key(client, genesis(), DEADLINE_KEY)
    assert order["state"] == "placed" and order["escrow"] == 1_000_000 and order["buyer"] == ALICE
    assert shop["name"] == "Tea House" and item["owner"] == ALICE
    assert deadline.value == b"" and deadline.decoded() == b""


def test_the_state_root_the_node_sends_along_is_never_used() -> None:
    with light_node(Lies(state_root="00" * 32)) as (url, _):
        assert verify_account(NodeClient(url), genesis(), ALICE).decoded()["nonce"] == 3


@pytest.mark.parametrize("lies, message", [
    (Lies(corrupt_proof=True), "R36, state proof: the proof does not lead to the header's state_root"),
    (Lies(skip_change=2), "R37, target header at height 12: validators_hash is not the hash of the trusted set"),
    (Lies(skip_change=1), "R37, change point at height 9: validators_hash"),
    (Lies(skip_change=0), "R37, change point at height 6: validators_hash"),
    (Lies(proof_height_offset=-1), "R36, state proof: the node answered for key .* at height 11"),
    (Lies(other_key=account_key(NOBODY)), "R36, state proof: the node answered for key"),
    (Lies(stuck_cursor=True), "R37, change points: the /light/changes cursor 0 does not advance"),
])
def test_a_lying_node_is_refused_naming_the_rule_and_step(lies: Lies, message: str) -> None:
    with light_node(lies) as (url, _), pytest.raises(StateVerificationFailed, match=message):
        verify_account(NodeClient(url), genesis(), ALICE)


def test_an_answer_longer_than_the_client_reads_is_refused() -> None:
    with light_node(Lies(padding=20_000)) as (url, _):
        client = NodeClient(url)
        assert verify_account(client, genesis(), ALICE).decoded()["nonce"] == 3
        client.max_response_bytes = 10_000
        with pytest.raises(ClientError) as caught:
            verify_account(client, genesis(), ALICE)
    assert caught.value.code == "response_too_large"


def test_another_chain_is_named_before_anything_is_checked() -> None:
    with light_node() as (url, _), pytest.raises(StateVerificationFailed, match="the node serves chain"):
        verify_account(NodeClient(url), genesis("elsewhere"), ALICE)


# --- the CLI -----------------------------------------------------------------------------------------


def run(*arguments: str) -> tuple[int, str]:
    """Exit code and combined output of `marketchain ARGUMENTS`."""
    result = CliRunner().invoke(command_line(), list(arguments))
    return result.exit_code, result.output


@pytest.fixture
def genesis_file(tmp_path: Path) -> str:
    path = tmp_path / "genesis.json"
    path.write_text(json.dumps(genesis().to_json()))
    return str(path)


def test_cli_verify_account_prints_the_value_the_header_and_the_signers(genesis_file: str) -> None:
    with light_node() as (url, _):
        code, output = run("verify", "account", ALICE.hex(), "--genesis", genesis_file, "--node", url)
        assert code == 0, output
        assert "balance" in output and "2.5 MKT (2500000 µMKT)" in output
        rows = {line.split("  ", 1)[0]: line.split("  ", 1)[1].strip() for line in output.splitlines()}
        assert rows["nonce"] == "3" and rows["block height"] == str(TOP) and rows["signers"] == "5 of 5 validators"
        assert "through 3 validator-set change(s)" in output
        code, output = run("verify", "account", NOBODY.hex(), "--genesis", genesis_file, "--node", url, "--json")
    assert code == 0, output
    view = json.loads(output)
    assert view["present"] is False and view["balance"] == 0 and view["nonce"] == 0 and view["height"] == TOP


def test_cli_verify_order_shop_item_and_state(genesis_file: str) -> None:
    with light_node() as (url, _):
        common = ("--genesis", genesis_file, "--node", url)
        code, output = run("verify", "order", ORDER_ID.hex(), *common)
        assert code == 0 and "state" in output and "placed" in output and "1 MKT (1000000 µMKT)" in output
        assert output.index("state") < output.index("escrow") < output.index("buyer")
        code, output = run("verify", "shop", SHOP_ID.hex(), *common, "--height", "4")
        assert code == 0 and "Tea House" in output and "against block 4" in output
        code, output = run("verify", "item", ITEM_ID, *common)
        assert code == 0 and "owner" in output
        code, output = run("verify", "state", DEADLINE_KEY.hex(), *common)
        assert code == 0 and '"" (empty)' in output
        code, output = run("verify", "state", ("a" + "0" * 63).encode().hex(), *common)
        assert code == 0 and "absent (proven)" in output
        code, output = run("verify", "state", "xyz", *common)
        assert code == 2 and "is not hex" in output


def test_cli_without_genesis_says_why_and_exits_2() -> None:
    code, output = run("verify", "account", ALICE.hex(), "--node", "http://127.0.0.1:9")
    assert code == 2 and "--genesis FILE is required: the genesis file is the trust anchor" in output
    code, output = run("verify", "account", "no-such-key", "--node", "http://127.0.0.1:9")
    assert code == 2 and "--genesis FILE is required" in output
    code, output = run("verify", "order", "ab" * 32)
    assert code == 2 and "--genesis FILE is required" in output


def test_cli_refuses_a_lying_node_with_exit_1(genesis_file: str) -> None:
    with light_node(Lies(corrupt_proof=True)) as (url, _):
        code, output = run("verify", "account", ALICE.hex(), "--genesis", genesis_file, "--node", url)
    assert code == 1 and "NOT verified: R36, state proof" in output
    with light_node(Lies(skip_change=2)) as (url, _):
        code, output = run("verify", "order", ORDER_ID.hex(), "--genesis", genesis_file, "--node", url)
    assert code == 1 and "NOT verified: R37, target header at height 12" in output

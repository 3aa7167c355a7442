"""A command line that merchants can trust with money (issue 12), run as real processes
against one shared one-validator testnet: explicit units, concurrent sends from one key,
waiting by default, and failures that say so."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from client.keystore import write_plain_key
from marketplace_tx.primitives.crypto import KeyPair
from tests.e2e.cli_testnet import ADDRESS, DEADLINE_SECONDS, cli, cli_json, one_validator_testnet
from tests.paths import REPO_ROOT

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def testnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """One running one-validator testnet shared by this module: `(directory, node URL)`."""
    with one_validator_testnet(tmp_path_factory.mktemp("money") / "net") as running:
        yield running


def account(net: Path, name: str) -> str:
    """The key file of dev account `name`."""
    return str(net / "accounts" / f"{name}.json")


def balance(net: Path, url: str, name: str) -> int:
    """The balance of dev account `name`, in µMKT."""
    return cli_json("query", "account", account(net, name), "--node", url)["balance"]


def test_a_bare_number_is_refused_and_explicit_units_work(testnet: tuple[Path, str]) -> None:
    net, url = testnet
    bare = cli("tx", "transfer", "--key", account(net, "dave"), "--to", account(net, "bob"), "--amount", "5",
               "--node", url, check=False)
    assert bare.returncode == 2
    assert "5 is ambiguous: write 5MKT (5 MKT) or 5µMKT (0.000005 MKT)" in bare.stderr
    sent = cli("tx", "transfer", "--key", account(net, "dave"), "--to", account(net, "bob"), "--amount", "5µMKT",
               "--fee", "0.01MKT", "--node", url)
    assert re.search(r"^fee +0\.01 MKT \(10000 µMKT\)$", sent.stdout, re.MULTILINE), sent.stdout
    assert re.search(r"^payload\.amount +0\.000005 MKT \(5 µMKT\)$", sent.stdout, re.MULTILINE), sent.stdout


def test_four_concurrent_transfers_from_one_key_all_land(testnet: tuple[Path, str]) -> None:
    net, url = testnet
    before = balance(net, url, "bob")
    command = [sys.executable, "-m", "cli", "tx", "transfer", "--key", account(net, "carol"),
               "--to", account(net, "bob"), "--amount", "1MKT", "--node", url, "--json"]
    processes = [subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  stdin=subprocess.DEVNULL) for _ in range(4)]
    outputs = [process.communicate(timeout=DEADLINE_SECONDS) for process in processes]
    assert [process.returncode for process in processes] == [0, 0, 0, 0], outputs
    receipts = [json.loads(stdout) for stdout, _ in outputs]
    assert all(receipt["result"]["ok"] for receipt in receipts)
    assert len({receipt["nonce"] for receipt in receipts}) == 4
    assert balance(net, url, "bob") == before + 4_000_000
    assert (net / "accounts" / "carol.json.lock").exists()


def test_the_nonce_hint_only_when_nonce_was_given(testnet: tuple[Path, str]) -> None:
    net, url = testnet
    cli("tx", "transfer", "--key", account(net, "erin"), "--to", account(net, "bob"), "--amount", "1µMKT",
        "--node", url)
    reused = cli("tx", "transfer", "--key", account(net, "erin"), "--to", account(net, "bob"), "--amount", "2µMKT",
                 "--nonce", "0", "--node", url, check=False)
    assert reused.returncode == 1
    assert "bad_nonce" in reused.stderr and "omit --nonce" in reused.stderr


def test_no_wait_says_not_final_yet_and_wait_is_the_default(testnet: tuple[Path, str]) -> None:
    net, url = testnet
    submitted = cli("tx", "transfer", "--key", account(net, "alice"), "--to", account(net, "bob"),
                    "--amount", "1µMKT", "--node", url, "--no-wait")
    assert len(submitted.stdout.strip()) == 64
    assert "submitted, not final yet" in submitted.stderr
    waited = cli("tx", "transfer", "--key", account(net, "alice"), "--to", account(net, "bob"),
                 "--amount", "1µMKT", "--node", url)
    assert re.search(r"^status +committed$", waited.stdout, re.MULTILINE), waited.stdout
    assert re.search(r"^result +ok$", waited.stdout, re.MULTILINE), waited.stdout


def test_a_committed_failure_exits_1_with_code_and_message(testnet: tuple[Path, str]) -> None:
    net, url = testnet
    failed = cli("tx", "transfer", "--key", account(net, "dave"), "--to", account(net, "bob"),
                 "--amount", "999999999MKT", "--node", url, "--force", check=False)
    assert failed.returncode == 1
    assert "failed: insufficient_funds" in failed.stdout
    assert "Error: insufficient_funds: balance " in failed.stderr and " MKT (" in failed.stderr
    assert "only the fee of" in failed.stderr


def test_a_short_timeout_is_honoured(testnet: tuple[Path, str]) -> None:
    net, url = testnet
    slow = cli("tx", "transfer", "--key", account(net, "alice"), "--to", account(net, "bob"),
               "--amount", "1µMKT", "--node", url, "--timeout", "0.001", check=False)
    assert slow.returncode == 1 and "timeout" in slow.stderr and "--timeout" in slow.stderr


def test_waiting_shows_progress_on_a_terminal(testnet: tuple[Path, str]) -> None:
    net, url = testnet
    controller, terminal = pty.openpty()
    try:
        completed = subprocess.run(
            [sys.executable, "-m", "cli", "tx", "transfer", "--key", account(net, "alice"),
             "--to", account(net, "bob"), "--amount", "1µMKT", "--node", url],
            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=terminal, stdin=subprocess.DEVNULL, text=True,
            timeout=DEADLINE_SECONDS, env={**os.environ, "TERM": "xterm", "COLUMNS": "120"},
        )
        os.close(terminal)
        terminal = -1
        shown = b""
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
    finally:
        if terminal >= 0:
            os.close(terminal)
        os.close(controller)
    assert completed.returncode == 0, completed.stdout
    assert b"to be final" in shown


@pytest.fixture(scope="module")
def shop(testnet: tuple[Path, str]) -> str:
    """A shop of alice (granted the merchant role), named Tea, that lets buyers pay 10 % with points."""
    net, url = testnet
    cli("tx", "role-grant", "--key", account(net, "faucet"), "--account", account(net, "alice"), "--role", "merchant",
        "--evidence-hash", "cd" * 32, "--node", url)
    return cli_json("tx", "shop-create", "--key", account(net, "alice"), "--name", "Tea", "--max-redeem-bps", "10%",
                    "--node", url)["shop_id"]


def test_doomed_transactions_are_refused_before_signing_and_cost_nothing(testnet: tuple[Path, str], shop: str,
                                                                         tmp_path: Path) -> None:
    net, url = testnet
    node = ("--node", url)
    alice, bob, erin = account(net, "alice"), account(net, "bob"), account(net, "erin")
    listing = cli_json("tx", "listing-create", "--key", alice, "--shop", shop, "--title", "Green tea",
                       "--price", "2MKT", "--stock", "3", *node)["listing_id"]
    order = cli_json("tx", "order-place", "--key", erin, "--listing", listing, "--ship-to", ADDRESS,
                     *node)["order_id"]
    pauper = tmp_path / "pauper.json"
    write_plain_key(pauper, KeyPair.generate())
    before = {name: cli_json("query", "account", account(net, name), *node) for name in ("bob", "erin")}
    refusals = [
        (("order-confirm", "--key", bob, "--order", order), "forbidden: ", "is not this order's buyer", "(§4)"),
        (("order-accept", "--key", erin, "--order", order), "forbidden: ", "is not this order's merchant", "(§4)"),
        (("order-confirm", "--key", erin, "--order", order), "invalid_state: ",
         "the order is placed; order_confirm needs shipped or delivered or return_requested", "(§5)"),
        (("order-place", "--key", erin, "--listing", listing, "--ship-to", ADDRESS, "--quantity", "5"),
         "out_of_stock: ", "5 asked, 2 in stock", "(R13)"),
        (("order-place", "--key", erin, "--listing", listing, "--ship-to", ADDRESS, "--redeem-points", "100"),
         "insufficient_funds: ", "payload.redeem_points: 100 asked, 0 held", "(R21)"),
        (("order-place", "--key", erin, "--listing", listing, "--ship-to", ADDRESS, "--redeem-points", "900000"),
         "invalid_field: ", "the shop allows at most 200000", "(R21)"),
        (("order-place", "--key", str(pauper), "--listing", listing, "--ship-to", ADDRESS),
         "insufficient_funds: ", "balance 0 MKT (0 µMKT) is below 2 MKT (2000000 µMKT) + the fee", "(R11)"),
        (("transfer", "--key", erin, "--to", bob, "--amount", "99999999MKT"), "insufficient_funds: ",
         "is below 99,999,999 MKT", "(R11)"),
        (("order-refund", "--key", alice, "--order", order, "--amount", "1MKT"), "invalid_state: ",
         "the order is placed", "(§5)"),
    ]
    for arguments, code, message, rule in refusals:
        refused = cli("tx", *arguments, *node, check=False)
        assert refused.returncode == 1, (arguments, refused.stdout, refused.stderr)
        assert f"Error: {code}" in refused.stderr and message in refused.stderr and rule in refused.stderr, \
            (arguments, refused.stderr)
        assert "Nothing was signed or sent" in refused.stderr and refused.stdout == ""
    dry = cli("tx", "order-place", "--key", erin, "--listing", listing, "--ship-to", ADDRESS, "--dry-run", *node)
    assert "pays 2 MKT (2000000 µMKT) into the escrow of a new order (placed)" in dry.stdout
    assert "stock of listing" in dry.stdout and "2 → 1" in dry.stdout and "nothing was signed or sent" in dry.stdout
    after = {name: cli_json("query", "account", account(net, name), *node) for name in ("bob", "erin")}
    assert [(view["balance"], view["nonce"]) for view in after.values()] == \
        [(view["balance"], view["nonce"]) for view in before.values()]
    assert cli_json("query", "order", order, *node)["state"] == "placed"


def test_verify_against_another_chains_genesis_says_the_chain_ids_differ(testnet: tuple[Path, str],
                                                                         tmp_path: Path) -> None:
    net, url = testnet
    receipt = cli_json("tx", "transfer", "--key", account(net, "alice"), "--to", account(net, "bob"),
                       "--amount", "1µMKT", "--node", url)
    genesis = json.loads((net / "node0" / "genesis.json").read_text())
    other = tmp_path / "other-genesis.json"
    other.write_text(json.dumps({**genesis, "chain_id": "another-chain"}))
    refused = cli("verify", "tx", receipt["hash"], "--genesis", str(other), "--node", url, check=False)
    assert refused.returncode == 1
    assert "the chain ids differ: the genesis is of chain 'another-chain'" in refused.stderr


def test_the_merchants_inbox_follows_orders_and_views_name_shops_and_keys(
        testnet: tuple[Path, str], shop: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    net, url = testnet
    node = ("--node", url)
    alice, erin = account(net, "alice"), account(net, "erin")
    monkeypatch.setenv("MARKETCHAIN_KEYSTORE", str(tmp_path / "keys"))
    seed = json.loads((net / "accounts" / "alice.json").read_text())["secret_seed"]
    cli("keys", "import", "alice", "--seed", seed, "--plain")
    listing = cli_json("tx", "listing-create", "--key", alice, "--shop", shop, "--title", "Oolong",
                       "--price", "3MKT", "--stock", "5", *node)["listing_id"]
    inbox = subprocess.Popen([sys.executable, "-m", "cli", "query", "orders", "--follow", "--merchant", alice,
                              "--count", "2", *node], cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, stdin=subprocess.DEVNULL)
    assert inbox.stderr is not None and "following orders of merchant" in inbox.stderr.readline()
    time.sleep(1.0)
    order = cli_json("tx", "order-place", "--key", erin, "--listing", listing, "--ship-to", ADDRESS, *node)["order_id"]
    cli("tx", "order-accept", "--key", alice, "--order", order, *node)
    stdout, _ = inbox.communicate(timeout=DEADLINE_SECONDS)
    assert inbox.returncode == 0
    lines = stdout.splitlines()
    assert len(lines) == 2 and all(f"order {order}" in line for line in lines), stdout
    assert "new, placed  by order_place" in lines[0] and "placed → accepted  by order_accept" in lines[1]
    shown = cli("query", "listing", listing, *node).stdout
    assert re.search(r"^shop +Tea$", shown, re.MULTILINE), shown
    table = cli("query", "listings", "--shop", shop, *node).stdout.splitlines()
    assert any("Oolong" in line and " Tea " in line for line in table), table
    order_text = cli("query", "order", order, *node).stdout
    assert re.search(r"^merchant +[0-9a-f]{64} \(alice\)$", order_text, re.MULTILINE), order_text

"""The `marketchain` command: keys, init, testnet, tx, query, verify and devnet, for real.

Keys and init run in-process through click's runner; testnets and the devnet run as
real processes on loopback ports chosen free at run time.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from client.commands import command_line
from client.keystore import load_key_file
from client.sealing import open_sealed
from node.commands import COMMANDS, NODE_COMMANDS, USER_ERRORS
from tests.e2e.node_process import free_base_port
from tests.fast_keys import fast_key_derivation
from tests.paths import REPO_ROOT as ROOT

DEADLINE_SECONDS = 90

main = command_line(commands=COMMANDS, node_commands=NODE_COMMANDS, user_errors=USER_ERRORS)
"""The whole `marketchain` command, assembled as cli.py does (nothing imports cli.py)."""




def run_cli(*arguments: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    completed = subprocess.run(
        [sys.executable, "-m", "cli", *arguments],
        cwd=ROOT, capture_output=True, text=True, timeout=DEADLINE_SECONDS,
        env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL,
    )
    if check:
        assert completed.returncode == 0, f"{arguments}: {completed.stdout}\n{completed.stderr}"
    return completed


# --- keys and init, in-process ------------------------------------------------------


def test_keys_new_list_show(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fast_key_derivation(monkeypatch)
    runner = CliRunner()
    env = {"MARKETCHAIN_KEYSTORE": str(tmp_path / "keys"), "MARKETCHAIN_PASSPHRASE": "correct horse"}
    created = runner.invoke(main, ["keys", "new", "alice"], env=env)
    assert created.exit_code == 0, created.output
    address = created.output.split()[1]
    assert len(address) == 64
    plain = runner.invoke(main, ["keys", "new", "bob", "--plain"], env=env)
    assert plain.exit_code == 0, plain.output
    listed = runner.invoke(main, ["keys", "list", "--json"], env=env)
    rows = json.loads(listed.output)
    assert [(row["name"], row["encrypted"]) for row in rows] == [("alice", True), ("bob", False)]
    shown = json.loads(runner.invoke(main, ["keys", "show", "alice", "--json"], env=env).output)
    assert shown["address"] == address
    assert "secret" not in json.dumps(shown)
    again = runner.invoke(main, ["keys", "new", "alice"], env=env)
    assert again.exit_code == 1 and "already exists" in again.output


def test_keys_new_without_passphrase_source_fails_cleanly(tmp_path: Path) -> None:
    result = run_cli("keys", "new", "carol", env={"MARKETCHAIN_KEYSTORE": str(tmp_path)}, check=False)
    assert result.returncode == 1
    assert "MARKETCHAIN_PASSPHRASE" in result.stderr
    assert "Traceback" not in result.stderr


def test_keys_import_known_seed(tmp_path: Path) -> None:
    runner = CliRunner()
    seed = bytes(range(32)).hex()
    result = runner.invoke(main, ["keys", "import", "vector", "--seed", seed, "--plain",
                                  "--keystore", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8" in result.output


def test_init_writes_a_home_and_refuses_twice(tmp_path: Path) -> None:
    runner = CliRunner()
    home = tmp_path / "home"
    funded = "ab" * 32
    result = runner.invoke(main, ["init", "--home", str(home), "--chain-id", "shop-1", "--param", "min_fee=3",
                                  "--fund", f"{funded}=2MKT"])
    assert result.exit_code == 0, result.output
    for name in ("config.toml", "genesis.json", "node_key.json", "validator_key.json"):
        assert (home / name).is_file(), name
    genesis = json.loads((home / "genesis.json").read_text())
    assert genesis["chain_id"] == "shop-1"
    assert genesis["params"]["min_fee"] == 3
    assert {"address": funded, "balance": 2_000_000, "roles": []} in genesis["accounts"]
    validator = json.loads((home / "validator_key.json").read_text())["address"]
    assert genesis["validators"] == [validator]
    assert oct((home / "validator_key.json").stat().st_mode & 0o777) == "0o600"
    again = runner.invoke(main, ["init", "--home", str(home)])
    assert again.exit_code == 1 and "already initialized" in again.output


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        (["--param", "min_fee"], "NAME=VALUE"),
        (["--param", "nonsense=1"], "unknown parameter"),
        (["--param", "min_fee=ten"], "takes an integer"),
        (["--fund", "zz=1"], "neither 64 hex"),
    ],
)
def test_init_rejects_bad_options(tmp_path: Path, arguments: list[str], fragment: str) -> None:
    result = CliRunner().invoke(main, ["init", "--home", str(tmp_path / "h"), *arguments])
    assert result.exit_code != 0
    assert fragment in result.output


def test_query_unreachable_node_is_a_clear_error() -> None:
    port = free_base_port(1)
    result = CliRunner().invoke(main, ["query", "status", "--node", f"http://127.0.0.1:{port}"])
    assert result.exit_code == 1
    assert "unreachable" in result.output and "is a node running" in result.output


@pytest.mark.integration
def test_four_validator_testnet_agrees_and_reports_status(tmp_path: Path) -> None:
    net = tmp_path / "net"
    run_cli("testnet", "start", "--nodes", "4", "--home", str(net), "--base-port", str(free_base_port(8)))
    try:
        nodes = json.loads((net / "testnet.json").read_text())["nodes"]
        assert len(nodes) == 4 and len({node["validator"] for node in nodes}) == 4
        sent = json.loads(run_cli("tx", "transfer", "--key", str(net / "accounts" / "faucet.json"),
                                  "--to", str(net / "accounts" / "alice.json"), "--amount", "2MKT",
                                  "--node", nodes[3]["http"], "--wait", "--json").stdout)
        height = sent["height"]
        hashes = set()
        for node in nodes:
            deadline = time.monotonic() + DEADLINE_SECONDS
            while True:
                status = json.loads(run_cli("query", "status", "--node", node["http"], "--json").stdout)
                if status["height"] >= height or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            block = json.loads(run_cli("query", "block", str(height), "--node", node["http"], "--json").stdout)
            hashes.add(block["hash"])
            assert len(block["commit"]["signatures"]) >= 3
        assert len(hashes) == 1, "every node holds the same final block"
        rows = json.loads(run_cli("testnet", "status", "--home", str(net), "--json").stdout)
        assert all(row["running"] and row["peers"] == 3 for row in rows), rows
    finally:
        run_cli("testnet", "stop", "--home", str(net))


# --- a real testnet -----------------------------------------------------------------


@pytest.mark.integration
def test_testnet_transfer_query_verify_restart(tmp_path: Path) -> None:
    net = tmp_path / "net"
    base = free_base_port(2)
    run_cli("testnet", "start", "--nodes", "1", "--home", str(net), "--base-port", str(base),
            "--param", "min_fee=5")
    try:
        description = json.loads((net / "testnet.json").read_text())
        assert set(description) == {"chain_id", "nodes"}
        (node,) = description["nodes"]
        assert set(node) == {"name", "http", "p2p", "pid", "home", "validator"}
        assert node["http"] == f"http://127.0.0.1:{base + 1}" and node["p2p"] == f"127.0.0.1:{base}"
        faucet = json.loads((net / "accounts" / "faucet.json").read_text())
        assert set(faucet) == {"address", "secret_seed"}
        url = node["http"]
        sent = run_cli("tx", "transfer", "--key", str(net / "accounts" / "faucet.json"),
                       "--to", str(net / "accounts" / "alice.json"), "--amount", "1.5MKT", "--memo", "tea",
                       "--node", url, "--wait", "--json")
        receipt = json.loads(sent.stdout)
        assert receipt["status"] == "committed" and receipt["result"]["ok"] is True
        assert receipt["fee"] == 5
        alice = json.loads(run_cli("query", "account", str(net / "accounts" / "alice.json"),
                                   "--node", url, "--json").stdout)
        assert alice["balance"] == 100_000 * 1_000_000 + 1_500_000
        block = json.loads(run_cli("query", "block", str(receipt["height"]), "--node", url, "--json").stdout)
        assert receipt["hash"] in block["txs"]
        verified = json.loads(run_cli("verify", "tx", receipt["hash"], "--node", url, "--json",
                                      "--genesis", str(Path(node["home"]) / "genesis.json")).stdout)
        assert verified["verified"] is True and verified["height"] == receipt["height"]
        failing = run_cli("tx", "transfer", "--key", str(net / "accounts" / "bob.json"), "--to", "alice",
                          "--amount", "1µMKT", "--node", url, check=False)
        assert failing.returncode == 1 and "neither 64 hex" in failing.stderr
        overdraft = run_cli("tx", "transfer", "--key", str(net / "accounts" / "erin.json"),
                            "--to", faucet["address"], "--amount", "999999MKT", "--node", url, "--wait",
                            "--force", check=False)
        assert overdraft.returncode == 1 and "insufficient_funds" in overdraft.stdout
        status_rows = json.loads(run_cli("testnet", "status", "--home", str(net), "--json").stdout)
        assert status_rows[0]["running"] is True and status_rows[0]["height"] >= receipt["height"]
        height_before = status_rows[0]["height"]
    finally:
        run_cli("testnet", "stop", "--home", str(net))
    stopped = json.loads(run_cli("testnet", "status", "--home", str(net), "--json").stdout)
    assert stopped[0]["running"] is False
    run_cli("testnet", "start", "--home", str(net))
    try:
        resumed = json.loads(run_cli("query", "status", "--node", url, "--json").stdout)
        assert resumed["height"] == height_before
        again = json.loads(run_cli("tx", "transfer", "--key", str(net / "accounts" / "faucet.json"),
                                   "--to", faucet["address"], "--amount", "1µMKT", "--node", url, "--wait",
                                   "--json").stdout)
        assert again["height"] == height_before + 1
    finally:
        run_cli("testnet", "stop", "--home", str(net))


@pytest.mark.integration
def test_devnet_seeds_demo_data_and_stops_on_interrupt(tmp_path: Path) -> None:
    base = free_base_port(8)
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "devnet", "--base-port", str(base), "--home", str(tmp_path / "dev")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL,
    )
    output = []
    deadline = time.monotonic() + DEADLINE_SECONDS
    try:
        assert process.stdout is not None
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            output.append(line)
            if "Press Ctrl-C" in line:
                break
        text = "".join(output)
        assert "Press Ctrl-C" in text, text
        url = f"http://127.0.0.1:{base + 1}"
        assert f"explorer      {url}/" in text
        with urllib.request.urlopen(url + "/", timeout=10) as response:
            assert "marketchain explorer" in response.read().decode()
        with urllib.request.urlopen(url + "/status", timeout=10) as response:
            assert json.load(response)["height"] >= 1
        accounts = tmp_path / "dev" / "accounts"
        alice = json.loads((accounts / "alice.json").read_text())["address"]
        with urllib.request.urlopen(f"{url}/accounts/{alice}", timeout=10) as response:
            assert json.load(response)["roles"] == ["merchant"]

        def get(path: str) -> dict:
            with urllib.request.urlopen(url + path, timeout=10) as response:
                return json.load(response)

        assert "seeded in" in text and "demo data:" in text
        assert len(get("/shops")["shops"]) == 2
        for state in (
            "accepted",
            "shipped",
            "delivered",
            "return_requested",
            "disputed",
            "completed",
            "cancelled",
            "rejected",
            "refunded",
            "resolved",
        ):
            assert get(f"/orders?state={state}")["orders"], state
        # The placed order expires by the chain's deadline a minute after it was placed (R15).
        assert get("/orders?state=placed")["orders"] or get("/orders?state=expired")["orders"]
        (offer,) = get("/orders?state=return_requested")["orders"]
        assert 0 < offer["escrow"] < offer["total_price"], "a partial refund offer"
        reviews = [
            order["review"]
            for order in get("/orders?state=completed")["orders"]
            if order.get("review")
        ]
        assert any("reply" in review for review in reviews), "a review with the merchant's reply"
        kinds = [entry["kind"] for entry in get("/items/PUER-2019-0001")["history"]]
        assert kinds[0] == "registered" and "inspected" in kinds and kinds[-1] == "sold"
        _check_merchant_report(url, get)
        _check_digital_order_delivered(text, tmp_path / "dev", get)
    finally:
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=DEADLINE_SECONDS)
    assert process.returncode == 0, "".join(output) + rest
    assert "stopping the devnet" in rest
    agent_pid = int((tmp_path / "dev" / "merchant" / "agent.pid").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(agent_pid, 0)  # Ctrl-C of the devnet stopped its merchant agent
    description = json.loads((tmp_path / "dev" / "testnet.json").read_text())
    assert all(node["pid"] is None for node in description["nodes"])


def _check_merchant_report(url: str, get: Any) -> None:
    """`merchant report --csv` on the demo tea shop agrees with its orders on the chain (issue 16)."""
    (tea,) = [shop["id"] for shop in get("/shops")["shops"] if shop["name"] == "Alice's Tea House"]
    today = datetime.now(UTC).date()
    for _ in range(5):  # again if the placed order expired (R15) while the report was read
        orders = get(f"/orders?shop={tea}&limit=100")["orders"]
        result = CliRunner().invoke(main, ["merchant", "report", "--shop", tea, "--since",
                                           str(today - timedelta(days=1)), "--csv", "--node", url])
        if orders == get(f"/orders?shop={tea}&limit=100")["orders"]:
            break
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    header, total = lines[0].split(","), dict(zip(lines[0].split(","), lines[-1].split(","), strict=True))
    assert header[0] == "date" and total["date"] == "total" and len(lines) == 4, result.output
    figures = {name: int(value) for name, value in total.items() if name != "date"}
    assert figures["orders_placed"] == len(orders) == 8
    assert figures["gross"] == sum(order["total_price"] for order in orders)
    assert figures["escrow_released"] == sum(order["merchant_paid"] for order in orders)
    assert figures["refunds"] == sum(order["refunded"] for order in orders)
    assert figures["gross"] - figures["points_redeemed"] == (figures["escrow_released"] + figures["refunds"]
                                                             + figures["arbiter_fees"]
                                                             + sum(order["escrow"] for order in orders))
    # Alice's 9 order transactions: 2 accepts, a refund, 5 shipments, a review reply.
    assert figures["tx_fees"] == 9 * get("/status")["min_fee"]
    unknown = CliRunner().invoke(main, ["merchant", "report", "--shop", "ab" * 32, "--since", str(today),
                                        "--node", url])
    assert unknown.exit_code == 1 and "no such shop" in unknown.output
    bad = CliRunner().invoke(main, ["merchant", "report", "--shop", tea, "--since", "2026-02-30", "--node", url])
    assert bad.exit_code == 1 and "is not a date of the form YYYY-MM-DD" in bad.output


def _check_digital_order_delivered(text: str, home: Path, get: Any) -> None:
    """The devnet's merchant agent delivers the demo gift-card order; its buyer opens a code (issue 16)."""
    (order_id,) = re.findall(r"^  order +([0-9a-f]{64})  digital$", text, re.M)
    deadline = time.monotonic() + DEADLINE_SECONDS
    while (order := get(f"/orders/{order_id}"))["state"] != "delivered" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert order["state"] == "delivered" and order["digital"] is True, order
    heidi = load_key_file(home / "accounts" / "heidi.json", None)
    assert open_sealed(heidi, bytes.fromhex(order["delivery"])).decode().startswith("GIFT-25-")
    # The lines the devnet prints: erin buys a gift card from the CLI and opens the code the agent sent.
    buy = re.search(r"^  buy one +marketchain (.+?) \\\n +(.+)$", text, re.M)
    opening = re.search(r"^  open it +marketchain (.+)$", text, re.M)
    assert buy and opening, text
    placed = CliRunner().invoke(main, shlex.split(f"{buy[1]} {buy[2]}"))
    assert placed.exit_code == 0, placed.output
    (erin_order,) = re.findall(r"^order id: ([0-9a-f]{64})$", placed.output, re.M)
    while get(f"/orders/{erin_order}")["state"] != "delivered" and time.monotonic() < deadline:
        time.sleep(0.2)
    opened = CliRunner().invoke(main, shlex.split(opening[1].replace("ORDER", erin_order)))
    assert opened.exit_code == 0 and re.search(r"^  GIFT-25-[0-9A-F-]{14}$", opened.output, re.M), opened.output

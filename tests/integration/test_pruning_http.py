"""Issue 15, pruning through a real node (R40; node/pruning.py, docs/api.md): a node with
`[storage] keep_blocks = 3` keeps its last 3 blocks, and everything older answers 410
`pruned` with a message saying what it keeps — never a wrong or empty answer:

- `/blocks/{h}`, `/blocks/{h}/raw`, `/blocks/{h}/commit` of a pruned height; `/blocks?before=`
  lists what is kept and says where it stops (`pruned_below`), a page wholly below is 410;
- `/txs/{hash}` and `/txs/{hash}/proof` of a transaction it cannot find (it may be in a pruned
  block); `/accounts/{a}/txs` lists the kept rows and says `pruned_below`;
- `/light/changes`, the head's commit and the latest block keep answering; `/state/proof`
  below `keep_state` is 410 as before;
- `marketchain query` prints "pruned on this node: …" and exits non-zero; the explorer's
  error box says "Pruned on this node".
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from marketplace_tx.primitives.crypto import KeyPair
from marketplace_tx.rules.state_keys import account_key
from tests.e2e.node_process import NodeProcess, is_error_body, wait_until
from tests.e2e.static_page import page_driver, run_module_script
from tests.integration.signing_client import SigningClient
from tests.paths import REPO_ROOT

pytestmark = pytest.mark.integration

driver = page_driver
"""A real Chromium with the explorer's modules (a module-scoped fixture)."""

KEEP_BLOCKS = 3
KEEP_STATE = 2
TRANSFERS = 8
DEADLINE_S = 120.0
"""Generous: the machine is loaded."""
FUNDED = 10_000_000


def key(name: str) -> KeyPair:
    return KeyPair.from_seed(hashlib.sha256(b"test_pruning_http/" + name.encode()).digest())


ALICE, BOB = key("alice"), key("bob")


@dataclass
class Pruned:
    node: NodeProcess
    first_tx: str
    """A transaction of a block that is pruned."""
    first_height: int
    last_tx: str
    """A transaction of a kept block."""
    head: int
    oldest: int


@pytest.fixture(scope="module")
def pruned(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pruned]:
    config = {"storage": {"keep_blocks": KEEP_BLOCKS, "keep_state": KEEP_STATE}}
    with NodeProcess(tmp_path_factory.mktemp("pruning") / "node", fund={ALICE.address: FUNDED}, config=config) as node:
        client = SigningClient(node)
        views = [client.ok(client.tx(ALICE, "transfer", to=BOB.address, amount=1_000 + n))[0] for n in range(TRANSFERS)]
        head = node.height()
        oldest = head - KEEP_BLOCKS + 1

        def pruned_to_the_kept_range() -> dict[str, Any] | None:
            status, body = node.get("/blocks?limit=100")
            return body if status == 200 and body.get("pruned_below") == oldest else None

        wait_until(pruned_to_the_kept_range, DEADLINE_S, f"blocks below {oldest} pruned")
        assert views[0]["height"] < oldest <= views[-1]["height"]
        yield Pruned(node, views[0]["hash"], views[0]["height"], views[-1]["hash"], head, oldest)


def assert_pruned(answer: tuple[int, Any], pruned: Pruned) -> str:
    status, body = answer
    assert status == 410 and is_error_body(body) and body["error"]["code"] == "pruned", answer
    message = body["error"]["message"]
    assert f"this node keeps blocks {pruned.oldest} … " in message and "older ones are pruned" in message, message
    return message


def test_pruned_blocks_and_commits_are_410_and_kept_ones_answer(pruned: Pruned) -> None:
    node = pruned.node
    for path in ("", "/raw", "/commit"):
        assert_pruned(node.get(f"/blocks/{pruned.first_height}{path}"), pruned)
        assert_pruned(node.get(f"/blocks/{pruned.oldest - 1}{path}"), pruned)
    for height in range(pruned.oldest, pruned.head + 1):
        assert node.get_ok(f"/blocks/{height}")["height"] == height
    assert node.get_ok(f"/blocks/{pruned.head}/commit")["height"] == pruned.head
    assert node.get_ok("/blocks/latest")["height"] >= pruned.head
    status, body = node.get(f"/blocks/{pruned.head + 1000}")
    assert status == 404 and body["error"]["code"] == "not_found"  # above the head stays 404


def test_a_block_list_stops_at_the_oldest_kept_block_and_says_so(pruned: Pruned) -> None:
    node = pruned.node
    page = node.get_ok(f"/blocks?before={pruned.head + 1}&limit=100")
    assert [block["height"] for block in page["blocks"]] == list(range(pruned.head, pruned.oldest - 1, -1))
    assert page["next"] is None and page["pruned_below"] == pruned.oldest
    first = node.get_ok(f"/blocks?before={pruned.head + 1}&limit=1")
    assert first["next"] == pruned.head and "pruned_below" not in first
    assert_pruned(node.get(f"/blocks?before={pruned.oldest}"), pruned)


def test_transactions_it_cannot_find_are_410_and_kept_ones_answer(pruned: Pruned) -> None:
    node = pruned.node
    assert_pruned(node.get(f"/txs/{pruned.first_tx}"), pruned)
    assert_pruned(node.get(f"/txs/{pruned.first_tx}/proof"), pruned)
    message = assert_pruned(node.get(f"/txs/{'ab' * 32}"), pruned)  # it cannot tell: maybe in a pruned block
    assert "may be in an older block" in message
    assert node.get_ok(f"/txs/{pruned.last_tx}")["status"] == "committed"
    assert node.get_ok(f"/txs/{pruned.last_tx}/proof")["hash"] == pruned.last_tx


def test_an_account_history_lists_the_kept_rows_and_says_where_it_stops(pruned: Pruned) -> None:
    history = pruned.node.get_ok(f"/accounts/{ALICE.address.hex()}/txs?limit=100")
    heights = [row["height"] for row in history["txs"]]
    assert heights and min(heights) >= pruned.oldest and history["pruned_below"] == pruned.oldest
    assert history["next"] is None


def test_light_changes_and_recent_state_proofs_still_answer(pruned: Pruned) -> None:
    node = pruned.node
    assert node.get_ok("/light/changes") == {"changes": [], "next": None}
    state_key = account_key(ALICE.address).hex()
    head = node.height()
    assert node.get_ok(f"/state/proof?key={state_key}&height={head}")["height"] == head
    status, body = node.get(f"/state/proof?key={state_key}&height={pruned.first_height}")
    assert status == 410 and body["error"]["code"] == "pruned"


def test_metrics_report_the_oldest_block_and_the_pruned_count(pruned: Pruned) -> None:
    with urllib.request.urlopen(pruned.node.url + "/metrics", timeout=DEADLINE_S) as response:
        text = response.read().decode()
    values = {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines()
              if line.startswith(("marketchain_oldest_block_height ", "marketchain_pruned_blocks_total "))}
    assert values["marketchain_oldest_block_height"] >= pruned.oldest
    assert values["marketchain_pruned_blocks_total"] >= pruned.oldest - 1


def cli(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli", *arguments], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=DEADLINE_S)


def test_the_cli_says_pruned_on_this_node(pruned: Pruned) -> None:
    url = pruned.node.url
    for arguments in (("query", "block", str(pruned.first_height)), ("query", "tx", pruned.first_tx)):
        done = cli(*arguments, "--node", url)
        assert done.returncode != 0, done
        assert "pruned on this node: " in done.stderr and f"keeps blocks {pruned.oldest} … " in done.stderr, done
        assert "Traceback" not in done.stderr
    listed = cli("query", "account-txs", ALICE.address.hex(), "--node", url)
    assert listed.returncode == 0, listed
    assert f"older ones are pruned on this node: it keeps blocks from height {pruned.oldest} on" in listed.stdout


def test_the_explorer_says_pruned_on_this_node(pruned: Pruned, driver: Any) -> None:
    status, body = pruned.node.get(f"/blocks/{pruned.first_height}")
    assert status == 410
    text = run_module_script(driver, """
const {ApiError} = await load("api.js");
const {errorBox} = await load("dom.js");
const box = errorBox(new ApiError(410, argument.code, argument.message));
return {text: box.textContent, classes: box.className};
""", body["error"])
    assert text["text"] == f"Pruned on this node: {body['error']['message']}" and "pruned" in text["classes"]

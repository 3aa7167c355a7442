"""Issue 14, light client (PROTOCOL R36, R37, R38) on a live chain whose validator set changed
three times: `marketchain verify account|order|tx --genesis` succeed through the changes and
print the proven value, and a node that lies about proofs makes the CLI exit non-zero.

One testnet for every case (module fixture): 4 validators, node3 started with the test-only
`MARKETCHAIN_TEST_FAULT=equivocate`. Bob opens a shop and Alice orders from it while the
evidence against node3 is committed (removal by evidence); then validators 0-2 vote a new
validator X in (an address no node runs: 3 of 4 still make a quorum) and vote it out again.
The chain's change points are then: evidence, add by vote, remove by vote.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from client import payloads, seal_for
from client.keystore import load_key_file
from marketplace_tx.chain.transaction import sign_transaction
from marketplace_tx.primitives.crypto import KeyPair
from tests.e2e.harness.http_client import POLITE_PATIENCE_S, http_post
from tests.e2e.testnet_harness import FAULT_VARIABLE, Manifest, Testnet, wait_until
from tests.paths import REPO_ROOT

pytestmark = pytest.mark.integration

FAULTY = 3
"""The validator that equivocates and is removed by evidence."""
HONEST = [0, 1, 2]
"""The validators that stay."""
CORRUPT_PROOFS_VARIABLE = "MARKETCHAIN_TEST_CORRUPT_PROOFS"
"""H2's test-only lying switch: the node flips a byte of every proof it serves."""


class Chain:
    """The shared testnet and what the fixture did on it."""

    def __init__(self, net: Testnet) -> None:
        self.net = net
        """The running testnet."""
        self.genesis_file = Path(net.nodes[0].home) / "genesis.json"
        """The trust anchor the CLI is given."""
        self.order_id = ""
        """Alice's order in Bob's shop (hex)."""
        self.order_tx = ""
        """The hash of the order_place transaction (= the order id)."""
        self.last_vote = ""
        """The hash of the last validator_vote (final after every change)."""
        self.change_heights: list[int] = []
        """The change points /light/changes lists."""
        self.next_set_sizes: list[int] = []
        """The size of the set after each change point."""

    def validator_key(self, index: int) -> KeyPair:
        """Validator `index`'s key, from its node home."""
        return load_key_file(Path(self.net.nodes[index].home) / "validator_key.json", None)

    def submit(self, key: KeyPair, tx_type: str, payload: dict[str, Any]) -> str:
        """Sign with `key`'s next nonce and POST to node0; the transaction's hash."""
        node = self.net.nodes[0]
        status = node.status()
        nonce = node.get_ok(f"/accounts/{key.address.hex()}")["pending_nonce"]
        tx = sign_transaction(key, status["chain_id"], tx_type, payload, nonce, status["min_fee"])
        code, body = http_post(node.url + "/txs", tx.raw, patience_s=POLITE_PATIENCE_S)
        assert code == 202, f"POST /txs {tx_type}: {code} {body!r}"
        return body["hash"]

    def final(self, tx_hash: str) -> dict[str, Any]:
        """Wait until `tx_hash` is final on the honest validators; its view."""
        return self.net.wait_for_tx(tx_hash, HONEST)

    def set_of(self, height: int) -> set[str]:
        """The validator set that signs `height`, per node0."""
        return {entry["address"] for entry in self.net.node(0).get_ok(f"/validators?height={height}")["validators"]}


def cli(*arguments: str) -> subprocess.CompletedProcess[str]:
    """`marketchain ARGUMENTS` in a real process."""
    return subprocess.run([sys.executable, "-m", "cli", *arguments], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)


def _order_and_evidence(chain: Chain) -> None:
    """Bob's shop, a listing, Alice's order; meanwhile node3's equivocation is caught (R27)."""
    net = chain.net
    bob, alice = net.keys["bob"], net.keys["alice"]
    shop_id = chain.final(chain.submit(bob, "shop_create", payloads.shop_create("Tea House")))["hash"]
    listing_id = chain.final(chain.submit(bob, "listing_create", payloads.listing_create(
        bytes.fromhex(shop_id), "Puer 2019", 1_500_000, stock=5)))["hash"]
    chain.order_tx = chain.order_id = chain.final(chain.submit(alice, "order_place", payloads.order_place(
        bytes.fromhex(listing_id), 2, 1_500_000, seal_for(bob.address, b"1 Tea Road"))))["hash"]
    culprit = net.node(FAULTY).validator_address
    extra = [0]

    def punished() -> bool:
        evidence = net.node(0).get_ok("/validators")["evidence"]
        if any(entry["validator"] == culprit for entry in evidence):
            return True
        extra[0] += 1  # the honest three may decide before the culprit's votes arrive: another height
        net.wait_for_tx(net.transfer("alice", "bob", 1_000 + extra[0]), HONEST)
        return False

    wait_until(punished, net.timeout, lambda: net.describe("evidence against node3 committed"))
    wait_until(lambda: culprit not in chain.set_of(net.node(0).height() + 1), net.timeout,
               lambda: net.describe("node3 out of the set"))


def _vote(chain: Chain, action: str, validator: bytes) -> None:
    """Validators 0-2 vote `action validator`; wait until the change signs."""
    hashes = [chain.submit(chain.validator_key(index), "validator_vote", {"action": action, "validator": validator})
              for index in HONEST]
    for tx_hash in hashes:
        chain.final(tx_hash)
    chain.last_vote = hashes[-1]

    def in_force() -> bool:
        height = chain.net.node(0).height()
        member = validator.hex() in chain.set_of(height + 1)
        return member == (action == "add")

    wait_until(in_force, chain.net.timeout, lambda: chain.net.describe(f"{action} {validator.hex()} in force"))


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    manifest = Manifest(validators=4, faults={FAULTY: "equivocate"}, params={"open_merchants": "true"})
    with Testnet(tmp_path_factory.mktemp("verify-state") / "net", manifest) as net:
        chain = Chain(net)
        _order_and_evidence(chain)
        newcomer = KeyPair.from_seed(bytes(range(32))).address
        _vote(chain, "add", newcomer)
        _vote(chain, "remove", newcomer)
        chain.final(net.transfer("alice", "bob", 7))  # a block past the last change point
        changes = net.node(0).get_ok("/light/changes?after=0&limit=1000")["changes"]
        chain.change_heights = [change["height"] for change in changes]
        chain.next_set_sizes = [len(change["next_validators"]) for change in changes]
        yield chain


def verify_json(chain: Chain, *arguments: str, node: int = 0) -> dict[str, Any]:
    """`marketchain verify ARGUMENTS --genesis … --node … --json`, which must succeed."""
    done = cli("verify", *arguments, "--genesis", str(chain.genesis_file), "--node", chain.net.nodes[node].url,
               "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_set_changed_by_evidence_by_an_added_and_by_a_removed_validator(chain: Chain) -> None:
    # node3 removed by evidence (4 → 3), X added by vote (→ 4), X removed by vote (→ 3)
    assert chain.next_set_sizes == [3, 4, 3], (chain.change_heights, chain.next_set_sizes)
    assert chain.set_of(chain.net.node(0).height() + 1) == {chain.net.node(i).validator_address for i in HONEST}


def test_verify_account_proves_the_balance_through_every_change(chain: Chain) -> None:
    alice = chain.net.keys["alice"].address.hex()
    view = verify_json(chain, "account", alice)
    node_view = chain.net.node(0).get_ok(f"/accounts/{alice}")
    assert view["present"] and (view["balance"], view["nonce"]) == (node_view["balance"], node_view["nonce"])
    assert view["change_points"] == len(chain.change_heights) >= 3
    assert view["validators"] == 3 and len(view["signers"]) == 3
    text = cli("verify", "account", alice, "--genesis", str(chain.genesis_file), "--node", chain.net.nodes[1].url)
    assert text.returncode == 0, text.stderr
    assert "balance" in text.stdout and "µMKT" in text.stdout and "3 of 3 validators" in text.stdout
    # a target that is itself a change point is signed by the set before it (R37)
    at_last_change = verify_json(chain, "account", alice, "--height", str(chain.change_heights[-1]))
    assert at_last_change["change_points"] == len(chain.change_heights) - 1 and at_last_change["validators"] == 4
    before_changes = verify_json(chain, "account", alice, "--height", str(chain.change_heights[0]))
    assert before_changes["change_points"] == 0 and before_changes["validators"] == 4


def test_verify_order_proves_its_state_and_escrow(chain: Chain) -> None:
    view = verify_json(chain, "order", chain.order_id)
    assert view["decoded"]["state"] == "placed" and view["decoded"]["escrow"] == 3_000_000
    assert view["decoded"]["buyer"] == chain.net.keys["alice"].address.hex()
    text = cli("verify", "order", chain.order_id, "--genesis", str(chain.genesis_file), "--node",
               chain.net.nodes[2].url)
    assert text.returncode == 0 and "placed" in text.stdout and "3 MKT (3000000 µMKT)" in text.stdout


def test_verify_tx_with_genesis_goes_through_the_changes(chain: Chain) -> None:
    for tx_hash in (chain.order_tx, chain.last_vote):
        assert verify_json(chain, "tx", tx_hash)["trust"] == "genesis"


def test_a_lying_node_makes_the_cli_exit_non_zero(chain: Chain) -> None:
    net = chain.net
    net.restart(FAULTY, env={FAULT_VARIABLE: "equivocate", CORRUPT_PROOFS_VARIABLE: "1"})
    top = net.node(0).height()
    net.wait_for_height(top, [FAULTY])
    alice = net.keys["alice"].address.hex()
    for arguments in (("account", alice), ("order", chain.order_id)):
        refused = cli("verify", *arguments, "--genesis", str(chain.genesis_file), "--node", net.nodes[FAULTY].url)
        assert refused.returncode == 1, refused.stdout
        assert "NOT verified: R36, state proof" in refused.stderr


def test_a_client_written_from_the_spec_alone_verifies_every_kind_of_proof(chain: Chain) -> None:
    """Issue 14, done when: a client written from PROTOCOL §12 alone
    (tests/e2e/independent_light_client.py: no project import) verifies account, order,
    shop, listing and item proofs, present and absent, against headers it verified from
    the genesis file through the three validator-set changes."""
    from tests.e2e import independent_light_client as spec

    net = chain.net
    bob = net.keys["bob"]
    registrar = chain.validator_key(0)
    chain.final(chain.submit(registrar, "role_grant",
                             {"account": bob.address, "role": "producer", "evidence_hash": bytes(32)}))
    chain.final(chain.submit(bob, "item_register", {"item_id": "PUER-2019-0001", "description": "one cake"}))
    genesis = json.loads(chain.genesis_file.read_text())
    order = net.node(0).get_ok(f"/orders/{chain.order_id}")
    alice = net.keys["alice"].address.hex()
    url = net.nodes[1].url
    cases = [
        (f"/accounts/{alice}/proof", b"a" + bytes.fromhex(alice)),
        (f"/orders/{chain.order_id}/proof", b"o" + bytes.fromhex(chain.order_id)),
        (f"/shops/{order['shop_id']}/proof", b"s" + bytes.fromhex(order["shop_id"])),
        (f"/listings/{order['listing_id']}/proof", b"l" + bytes.fromhex(order["listing_id"])),
        ("/items/PUER-2019-0001/proof", b"iPUER-2019-0001"),
    ]
    proven = {}
    for path, key in cases:
        value, trusted = spec.verify_key(url, genesis, path, key)
        assert value is not None, path
        assert trusted.sets_walked == len(chain.change_heights) and trusted.signers == trusted.set_size == 3
        proven[path] = value
    decoded = spec.msgpack.unpackb(proven[f"/orders/{chain.order_id}/proof"], raw=False)
    assert decoded["state"] == "placed" and decoded["escrow"] == 3_000_000
    for path, key in (("/items/NO-SUCH-ITEM/proof", b"iNO-SUCH-ITEM"), (f"/shops/{'ab' * 32}/proof", b"s" + b"\xab" * 32)):
        value, _ = spec.verify_key(url, genesis, path, key)
        assert value is None, path  # absence, proven
    # the same client refuses a proof of one key presented for another
    try:
        spec.verify_key(url, genesis, f"/accounts/{alice}/proof", b"a" + bytes(32))
    except spec.NotVerified:
        pass
    else:
        raise AssertionError("a proof for another key was accepted")


def test_the_explorer_verifies_in_the_browser_through_the_three_changes(
        chain: Chain, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The JavaScript light client (R37) and proof check (R36) of the explorer, on the same
    live chain: the account page walks the three change points from the pinned genesis."""
    import time

    from tests.e2e.browser import missing_browser, start_chromium

    reason = missing_browser()
    if reason:
        pytest.skip(reason)
    net = chain.net
    alice = net.keys["alice"].address.hex()
    genesis_hash = net.node(0).status()["genesis_hash"]
    browser = start_chromium(tmp_path_factory.mktemp("chromium-profile"))
    try:
        browser.get(f"{net.nodes[1].url}/?genesis={genesis_hash}#/account/{alice}")
        deadline = time.monotonic() + 60
        text = ""
        while time.monotonic() < deadline and "verified against" not in text and "not verified" not in text:
            text = browser.find_element("tag name", "body").text
            time.sleep(0.2)
        assert "verified against block" in text and "not verified" not in text, text
        assert "signed by 3 of 3 validators" in text, text
        assert f"{len(chain.change_heights)} validator-set change(s) checked" in text, text
    finally:
        browser.quit()

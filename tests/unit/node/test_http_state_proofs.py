"""The HTTP side of state proofs, without a node (node/http/state_proofs.py, costs.py; R36, R38):
the test-only lying switch breaks every shape of proof, is read only from an exact `1`, and
the cost of a proof grows with how far back it reaches and with the keys changed since."""

from __future__ import annotations

import logging

import pytest

from marketplace_tx.primitives.sparse_merkle import InvalidProof, StateProof, verify_state_proof
from marketplace_tx.rules.state_tree import MemoryTree, prove_key, tree_root, update_tree
from node.http.costs import REQUEST_COST, changed_keys_cost, state_proof_cost
from node.http.state_proofs import CORRUPT_PROOFS_VARIABLE, corrupt_proof, corrupt_proofs_switch


def tree_of(entries: dict[bytes, bytes]) -> MemoryTree:
    tree = MemoryTree()
    tree.apply(update_tree(tree, entries))
    return tree


def served(tree: MemoryTree, key: bytes, value: bytes | None) -> dict:
    return {**prove_key(tree, key, value, 7).to_json(), "state_root": tree_root(tree).hex()}


CASES = {
    "inclusion with siblings": ({b"a1": b"x", b"a2": b"y", b"a3": b"z"}, b"a1", b"x"),
    "absence with siblings": ({b"a1": b"x", b"a2": b"y", b"a3": b"z"}, b"nothing", None),
    "the only entry": ({b"a1": b"x"}, b"a1", b"x"),
    "the only entry, empty value": ({b"d1": b""}, b"d1", b""),
    "absence beside the only entry": ({b"a1": b"x"}, b"nothing", None),
    "absence in an empty tree": ({}, b"nothing", None),
}


@pytest.mark.parametrize("case", CASES)
def test_the_lying_switch_breaks_every_shape_of_proof(case: str) -> None:
    entries, key, value = CASES[case]
    tree = tree_of(entries)
    root = tree_root(tree)
    honest = served(tree, key, value)
    proof = StateProof.from_json({name: item for name, item in honest.items() if name != "state_root"})
    verify_state_proof(proof, key, 7, root)
    lie = corrupt_proof(honest)
    assert lie["state_root"] == honest["state_root"] and lie != honest
    with pytest.raises(InvalidProof):
        corrupted = StateProof.from_json({name: item for name, item in lie.items() if name != "state_root"})
        verify_state_proof(corrupted, key, 7, root)


def test_the_lying_switch_is_on_only_for_exactly_1_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    for value in ("", "0", "true", "yes", " 1"):
        assert corrupt_proofs_switch({CORRUPT_PROOFS_VARIABLE: value}) is False
    assert corrupt_proofs_switch({}) is False
    assert not caplog.records
    with caplog.at_level(logging.WARNING, logger="marketchain.http"):
        assert corrupt_proofs_switch({CORRUPT_PROOFS_VARIABLE: "1"}) is True
    assert "CORRUPTED state proofs" in caplog.text


def test_a_proof_costs_more_the_further_back_it_reaches() -> None:
    latest = REQUEST_COST + state_proof_cost(0)
    assert latest == 2  # 100 latest proofs per second per address at the default rate (200)
    assert state_proof_cost(-5) == state_proof_cost(0) < state_proof_cost(1) < state_proof_cost(1000)
    assert changed_keys_cost(0) == 0 < changed_keys_cost(1) < changed_keys_cost(100)
    # the oldest kept height by default (999 back) over blocks of 3 changed keys: 1 + 49.95 + 149.85
    assert state_proof_cost(999) + changed_keys_cost(3 * 999) == pytest.approx(200.8)

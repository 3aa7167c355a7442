"""The explorer's R35 root function and R36 proof verifier (node/http/static/state_proof.js)
against tests/vectors/protocol-v2-state.json, in the real browser.

Every tree root and every snapshot chunk hash reproduces; every valid proof is accepted
and every invalid one rejected; every valid proof with any one byte changed is rejected;
and the strict canonical msgpack decoder (msgpack_decode.js) accepts exactly what the
Python codec accepts (R1, R2). Skipped when selenium, chromium or chromedriver are missing.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from marketplace_tx.primitives import codec
from marketplace_tx.primitives.errors import CodecError
from marketplace_tx.primitives.sparse_merkle import key_path
from marketplace_tx.rules.snapshots import chunk_index
from tests.e2e.static_page import page_driver, run_module_script
from tests.paths import REPO_ROOT

pytestmark = pytest.mark.integration

driver = page_driver
"""The real Chromium these tests run their modules in (a module-scoped fixture)."""

VECTORS = json.loads((REPO_ROOT / "tests" / "vectors" / "protocol-v2-state.json").read_text())
TREES = {tree["name"]: tree for tree in VECTORS["trees"]}


ROOTS = """
const {subtreeRoot} = await load("state_proof.js");
const {fromHex, toHex} = await load("verify.js");
const roots = {};
for (const tree of argument) {
  roots[tree.name] = toHex(await subtreeRoot(tree.entries.map(([key, value]) => [fromHex(key), fromHex(value)]), tree.depth));
}
return roots;
"""


def test_every_tree_root_reproduces_in_the_browser(driver: Any) -> None:
    trees = [{"name": name, "entries": tree["entries"], "depth": 0} for name, tree in TREES.items()]
    roots = run_module_script(driver, ROOTS, trees)
    assert roots == {name: tree["state_root"] for name, tree in TREES.items()}


def _chunk_entries(entries: list[list[str]], depth: int, index: int) -> list[list[str]]:
    """The entries whose path starts with the `depth`-bit prefix `index` (R39)."""
    return [entry for entry in entries if chunk_index(bytes.fromhex(entry[0]), depth) == index]


def test_every_snapshot_chunk_hash_is_the_r35_root_at_its_depth(driver: Any) -> None:
    chunks = []
    expected = {}
    for number, snapshot in enumerate(VECTORS["snapshots"]):
        entries = TREES[snapshot["tree"]]["entries"]
        for index, chunk in enumerate(snapshot["chunks"]):
            name = f"{number}/{index}"
            members = _chunk_entries(entries, snapshot["chunk_depth"], index)
            assert len(members) == chunk["count"], name
            chunks.append({"name": name, "entries": members, "depth": snapshot["chunk_depth"]})
            expected[name] = chunk["hash"]
    assert len(chunks) > 3
    assert run_module_script(driver, ROOTS, chunks) == expected


VERIFY = """
const {verifyStateProof} = await load("state_proof.js");
const {fromHex} = await load("verify.js");
const outcomes = [];
for (const item of argument) {
  try {
    await verifyStateProof(item.proof, fromHex(item.key), item.height, item.root);
    outcomes.push("accepted");
  } catch (error) {
    outcomes.push(`${error.name === "Error" ? error.constructor.name : error.name}: ${error.message}`);
  }
}
return outcomes;
"""


def _proof_json(vector: dict[str, Any], height: int = 7) -> dict[str, Any]:
    return {"height": height, "key": vector["key"], "value": vector["value"], "leaf": vector["leaf"],
            "siblings": vector["siblings"], "state_root": "ff" * 32}


def _case(vector: dict[str, Any], proof: dict[str, Any] | None = None, **overrides: Any) -> dict[str, Any]:
    case = {"proof": proof or _proof_json(vector), "key": vector["key"], "height": 7,
            "root": TREES[vector["tree"]]["state_root"]}
    case.update(overrides)
    return case


def test_the_js_verifier_accepts_every_valid_vector_proof_and_rejects_every_invalid_one(driver: Any) -> None:
    outcomes = run_module_script(driver, VERIFY, [_case(vector) for vector in VECTORS["proofs"]])
    for vector, outcome in zip(VECTORS["proofs"], outcomes, strict=True):
        if vector["valid"]:
            assert outcome == "accepted", (vector.get("why"), vector["key"], outcome)
        else:
            assert outcome.startswith("InvalidProof: "), (vector["why"], outcome)
    assert sum(vector["valid"] for vector in VECTORS["proofs"]) >= 8
    assert sum(not vector["valid"] for vector in VECTORS["proofs"]) >= 5


def test_the_js_verifier_checks_the_asked_key_and_height_and_never_the_root_sent_along(driver: Any) -> None:
    valid = [vector for vector in VECTORS["proofs"] if vector["valid"]]
    inclusion, absence = valid[0], next(vector for vector in valid if vector["leaf"] is not None)
    other_key = valid[1]["key"]
    cases = [
        _case(inclusion, key=other_key),                      # a proof of another key
        _case(inclusion, height=8),                           # a proof of another height
        _case(inclusion, root="00" * 32),                     # the verified header's root differs
        _case(absence, key=other_key),
        _case(inclusion, proof={**_proof_json(inclusion), "state_root": TREES[inclusion["tree"]]["state_root"]},
              root="11" * 32),                                # the node's state_root is not believed
        _case(inclusion, proof={**_proof_json(inclusion), "siblings": _proof_json(inclusion)["siblings"] * 50}),
        _case(inclusion, proof={**_proof_json(inclusion), "key": inclusion["key"].upper()}),
        _case(inclusion, proof={**_proof_json(inclusion), "height": -1}),
        _case(absence, proof={**_proof_json(absence), "leaf": {"path": key_path(bytes.fromhex(absence["key"])).hex(),
                                                                 "value_hash": absence["leaf"]["value_hash"]}}),
    ]
    outcomes = run_module_script(driver, VERIFY, cases)
    assert all(outcome.startswith("InvalidProof: ") for outcome in outcomes), outcomes
    assert "another key" in outcomes[0] and "height 7, not 8" in outcomes[1]
    assert "state_root" in outcomes[2] and "more than 256 siblings" in outcomes[5]
    assert "own path" in outcomes[8]


def _flip(text: str, index: int) -> str:
    raw = bytearray.fromhex(text)
    raw[index] ^= 0x01
    return raw.hex()


def _tampered(vector: dict[str, Any]) -> list[dict[str, Any]]:
    """The proof with one byte changed, for every byte of its value, leaf and siblings."""
    proof = _proof_json(vector)
    cases = []
    for index in range(len(bytes.fromhex(proof["value"] or ""))):
        cases.append(_case(vector, {**proof, "value": _flip(proof["value"], index)}))
    for name in ("path", "value_hash") if proof["leaf"] else ():
        for index in range(32):
            cases.append(_case(vector, {**proof, "leaf": {**proof["leaf"], name: _flip(proof["leaf"][name], index)}}))
    for position, sibling in enumerate(proof["siblings"]):
        for index in range(32):
            siblings = list(proof["siblings"])
            siblings[position] = _flip(sibling, index)
            cases.append(_case(vector, {**proof, "siblings": siblings}))
    return cases


def test_a_valid_proof_with_any_one_byte_changed_is_rejected_in_the_browser(driver: Any) -> None:
    cases = [case for vector in VECTORS["proofs"] if vector["valid"] for case in _tampered(vector)]
    assert len(cases) > 1000
    outcomes = run_module_script(driver, VERIFY, cases)
    accepted = [case["proof"] for case, outcome in zip(cases, outcomes, strict=True) if outcome == "accepted"]
    assert accepted == []


DECODE = """
const {decodeCanonical} = await load("msgpack_decode.js");
const {fromHex} = await load("verify.js");
return argument.map((text) => {
  try {
    decodeCanonical(fromHex(text));
    return true;
  } catch (error) {
    if (error.name !== "Error" || !error.constructor.name.includes("NotCanonical")) throw error;
    return false;
  }
});
"""

DECODER_CASES = [
    "00", "7f", "cc80", "cc7f", "cd00ff", "cd0100", "ce0000ffff", "ce00010000", "cf00000000ffffffff",
    "cf0000000100000000", "e0", "d0df", "d0e0", "d1ff7f", "d1ff80",
    "a161", "d90161", "d920" + "61" * 32, "c40101", "c5000101", "c0", "c2", "c3", "ca00000000", "d40000",
    "9100", "dc000100", "82a16101a16202", "82a16202a16101", "82a16101a16101", "8101a0", "81a16101",
    "81a1610102", "a2c328", "92c40100", "c403ff", "",
]
"""Canonical and non-canonical bytes: shortest forms, sorted unique text keys, no floats or
extensions, valid UTF-8, nothing after the value, nothing cut short."""


def _python_accepts(text: str) -> bool:
    try:
        codec.decode(bytes.fromhex(text))
    except CodecError:
        return False
    return True


def test_the_js_decoder_accepts_exactly_what_the_python_codec_accepts(driver: Any) -> None:
    proven_values = [vector["value"] for vector in VECTORS["proofs"] if vector["value"]]
    cases = DECODER_CASES + proven_values + [value for tree in TREES.values() for _, value in tree["entries"] if value]
    expected = [_python_accepts(text) for text in cases]
    assert run_module_script(driver, DECODE, cases) == expected
    assert expected.count(False) >= 15 and expected.count(True) >= 15


def test_the_js_decoder_refuses_nesting_deeper_than_64(driver: Any) -> None:
    nested = ["91" * depth + "00" for depth in (64, 65, 5000)]
    assert run_module_script(driver, DECODE, nested) == [True, False, False]

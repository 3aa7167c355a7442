"""The state tree (R35) and its proofs (R36): the reference vectors, and the incremental
batched tree property-tested against the plain recursive definition."""

from __future__ import annotations

import json
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from marketplace_tx.primitives.sparse_merkle import (
    EMPTY,
    InvalidProof,
    StateProof,
    entry_leaf,
    proof_root,
    subtree_root,
    verify_state_proof,
)
from marketplace_tx.rules.state_tree import (
    MemoryTree,
    OverlayTreeReader,
    prove_key,
    tree_root,
    update_tree,
)
from tests.paths import VECTORS as VECTORS_DIR

VECTORS = json.loads((VECTORS_DIR / "protocol-v2-state.json").read_text())
TREES = {tree["name"]: tree for tree in VECTORS["trees"]}


def _entries(tree: dict) -> dict[bytes, bytes]:
    return {bytes.fromhex(key): bytes.fromhex(value) for key, value in tree["entries"]}


def _build(values: dict[bytes, bytes]) -> MemoryTree:
    tree = MemoryTree()
    tree.apply(update_tree(tree, values))
    return tree


def test_vector_roots_reproduce_with_the_reference_and_the_incremental_tree():
    """R35: every state root of protocol-v2-state.json, by both implementations."""
    for vector in VECTORS["trees"]:
        entries = _entries(vector)
        assert subtree_root(entries.items()).hex() == vector["state_root"], vector["name"]
        assert tree_root(_build(entries)).hex() == vector["state_root"], vector["name"]


def _vector_proof(vector: dict) -> StateProof:
    return StateProof.from_json({**vector, "height": 7})


def test_valid_vector_proofs_verify_and_invalid_ones_are_rejected():
    """R36: each 'valid' proof folds to its tree's root; each invalid one is refused."""
    for vector in VECTORS["proofs"]:
        root = bytes.fromhex(TREES[vector["tree"]]["state_root"])
        key = bytes.fromhex(vector["key"])
        if vector["valid"]:
            verify_state_proof(_vector_proof(vector), key, 7, root)
        else:
            try:
                verify_state_proof(_vector_proof(vector), key, 7, root)
            except InvalidProof:
                continue
            raise AssertionError(f"accepted an invalid proof: {vector['why']}")


def test_the_node_builds_the_vector_proofs_byte_for_byte():
    """The proofs our tree produces for the vector keys are the vectors' own."""
    for vector in VECTORS["proofs"]:
        if not vector["valid"]:
            continue
        entries = _entries(TREES[vector["tree"]])
        key = bytes.fromhex(vector["key"])
        proof = prove_key(_build(entries), key, entries.get(key), 7)
        expected = {**vector, "height": 7}
        expected.pop("why", None), expected.pop("tree"), expected.pop("valid")
        assert proof.to_json() == expected, vector.get("why", vector["key"])


def test_a_proof_tampered_in_any_byte_is_rejected():
    """Flipping any bit of any field of a valid proof makes it fail (R36)."""
    entries = _entries(TREES["mixed_41"])
    root = tree_root(_build(entries))
    tree = _build(entries)
    for key in [*list(entries)[:5], b"absent-key", b"a" + bytes(32)]:
        proof = prove_key(tree, key, entries.get(key), 3)
        verify_state_proof(proof, key, 3, root)
        document = proof.to_json()
        for field_name in ("value", "siblings", "leaf"):
            texts = _hex_strings(document, field_name)
            for text_index, text in texts:
                for char_index in range(0, len(text), 7):
                    corrupted = json.loads(json.dumps(document))
                    flipped = text[:char_index] + format(int(text[char_index], 16) ^ 1, "x") + text[char_index + 1:]
                    _set_hex(corrupted, field_name, text_index, flipped)
                    try:
                        verify_state_proof(StateProof.from_json(corrupted), key, 3, root)
                    except InvalidProof:
                        continue
                    raise AssertionError(f"accepted {field_name} tampered at {char_index}")


def _hex_strings(document: dict, field_name: str) -> list[tuple[object, str]]:
    value = document[field_name]
    if value is None:
        return []
    if isinstance(value, str):
        return [(None, value)] if value else []
    if isinstance(value, list):
        return list(enumerate(value))
    return [(name, value[name]) for name in ("path", "value_hash")]


def _set_hex(document: dict, field_name: str, index: object, text: str) -> None:
    if index is None:
        document[field_name] = text
    else:
        document[field_name][index] = text


def test_proof_shape_rules():
    """R36: > 256 siblings, wrong sizes, value and leaf together are invalid."""
    base = {"height": 1, "key": "61", "value": None, "leaf": None, "siblings": []}
    for bad in (
        {**base, "siblings": ["00" * 32] * 257},
        {**base, "siblings": ["00" * 31]},
        {**base, "leaf": {"path": "00" * 32, "value_hash": "00" * 33}},
        {**base, "value": "01", "leaf": {"path": "00" * 32, "value_hash": "00" * 32}},
        {**base, "key": "6G"},
        {**base, "height": -1},
        {**base, "siblings": "00"},
    ):
        try:
            StateProof.from_json(bad)
        except InvalidProof:
            continue
        raise AssertionError(f"accepted {bad}")
    assert proof_root(StateProof.from_json(base)) == EMPTY


def test_asked_key_and_height_are_checked():
    """A proof for another key or height does not prove the asked one (R36)."""
    entries = {b"a" + bytes([index]) * 32: b"\x80" for index in range(5)}
    tree = _build(entries)
    root = tree_root(tree)
    key = next(iter(entries))
    proof = prove_key(tree, key, entries[key], 4)
    for asked_key, asked_height in ((key, 5), (b"other", 4)):
        try:
            verify_state_proof(proof, asked_key, asked_height, root)
        except InvalidProof:
            continue
        raise AssertionError("accepted a proof for something not asked")


KEYS = st.binary(min_size=1, max_size=6)


@settings(max_examples=150, deadline=None)
@given(
    st.dictionaries(KEYS, st.binary(max_size=4), max_size=40),
    st.lists(st.dictionaries(KEYS, st.none() | st.binary(max_size=4), max_size=25), max_size=6),
)
def test_incremental_tree_equals_the_reference_through_insertions_and_deletions(initial, batches):
    """Property: after any sequence of batched updates, the stored tree's root is the
    reference T(S, 0), exactly the current tree's nodes are stored, and every key (present
    or not) has a proof that verifies."""
    tree = _build(initial)
    state = dict(initial)
    for changes in batches:
        update = update_tree(tree, changes)
        overlay = OverlayTreeReader(tree, update)
        assert tree_root(overlay) == update.root
        tree.apply(update)
        for key, value in changes.items():
            if value is None:
                state.pop(key, None)
            else:
                state[key] = value
        assert update.root == subtree_root(state.items())
        assert tree.records == _build(state).records  # no stale or missing record
        for key in [*list(state)[:6], *list(changes)[:6], b"\xff-never"]:
            verify_state_proof(prove_key(tree, key, state.get(key), 1), key, 1, update.root)


def test_large_random_batches_match_the_reference():
    """Thousands of keys in a few large batches, with deletions of present and absent keys."""
    generator = random.Random(14)
    tree = MemoryTree()
    state: dict[bytes, bytes] = {}
    for _ in range(4):
        changes: dict[bytes, bytes | None] = {}
        for _ in range(1500):
            key = b"a" + generator.randbytes(generator.choice((1, 2, 32)))
            changes[key] = None if generator.random() < 0.3 else generator.randbytes(generator.randint(0, 20))
        tree.apply(update_tree(tree, changes))
        for key, value in changes.items():
            if value is None:
                state.pop(key, None)
            else:
                state[key] = value
        assert tree_root(tree) == subtree_root(state.items())


def test_single_entry_and_empty_value():
    """A tree of one entry is that entry's leaf; the empty value (a `d` entry) is a value."""
    tree = _build({b"d" + bytes(40): b""})
    assert tree_root(tree) == entry_leaf(b"d" + bytes(40), b"")
    tree.apply(update_tree(tree, {b"d" + bytes(40): None}))
    assert tree_root(tree) == EMPTY and tree.records == {}

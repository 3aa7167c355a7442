"""The fast Merkle root equals R7's recursive definition (speedups.merkle_root_of_hashes).

`marketplace_tx.primitives.merkle.merkle_root` hands the leaf hashes to
`speedups.merkle_root_of_hashes`, which builds the RFC 6962 tree bottom up (pairs of
neighbours, an unpaired last node carried up) instead of splitting recursively "at the
largest power of two below n" (`merkle.subtree_root`, the plain version). These tests
compare the trick with the plain version directly, and `merkle_root` with a recursive
reference written here from R7 alone, over every size 0..300, the power-of-two edges
1023..1025, 4096 and 5000, and hypothesis-generated leaf lists; and check that the
inclusion proofs of `marketplace_tx.primitives.merkle` (built recursively) verify
against the fast root for every index, and fail for a tampered leaf or sibling (R7,
R23 `tx_root`).
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketplace_tx.primitives.merkle import (
    EMPTY_ROOT,
    inclusion_path,
    leaf_hash,
    merkle_root,
    subtree_root,
    verify_inclusion,
)
from marketplace_tx.speedups import merkle_root_of_hashes
from tests.unit.marketplace_tx.test_merkle import _largest_power_of_two_below as reference_split
from tests.unit.marketplace_tx.test_merkle import reference_root

# --------------------------------------------------------------------------- reference (R7)
# empty = SHA-256(""), leaf = SHA-256(0x00 ‖ data), node = SHA-256(0x01 ‖ left ‖ right),
# split at the largest power of two below n: `reference_root` of test_merkle.py, written
# from PROTOCOL's definition, with no code shared with marketplace_tx.primitives.merkle.


def numbered_leaves(count: int) -> list[bytes]:
    """`count` distinct leaves of varying length (0, then 2..6 bytes): the first is empty."""
    return [b"" if index == 0 else index.to_bytes(2 + index % 5, "big") for index in range(count)]


def test_reference_split_is_the_largest_power_of_two_below() -> None:
    assert [reference_split(count) for count in range(2, 10)] == [1, 2, 2, 4, 4, 4, 4, 8]
    assert reference_split(1024) == 512 and reference_split(1025) == 1024


def test_numbered_leaves_are_distinct() -> None:
    leaves = numbered_leaves(5000)
    assert len(set(leaves)) == 5000 and leaves[0] == b""


# --------------------------------------------------------------------------- roots


@pytest.mark.parametrize("first_count", range(0, 301, 50), ids=lambda count: f"{count}..{count + 49}")
def test_roots_of_0_to_300_leaves_match_the_reference(first_count: int) -> None:
    for count in range(first_count, min(first_count + 50, 301)):
        leaves = numbered_leaves(count)
        assert merkle_root(leaves) == reference_root(leaves), count


@pytest.mark.parametrize("count", [511, 512, 513, 1023, 1024, 1025, 4095, 4096, 4097, 5000])
def test_roots_at_power_of_two_edges_and_large_trees_match_the_reference(count: int) -> None:
    leaves = numbered_leaves(count)
    assert merkle_root(leaves) == reference_root(leaves)


def test_empty_tree_and_single_leaf() -> None:
    assert merkle_root([]) == EMPTY_ROOT == hashlib.sha256(b"").digest()
    assert merkle_root([b"only"]) == hashlib.sha256(b"\x00only").digest()
    assert merkle_root((b"a", b"b")) == merkle_root([b"a", b"b"])  # any sequence


def test_the_unpaired_node_is_carried_up_not_duplicated() -> None:
    """Three leaves: node(node(a, b), leaf(c)); Bitcoin-style padding would differ."""
    leaf = [hashlib.sha256(b"\x00" + data).digest() for data in (b"a", b"b", b"c")]
    left = hashlib.sha256(b"\x01" + leaf[0] + leaf[1]).digest()
    assert merkle_root([b"a", b"b", b"c"]) == hashlib.sha256(b"\x01" + left + leaf[2]).digest()
    assert merkle_root([b"a", b"b", b"c"]) != merkle_root([b"a", b"b", b"c", b"c"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=300))
def test_hypothesis_leaf_lists_match_the_reference(leaves: list[bytes]) -> None:
    assert merkle_root(leaves) == reference_root(leaves)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 1100), st.binary(min_size=1, max_size=8))
def test_hypothesis_sizes_up_to_1100_match_the_reference(count: int, seed: bytes) -> None:
    leaves = [hashlib.sha256(seed + index.to_bytes(2, "big")).digest()[: index % 33] for index in range(count)]
    assert merkle_root(leaves) == reference_root(leaves)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from([b"", b"\x00", b"\x01" * 32, b"x"]), min_size=1, max_size=70))
def test_repeated_and_look_alike_leaves_match_the_reference(leaves: list[bytes]) -> None:
    """Equal leaves and 32-byte leaves that look like hashes change nothing."""
    assert merkle_root(leaves) == reference_root(leaves)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=8), min_size=1, max_size=80), st.data())
def test_changing_one_leaf_changes_the_root(leaves: list[bytes], data: st.DataObject) -> None:
    index = data.draw(st.integers(0, len(leaves) - 1))
    changed = list(leaves)
    changed[index] = leaves[index] + b"!"
    assert merkle_root(changed) != merkle_root(leaves)
    assert merkle_root(changed) == reference_root(changed)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=300))
def test_hypothesis_the_fast_root_equals_the_plain_recursive_root(hashes: list[bytes]) -> None:
    """trick == plain on random leaf hashes: `merkle_root_of_hashes` == `subtree_root`."""
    assert merkle_root_of_hashes(hashes) == subtree_root(hashes)


@pytest.mark.parametrize("count", [1, 2, 3, 4, 5, 7, 8, 9, 255, 256, 257, 1000])
def test_the_fast_root_equals_the_plain_root_at_every_shape(count: int) -> None:
    hashes = [leaf_hash(leaf) for leaf in numbered_leaves(count)]
    assert merkle_root_of_hashes(hashes) == subtree_root(hashes)
    assert merkle_root_of_hashes(tuple(hashes)) == subtree_root(hashes)  # any sequence, not mutated
    assert hashes == [leaf_hash(leaf) for leaf in numbered_leaves(count)]


# --------------------------------------------------------------------------- proofs


PROOF_SIZES = [*range(1, 34), 63, 64, 65, 100, 127, 128, 129, 255, 256, 257]


@pytest.mark.parametrize("count", PROOF_SIZES)
def test_every_proof_verifies_against_the_fast_root(count: int) -> None:
    leaves = numbered_leaves(count)
    root = merkle_root(leaves)
    for index in range(count):
        path = inclusion_path(leaves, index)
        assert verify_inclusion(leaves[index], index, count, path, root), (count, index)


@pytest.mark.parametrize("count", [1025, 5000])
def test_proofs_of_sampled_indices_in_large_trees_verify(count: int) -> None:
    leaves = numbered_leaves(count)
    root = merkle_root(leaves)
    for index in sorted({0, 1, 511, 512, 1023, 1024, count // 2, count - 2, count - 1}):
        path = inclusion_path(leaves, index)
        assert verify_inclusion(leaves[index], index, count, path, root), (count, index)


@pytest.mark.parametrize("count", [2, 3, 5, 8, 13, 64, 100, 257])
def test_a_tampered_leaf_does_not_verify(count: int) -> None:
    leaves = numbered_leaves(count)
    root = merkle_root(leaves)
    for index in range(count):
        path = inclusion_path(leaves, index)
        assert not verify_inclusion(leaves[index] + b"\x00", index, count, path, root)
        assert not verify_inclusion(leaves[(index + 1) % count], index, count, path, root)


@pytest.mark.parametrize("count", [2, 3, 5, 8, 13, 64, 100, 257])
def test_a_tampered_sibling_does_not_verify(count: int) -> None:
    leaves = numbered_leaves(count)
    root = merkle_root(leaves)
    for index in range(count):
        path = inclusion_path(leaves, index)
        assert path, (count, index)  # two leaves or more: every proof has a sibling
        for position, sibling in enumerate(path):
            tampered = [*path[:position], bytes([sibling[0] ^ 1]) + sibling[1:], *path[position + 1:]]
            assert not verify_inclusion(leaves[index], index, count, tampered, root), (count, index, position)


def test_a_proof_against_the_root_of_another_tree_does_not_verify() -> None:
    leaves = numbered_leaves(300)
    other_root = merkle_root(leaves[:299] + [b"changed"])
    for index in (0, 150, 298):
        path = inclusion_path(leaves, index)
        assert not verify_inclusion(leaves[index], index, 300, path, other_root)

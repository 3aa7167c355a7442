"""Rebuilding the stored state tree from snapshot chunks (R35, R39): the records a
restore writes chunk by chunk, plus the upper tree, are exactly the records of the tree
built key by key (`update_tree`), for every chunk depth and many state shapes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketplace_tx.rules.snapshot_tree import check_chunk_tree, chunk_position, upper_tree
from marketplace_tx.rules.snapshots import (
    InvalidSnapshot,
    encode_chunk,
    make_manifest,
    split_chunks,
)
from marketplace_tx.rules.state_tree import MemoryTree, update_tree


def restored_records(state: dict[bytes, bytes], depth: int) -> tuple[dict[bytes, bytes], bytes]:
    """Every record a restore of `state` at `depth` leaves stored, and the root it gives."""
    reference = update_tree(MemoryTree(), state)
    manifest = make_manifest(state.items(), depth, 7, reference.root)
    stored: dict[bytes, bytes] = {}
    own: list[bytes | None] = []
    for index, chunk in enumerate(split_chunks(state.items(), depth)):
        tree = check_chunk_tree(manifest, index, encode_chunk(chunk))
        stored.update(tree.records)
        if tree.root_record is not None:
            stored[chunk_position(depth, index)] = tree.root_record
        own.append(tree.root_record)
    upper = upper_tree(depth, own)
    for position in upper.deletes:
        del stored[position]
    stored.update(upper.puts)
    return stored, upper.root


states = st.dictionaries(st.binary(min_size=1, max_size=6), st.binary(max_size=4), max_size=60)


@settings(max_examples=150, deadline=None)
@given(state=states, depth=st.integers(0, 6))
def test_restored_tree_is_the_executed_tree(state: dict[bytes, bytes], depth: int) -> None:
    reference = update_tree(MemoryTree(), state)
    stored, root = restored_records(state, depth)
    assert root == reference.root
    assert stored == reference.puts


@pytest.mark.parametrize("size", [0, 1, 2, 3, 1000])
def test_restored_tree_for_edge_sizes(size: int) -> None:
    state = {index.to_bytes(4, "big"): b"v%d" % index for index in range(size)}
    for depth in (0, 1, 4, 10):
        stored, root = restored_records(state, depth)
        reference = update_tree(MemoryTree(), state)
        assert (stored, root) == (reference.puts, reference.root)


def test_a_chunk_that_does_not_hash_to_the_manifest_is_refused() -> None:
    state = {bytes([index]): b"x" for index in range(40)}
    manifest = make_manifest(state.items(), 2, 1, update_tree(MemoryTree(), state).root)
    chunks = split_chunks(state.items(), 2)
    tampered = [(key, value + b"!") for key, value in chunks[1]]
    with pytest.raises(InvalidSnapshot, match="does not hash"):
        check_chunk_tree(manifest, 1, encode_chunk(tampered))
    with pytest.raises(InvalidSnapshot):  # another chunk's entries: wrong count or prefix
        check_chunk_tree(manifest, 2, encode_chunk(chunks[1]))

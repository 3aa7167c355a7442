"""R39 snapshots in the core (marketplace_tx/rules/snapshots.py): the manifests of
tests/vectors/protocol-v2-state.json reproduce byte for byte, and bad manifests and chunks
are refused naming what failed. The explorer's JavaScript checks the same vectors
(tests/e2e/test_js_vectors.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from marketplace_tx.primitives.sparse_merkle import EMPTY
from marketplace_tx.rules.snapshots import (
    ChunkSummary,
    InvalidSnapshot,
    Manifest,
    check_chunk,
    check_manifest,
    encode_chunk,
    fold_manifest,
    make_manifest,
    split_chunks,
)

VECTORS = json.loads((Path(__file__).resolve().parents[2] / "vectors" / "protocol-v2-state.json").read_text())
"""The v2 state vectors."""

TREES = {tree["name"]: tree for tree in VECTORS["trees"]}
"""The vectors' entry sets by name."""


def _entries(name: str) -> list[tuple[bytes, bytes]]:
    return [(bytes.fromhex(key), bytes.fromhex(value)) for key, value in TREES[name]["entries"]]


@pytest.mark.parametrize("index", range(len(VECTORS["snapshots"])))
def test_r39_snapshot_manifest_reproduces(index: int) -> None:
    snapshot = VECTORS["snapshots"][index]
    root = bytes.fromhex(snapshot["state_root"])
    manifest = make_manifest(_entries(snapshot["tree"]), snapshot["chunk_depth"], 5, root)
    assert [{"count": chunk.count, "hash": chunk.hash.hex()} for chunk in manifest.chunks] == snapshot["chunks"]
    assert fold_manifest(manifest.chunks).hex() == snapshot["state_root"] == TREES[snapshot["tree"]]["state_root"]
    check_manifest(manifest)
    for chunk_index, chunk in enumerate(split_chunks(_entries(snapshot["tree"]), manifest.chunk_depth)):
        assert check_chunk(manifest, chunk_index, encode_chunk(chunk)) == chunk


def _manifest(depth: int = 2) -> tuple[Manifest, list[list[tuple[bytes, bytes]]]]:
    entries = _entries("mixed_41")
    manifest = make_manifest(entries, depth, 9, bytes.fromhex(TREES["mixed_41"]["state_root"]))
    return manifest, split_chunks(entries, depth)


def test_a_manifest_that_does_not_fold_to_its_root_is_refused() -> None:
    manifest, _ = _manifest()
    chunks = list(manifest.chunks)
    chunks[1] = ChunkSummary(chunks[1].count, bytes(31) + b"\x01")
    for bad in (
        Manifest(manifest.chunk_depth, tuple(chunks), 9, manifest.state_root),
        Manifest(manifest.chunk_depth, manifest.chunks, 9, bytes(32)),
        Manifest(3, manifest.chunks, 9, manifest.state_root),
        Manifest(17, manifest.chunks, 9, manifest.state_root),
        Manifest(manifest.chunk_depth, (*manifest.chunks[:3], ChunkSummary(0, bytes(31) + b"\x01")), 9,
                 manifest.state_root),
    ):
        with pytest.raises(InvalidSnapshot):
            check_manifest(bad)


def test_bad_chunks_are_refused() -> None:
    manifest, chunks = _manifest()
    good = chunks[0]
    other = chunks[1]
    for index, raw in (
        (0, encode_chunk(list(reversed(good)))),  # unsorted
        (0, encode_chunk([*good, good[-1]])),  # duplicate (and one too many)
        (0, encode_chunk([*good[:-1], other[0]])),  # a key from another chunk
        (0, encode_chunk([*good[:-1], (good[-1][0], good[-1][1] + b"\x00")])),  # a value changed
        (0, encode_chunk(good[:-1])),  # one missing
        (0, b"\xc1"),  # not msgpack
        (0, encode_chunk(good) + b"\x00"),  # trailing bytes
        (4, encode_chunk(good)),  # not in the manifest
    ):
        with pytest.raises(InvalidSnapshot):
            check_chunk(manifest, index, raw)


def test_an_empty_state_and_depth_zero() -> None:
    manifest = make_manifest([], 0, 1, EMPTY)
    check_manifest(manifest)
    assert manifest.chunks == (ChunkSummary(0, EMPTY),)
    assert check_chunk(manifest, 0, encode_chunk([])) == []

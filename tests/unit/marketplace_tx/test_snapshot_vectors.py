"""The snapshot manifests of tests/vectors/protocol-v2-state.json reproduce (PROTOCOL R39).

State sync itself is issue 15; its hashing is already R35's: chunk `i` of a snapshot
split at depth `d` holds the entries whose path starts with the `d`-bit prefix `i`, its
hash is `T(entries, d)` (`subtree_root`) and folding the manifest up gives the
state_root. The explorer's JavaScript checks the same vectors (tests/e2e/test_js_vectors.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from marketplace_tx.primitives.sparse_merkle import EMPTY, key_path, node_hash, subtree_root

VECTORS = json.loads((Path(__file__).resolve().parents[2] / "vectors" / "protocol-v2-state.json").read_text())
"""The v2 state vectors."""

TREES = {tree["name"]: tree for tree in VECTORS["trees"]}
"""The vectors' entry sets by name."""


def fold(chunks: list[tuple[bytes, int]]) -> bytes:
    """R39's manifest fold: siblings combine to (EMPTY, 0), the non-empty one, or a node."""
    level = chunks
    while len(level) > 1:
        combined = []
        for (left_hash, left_count), (right_hash, right_count) in zip(level[::2], level[1::2], strict=True):
            total = left_count + right_count
            if total == 0:
                combined.append((EMPTY, 0))
            elif total == 1:
                combined.append((left_hash, 1) if left_count else (right_hash, 1))
            else:
                combined.append((node_hash(left_hash, right_hash), total))
        level = combined
    return level[0][0]


@pytest.mark.parametrize("index", range(len(VECTORS["snapshots"])))
def test_r39_snapshot_manifest_reproduces(index: int) -> None:
    snapshot = VECTORS["snapshots"][index]
    depth = snapshot["chunk_depth"]
    entries = [(bytes.fromhex(key), bytes.fromhex(value)) for key, value in TREES[snapshot["tree"]]["entries"]]
    chunks: list[list[tuple[bytes, bytes]]] = [[] for _ in range(2**depth)]
    for key, value in entries:
        prefix = int.from_bytes(key_path(key), "big") >> (256 - depth)
        chunks[prefix].append((key, value))
    expected = [(chunk["hash"], chunk["count"]) for chunk in snapshot["chunks"]]
    assert [(subtree_root(chunk, depth).hex(), len(chunk)) for chunk in chunks] == expected
    manifest = [(bytes.fromhex(chunk_hash), count) for chunk_hash, count in expected]
    assert fold(manifest).hex() == snapshot["state_root"] == TREES[snapshot["tree"]]["state_root"]

"""`manifest_from_map` (marketplace_tx/rules/snapshots.py): a manifest a peer sent, decoded,
comes back as the `Manifest` it encodes, and every shape error is `InvalidSnapshot`."""

from __future__ import annotations

from typing import Any

import pytest

from marketplace_tx.primitives import codec
from marketplace_tx.primitives.sparse_merkle import subtree_root
from marketplace_tx.rules.snapshots import InvalidSnapshot, make_manifest, manifest_from_map

ENTRIES = [(b"a" + bytes([number]) * 32, b"value %d" % number) for number in range(40)]


def _manifest_map(depth: int = 2) -> dict[str, Any]:
    return codec.decode(make_manifest(ENTRIES, depth, 7, subtree_root(ENTRIES)).encode())


@pytest.mark.parametrize("depth", [0, 1, 3])
def test_manifest_round_trips_through_its_canonical_map(depth: int) -> None:
    manifest = make_manifest(ENTRIES, depth, 7, subtree_root(ENTRIES))
    assert manifest_from_map(codec.decode(manifest.encode())) == manifest


def _broken(change: str) -> Any:
    value = _manifest_map()
    if change == "not a map":
        return [value]
    if change == "extra key":
        return {**value, "extra": 1}
    if change == "depth 17":
        return {**value, "chunk_depth": 17}
    if change == "depth bool":
        return {**value, "chunk_depth": True}
    if change == "wrong chunk number":
        return {**value, "chunks": value["chunks"][:3]}
    if change == "negative height":
        return {**value, "height": -1}
    if change == "short root":
        return {**value, "state_root": b"\x01" * 31}
    if change == "short hash":
        return {**value, "chunks": [{"count": 1, "hash": b"\x00"}] + value["chunks"][1:]}
    if change == "count 2^32":
        return {**value, "chunks": [{"count": 2**32, "hash": bytes(32)}] + value["chunks"][1:]}
    if change == "chunk not a map":
        return {**value, "chunks": [[1, bytes(32)]] + value["chunks"][1:]}
    raise AssertionError(change)


@pytest.mark.parametrize("change", ["not a map", "extra key", "depth 17", "depth bool", "wrong chunk number",
                                    "negative height", "short root", "short hash", "count 2^32",
                                    "chunk not a map"])
def test_malformed_manifest_map_is_refused(change: str) -> None:
    with pytest.raises(InvalidSnapshot):
        manifest_from_map(_broken(change))

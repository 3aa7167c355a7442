"""Merkle roots and inclusion proofs after RFC 6962 (PROTOCOL R7).

empty = SHA-256(""), leaf = SHA-256(0x00 ‖ data), node = SHA-256(0x01 ‖ left ‖ right),
split at the largest power of two below n.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from marketplace_tx import speedups

EMPTY_ROOT = hashlib.sha256(b"").digest()
"""The root of a tree with no leaves."""


def leaf_hash(data: bytes) -> bytes:
    """SHA-256(0x00 ‖ data)."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 ‖ left ‖ right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split_point(count: int) -> int:
    """The largest power of two strictly below `count` (count ≥ 2)."""
    return 1 << ((count - 1).bit_length() - 1)


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """The RFC 6962 Merkle tree hash of `leaves` (speed: `speedups.merkle_root_of_hashes`
    stands for `subtree_root`)."""
    if not leaves:
        return EMPTY_ROOT
    return speedups.merkle_root_of_hashes([leaf_hash(leaf) for leaf in leaves])


def subtree_root(hashes: Sequence[bytes]) -> bytes:
    """The root over one or more leaf hashes, by R7's definition: split at the largest
    power of two below n, hash the two subtrees' roots."""
    if len(hashes) == 1:
        return hashes[0]
    split = _split_point(len(hashes))
    return node_hash(subtree_root(hashes[:split]), subtree_root(hashes[split:]))


def inclusion_path(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """The audit path of leaf `index`, sibling hashes from the leaf up to the root."""
    if not 0 <= index < len(leaves):
        raise IndexError("leaf index out of range")
    return _path([leaf_hash(leaf) for leaf in leaves], index)


def _path(hashes: Sequence[bytes], index: int) -> list[bytes]:
    if len(hashes) == 1:
        return []
    split = _split_point(len(hashes))
    if index < split:
        return _path(hashes[:split], index) + [subtree_root(hashes[split:])]
    return _path(hashes[split:], index - split) + [subtree_root(hashes[:split])]


def verify_inclusion(leaf: bytes, index: int, total: int, path: Sequence[bytes], root: bytes) -> bool:
    """True iff `path` proves `leaf` is leaf `index` of `total` under `root` (RFC 9162 §2.1.3.2)."""
    if not 0 <= index < total:
        return False
    position, last = index, total - 1
    current = leaf_hash(leaf)
    for sibling in path:
        if last == 0:
            return False
        if position % 2 == 1 or position == last:
            current = node_hash(sibling, current)
            if position % 2 == 0:
                while position % 2 == 0 and position != 0:
                    position >>= 1
                    last >>= 1
        else:
            current = node_hash(current, sibling)
        position >>= 1
        last >>= 1
    return last == 0 and current == root

"""The state tree's hashing and its proofs, exactly as PROTOCOL R35 and R36 define them.

A binary sparse Merkle tree over `path(k) = SHA-256(k)`, where a subtree holding one
entry is that entry's leaf wherever it sits:

    leaf(k, v) = SHA-256(0x00 ‖ path(k) ‖ SHA-256(v))
    node(l, r) = SHA-256(0x01 ‖ l ‖ r)
    T(S, d)    = EMPTY if S is empty; leaf(k, v) if S = {(k, v)};
                 node(T(S0, d+1), T(S1, d+1)) otherwise

`subtree_root` is that definition written plainly (the reference the fast incremental
tree of `marketplace_tx.rules.state_tree` is tested against); `verify_state_proof` is
what a light client runs (R36). Pure: no I/O. The client imports this module.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

EMPTY = bytes(32)
"""The hash of an empty subtree (R35)."""

MAX_SIBLINGS = 256
"""A proof holds at most one sibling per bit of the path (R36)."""

_sha256 = hashlib.sha256


def key_path(key: bytes) -> bytes:
    """path(k) = SHA-256(k): where key `k` lives in the tree (R35)."""
    return _sha256(key).digest()


def leaf_hash(path: bytes, value_hash: bytes) -> bytes:
    """SHA-256(0x00 ‖ path ‖ value_hash): a leaf from its path and its value's hash."""
    return _sha256(b"\x00" + path + value_hash).digest()


def entry_leaf(key: bytes, value: bytes) -> bytes:
    """leaf(k, v) of R35."""
    return leaf_hash(key_path(key), _sha256(value).digest())


def node_hash(left: bytes, right: bytes) -> bytes:
    """node(l, r) = SHA-256(0x01 ‖ l ‖ r) (R35)."""
    return _sha256(b"\x01" + left + right).digest()


def path_bit(path: bytes, index: int) -> int:
    """Bit `index` of a path; bit 0 is the most significant bit of byte 0 (R35)."""
    return (path[index >> 3] >> (7 - (index & 7))) & 1


def subtree_root(entries: Iterable[tuple[bytes, bytes]], depth: int = 0) -> bytes:
    """T(S, depth) of R35 for the (key, value) pairs `entries`, written as the definition.

    The reference implementation: every entry is hashed again on every call. The node
    uses the incremental tree; tests check both agree. Also the hash of an R39 chunk.
    """
    located = [(key_path(key), _sha256(value).digest()) for key, value in entries]
    return _subtree(located, depth)


def _subtree(entries: list[tuple[bytes, bytes]], depth: int) -> bytes:
    if not entries:
        return EMPTY
    if len(entries) == 1:
        path, value_hash = entries[0]
        return leaf_hash(path, value_hash)
    zeros = [entry for entry in entries if path_bit(entry[0], depth) == 0]
    ones = [entry for entry in entries if path_bit(entry[0], depth) == 1]
    return node_hash(_subtree(zeros, depth + 1), _subtree(ones, depth + 1))


class InvalidProof(Exception):
    """A state proof that is malformed (R36's shape rules) or does not prove what was asked."""


@dataclass(frozen=True)
class ProofLeaf:
    """The other entry that occupies the place of an absent key (R36 absence proofs)."""

    path: bytes
    """That entry's 32-byte path."""
    value_hash: bytes
    """SHA-256 of that entry's value."""


@dataclass(frozen=True)
class StateProof:
    """A proof that key `key` holds `value` (or is absent) in the state after block `height` (R36)."""

    height: int
    """The height whose header's `state_root` the proof is checked against."""
    key: bytes
    """The state key (R35)."""
    value: bytes | None
    """The value the key holds, or None when the proof shows it absent."""
    leaf: ProofLeaf | None
    """For absence: the entry found where the key would be, or None for an empty place."""
    siblings: tuple[bytes, ...]
    """Sibling hashes from the root side down."""

    def to_json(self) -> dict[str, Any]:
        """The R38 JSON form (hex), without the `state_root` a node adds beside it."""
        return {
            "height": self.height,
            "key": self.key.hex(),
            "value": None if self.value is None else self.value.hex(),
            "leaf": None if self.leaf is None else {"path": self.leaf.path.hex(), "value_hash": self.leaf.value_hash.hex()},
            "siblings": [sibling.hex() for sibling in self.siblings],
        }

    @staticmethod
    def from_json(obj: Any) -> StateProof:
        """Parse the R38 JSON form, or raise `InvalidProof` for any shape R36 forbids."""
        if not isinstance(obj, Mapping):
            raise InvalidProof("a proof is a JSON object")
        height = obj.get("height")
        if not isinstance(height, int) or isinstance(height, bool) or height < 0:
            raise InvalidProof("height is not a non-negative integer")
        key = _hex_field(obj.get("key"), "key")
        value = None if obj.get("value") is None else _hex_field(obj.get("value"), "value")
        leaf_obj = obj.get("leaf")
        leaf = None
        if leaf_obj is not None:
            if not isinstance(leaf_obj, Mapping):
                raise InvalidProof("leaf is neither null nor an object")
            leaf = ProofLeaf(
                _hex_field(leaf_obj.get("path"), "leaf.path", 32),
                _hex_field(leaf_obj.get("value_hash"), "leaf.value_hash", 32),
            )
        siblings_obj = obj.get("siblings")
        if not isinstance(siblings_obj, list):
            raise InvalidProof("siblings is not a list")
        if len(siblings_obj) > MAX_SIBLINGS:
            raise InvalidProof(f"more than {MAX_SIBLINGS} siblings")
        siblings = tuple(_hex_field(item, f"siblings[{index}]", 32) for index, item in enumerate(siblings_obj))
        if value is not None and leaf is not None:
            raise InvalidProof("value and leaf are both given")
        return StateProof(height, key, value, leaf, siblings)


def _hex_field(text: Any, name: str, size: int | None = None) -> bytes:
    if not isinstance(text, str) or len(text) % 2 or any(c not in "0123456789abcdef" for c in text):
        raise InvalidProof(f"{name} is not lowercase hex")
    raw = bytes.fromhex(text)
    if size is not None and len(raw) != size:
        raise InvalidProof(f"{name} is not {size} bytes")
    return raw


def proof_root(proof: StateProof) -> bytes:
    """The root the proof folds up to (R36), after checking its shape; `InvalidProof` if malformed."""
    path = key_path(proof.key)
    depth = len(proof.siblings)
    if depth > MAX_SIBLINGS or any(len(sibling) != 32 for sibling in proof.siblings):
        raise InvalidProof(f"siblings must be at most {MAX_SIBLINGS} hashes of 32 bytes")
    if proof.value is not None:
        if proof.leaf is not None:
            raise InvalidProof("value and leaf are both given")
        current = entry_leaf(proof.key, proof.value)
    elif proof.leaf is not None:
        leaf = proof.leaf
        if len(leaf.path) != 32 or len(leaf.value_hash) != 32:
            raise InvalidProof("leaf.path and leaf.value_hash must be 32 bytes")
        if leaf.path == path:
            raise InvalidProof("the leaf given for absence is the key's own path")
        if any(path_bit(leaf.path, index) != path_bit(path, index) for index in range(depth)):
            raise InvalidProof("the leaf given for absence is not on the key's path")
        current = leaf_hash(leaf.path, leaf.value_hash)
    else:
        current = EMPTY
    for index in range(depth - 1, -1, -1):
        sibling = proof.siblings[index]
        current = node_hash(sibling, current) if path_bit(path, index) else node_hash(current, sibling)
    return current


def verify_state_proof(proof: StateProof, key: bytes, height: int, state_root: bytes) -> None:
    """Check `proof` proves `key` at `height` against `state_root` (R36), or raise `InvalidProof`.

    `state_root` must come from a header the caller verified itself (R37), never from
    the node that sent the proof.
    """
    if proof.key != key:
        raise InvalidProof("the proof is for another key")
    if proof.height != height:
        raise InvalidProof(f"the proof is for height {proof.height}, not {height}")
    if proof_root(proof) != state_root:
        raise InvalidProof("the proof does not lead to the header's state_root")

"""Merkle roots and inclusion proofs (PROTOCOL R7, RFC 6962 §2.1)."""

from __future__ import annotations

import functools
import hashlib

import pytest

from marketplace_tx.primitives.merkle import (
    EMPTY_ROOT,
    inclusion_path,
    leaf_hash,
    merkle_root,
    node_hash,
    verify_inclusion,
)

# --------------------------------------------------------------------------- reference
# Written straight from RFC 6962 §2.1 without sharing code with marketplace_tx.primitives.merkle:
#   MTH({}) = SHA-256()
#   MTH({d(0)}) = SHA-256(0x00 || d(0))
#   MTH(D[n]) = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n])), k the largest power of 2 < n
#   PATH(m, {d(0)}) = {}
#   PATH(m, D[n]) = PATH(m, D[0:k]) : MTH(D[k:n])      for m < k
#   PATH(m, D[n]) = PATH(m - k, D[k:n]) : MTH(D[0:k])  for m >= k


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _largest_power_of_two_below(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def reference_root(leaves: list[bytes]) -> bytes:
    if not leaves:
        return _sha256(b"")
    if len(leaves) == 1:
        return _sha256(b"\x00" + leaves[0])
    k = _largest_power_of_two_below(len(leaves))
    return _sha256(b"\x01" + reference_root(leaves[:k]) + reference_root(leaves[k:]))


def reference_path(m: int, leaves: list[bytes]) -> list[bytes]:
    if len(leaves) == 1:
        return []
    k = _largest_power_of_two_below(len(leaves))
    if m < k:
        return reference_path(m, leaves[:k]) + [reference_root(leaves[k:])]
    return reference_path(m - k, leaves[k:]) + [reference_root(leaves[:k])]


@functools.cache
def reference_path_length(index: int, total: int) -> int:
    return len(reference_path(index, leaves_of(total)))


def leaves_of(count: int) -> list[bytes]:
    """Leaf i is 32 bytes of value i (as in the extra vectors)."""
    return [bytes([index]) * 32 for index in range(count)]


def varied_leaves(count: int) -> list[bytes]:
    """Leaves of different lengths, including the empty one."""
    return [bytes(range(index % 7)) + index.to_bytes(2, "big") * (index % 3) for index in range(count)]


# --------------------------------------------------------------------------- roots


def test_primitives() -> None:
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert leaf_hash(b"abc") == _sha256(b"\x00abc")
    assert node_hash(b"L" * 32, b"R" * 32) == _sha256(b"\x01" + b"L" * 32 + b"R" * 32)


@pytest.mark.parametrize("count", range(10))
def test_roots_0_to_9_match_the_reference(count: int) -> None:
    assert merkle_root(leaves_of(count)) == reference_root(leaves_of(count))


@pytest.mark.parametrize("count", range(41))
def test_roots_of_varied_leaves_match_the_reference(count: int) -> None:
    assert merkle_root(varied_leaves(count)) == reference_root(varied_leaves(count))


def test_rfc6962_known_roots() -> None:
    """The certificate-transparency reference tree (leaves of growing length)."""
    leaves = [
        bytes.fromhex(value)
        for value in [
            "",
            "00",
            "10",
            "2021",
            "3031",
            "40414243",
            "5051525354555657",
            "606162636465666768696a6b6c6d6e6f",
        ]
    ]
    expected = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ]
    for count, root in enumerate(expected, start=1):
        assert merkle_root(leaves[:count]).hex() == root


def test_root_depends_on_order_and_on_every_leaf() -> None:
    leaves = leaves_of(5)
    root = merkle_root(leaves)
    assert merkle_root(list(reversed(leaves))) != root
    for index in range(5):
        changed = list(leaves)
        changed[index] = b"\xee" * 32
        assert merkle_root(changed) != root
    # an odd tree is not the even tree with its last leaf duplicated (no Bitcoin-style padding)
    assert merkle_root(leaves_of(3)) != merkle_root(leaves_of(3) + [leaves_of(3)[-1]])
    # a single leaf is hashed, not used raw, and differs from an interior node
    assert merkle_root([b"x" * 32]) != b"x" * 32


# --------------------------------------------------------------------------- inclusion proofs

SIZES = range(1, 41)
CASES = [(size, index) for size in SIZES for index in range(size)]


@pytest.fixture(scope="module")
def trees() -> dict[int, tuple[list[bytes], bytes, list[list[bytes]]]]:
    result = {}
    for size in SIZES:
        leaves = varied_leaves(size)
        result[size] = (
            leaves,
            merkle_root(leaves),
            [inclusion_path(leaves, index) for index in range(size)],
        )
    return result


def test_paths_match_the_reference(trees) -> None:
    for size, (leaves, _, paths) in trees.items():
        for index in range(size):
            assert paths[index] == reference_path(index, leaves), (size, index)


def test_every_path_verifies(trees) -> None:
    for size, index in CASES:
        leaves, root, paths = trees[size]
        assert verify_inclusion(leaves[index], index, size, paths[index], root), (size, index)


def test_single_leaf_tree_has_an_empty_path() -> None:
    assert inclusion_path([b"only"], 0) == []
    assert verify_inclusion(b"only", 0, 1, [], merkle_root([b"only"]))
    assert not verify_inclusion(b"other", 0, 1, [], merkle_root([b"only"]))


def test_tampered_leaf_fails(trees) -> None:
    for size, index in CASES:
        leaves, root, paths = trees[size]
        assert not verify_inclusion(leaves[index] + b"\x00", index, size, paths[index], root)
        other = leaves[(index + 1) % size]
        if other != leaves[index]:
            assert not verify_inclusion(other, index, size, paths[index], root)


def test_tampered_path_fails(trees) -> None:
    for size, index in CASES:
        leaves, root, paths = trees[size]
        path = paths[index]
        for position in range(len(path)):
            flipped = list(path)
            flipped[position] = bytes([path[position][0] ^ 1]) + path[position][1:]
            assert not verify_inclusion(leaves[index], index, size, flipped, root)
        if path:
            assert not verify_inclusion(leaves[index], index, size, path[:-1], root)
            assert not verify_inclusion(leaves[index], index, size, path[1:], root)
            if len(path) > 1:
                swapped = [path[1], path[0], *path[2:]]
                assert not verify_inclusion(leaves[index], index, size, swapped, root)
        assert not verify_inclusion(leaves[index], index, size, path + [root], root)
        assert not verify_inclusion(leaves[index], index, size, path + [b"\x00" * 32], root)


def test_tampered_root_fails(trees) -> None:
    for size, index in CASES:
        leaves, root, paths = trees[size]
        wrong_root = bytes([root[0] ^ 0x80]) + root[1:]
        assert not verify_inclusion(leaves[index], index, size, paths[index], wrong_root)


def test_tampered_index_fails(trees) -> None:
    for size, index in CASES:
        leaves, root, paths = trees[size]
        for other in range(size):
            if other != index:
                assert not verify_inclusion(leaves[index], other, size, paths[index], root), (
                    size,
                    index,
                    other,
                )
        assert not verify_inclusion(leaves[index], size, size, paths[index], root)
        assert not verify_inclusion(leaves[index], -1, size, paths[index], root)


def test_tampered_total_fails(trees) -> None:
    """A total whose proof for this index has another length can never verify.

    (A total with the same path shape can: RFC 6962 proofs bind the tree size only
    when the verifier knows it, so the total itself must come from a trusted source.)
    """
    for size, index in CASES:
        leaves, root, paths = trees[size]
        path = paths[index]
        for other_total in range(0, 45):
            if other_total == size:
                continue
            if other_total <= index or reference_path_length(index, other_total) != len(path):
                assert not verify_inclusion(leaves[index], index, other_total, path, root), (
                    size,
                    index,
                    other_total,
                )


def test_path_of_the_wrong_length_for_the_claimed_position_fails(trees) -> None:
    """Any (index, total) claim whose audit path has another length is refused,
    e.g. leaf 1 of 2 passed off as the single leaf of a 1-leaf tree."""
    leaves, root, paths = trees[2]
    assert not verify_inclusion(leaves[1], 0, 1, paths[1], root)
    path_lengths = {
        (index, total): reference_path_length(index, total)
        for total in range(1, 19)
        for index in range(total)
    }
    for size in range(1, 17):
        leaves, root, paths = trees[size]
        for index in range(size):
            for (other_index, other_total), length in path_lengths.items():
                if length != len(paths[index]):
                    assert not verify_inclusion(
                        leaves[index], other_index, other_total, paths[index], root
                    ), (size, index, other_index, other_total)


def test_inclusion_path_rejects_an_index_out_of_range() -> None:
    with pytest.raises(IndexError):
        inclusion_path(leaves_of(3), 3)
    with pytest.raises(IndexError):
        inclusion_path(leaves_of(3), -1)
    with pytest.raises(IndexError):
        inclusion_path([], 0)


def test_verify_with_zero_total_fails() -> None:
    assert not verify_inclusion(b"x", 0, 0, [], EMPTY_ROOT)

"""Commits: the +2/3 precommits that finalize a block (PROTOCOL R24, R25, R26)."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import pytest

from consensus.commit import has_quorum, sign_commit, verify_commit
from consensus.vote import Vote
from marketplace_tx.chain.block import Commit, CommitSignature, decode_commit
from marketplace_tx.primitives import codec
from marketplace_tx.primitives.crypto import KeyPair
from marketplace_tx.primitives.errors import InvalidBlock

CHAIN_ID = "marketchain-test"
BLOCK_HASH = hashlib.sha256(b"block 7").digest()
HEIGHT = 7


def validator_keys(count: int, label: str = "validator") -> list[KeyPair]:
    keys = [KeyPair.from_seed(hashlib.sha256(f"{label}-{i}".encode()).digest()) for i in range(count)]
    return sorted(keys, key=lambda k: k.address)


def addresses(keys: list[KeyPair]) -> list[bytes]:
    return [k.address for k in keys]


def verify(commit: Commit, validators: list[bytes], block_hash: bytes = BLOCK_HASH, height: int = HEIGHT) -> None:
    verify_commit(commit, CHAIN_ID, block_hash, height, validators)


# --------------------------------------------------------------------------- quorum


def test_quorum_boundary() -> None:
    """More than 2/3: the least number of signers is floor(2n/3) + 1."""
    least = {1: 1, 2: 2, 3: 3, 4: 3, 5: 4, 6: 5, 7: 5, 8: 6, 9: 7, 10: 7, 100: 67}
    for n, needed in least.items():
        assert has_quorum(needed, n), n
        assert not has_quorum(needed - 1, n), n
    assert not has_quorum(0, 0)


@pytest.mark.parametrize(
    ("n", "signers", "ok"),
    [
        (1, 1, True),
        (1, 0, False),
        (2, 1, False),
        (2, 2, True),
        (3, 2, False),
        (3, 3, True),
        (4, 2, False),
        (4, 3, True),
        (4, 4, True),
        (6, 4, False),
        (6, 5, True),
        (7, 4, False),
        (7, 5, True),
    ],
)
def test_verify_commit_needs_more_than_two_thirds(n: int, signers: int, ok: bool) -> None:
    keys = validator_keys(n)
    # take signers from the end, so that the first validators (by address) are the absent ones
    commit = sign_commit(keys[n - signers:], CHAIN_ID, HEIGHT, 0, BLOCK_HASH)
    assert len(commit.signatures) == signers
    if ok:
        verify(commit, addresses(keys))
    else:
        with pytest.raises(InvalidBlock, match="2/3"):
            verify(commit, addresses(keys))


def test_validator_order_does_not_matter() -> None:
    keys = validator_keys(4)
    commit = sign_commit(keys[:3], CHAIN_ID, HEIGHT, 0, BLOCK_HASH)
    verify(commit, addresses(keys)[::-1])


# --------------------------------------------------------------------------- sign_commit


def test_sign_commit_builds_sorted_precommits() -> None:
    keys = validator_keys(4)
    commit = sign_commit(list(reversed(keys)), CHAIN_ID, HEIGHT, 2, BLOCK_HASH)
    assert [s.validator for s in commit.signatures] == addresses(keys)
    assert (commit.block_hash, commit.height, commit.round) == (BLOCK_HASH, HEIGHT, 2)
    vote = Vote(CHAIN_ID, HEIGHT, 2, "precommit", BLOCK_HASH)
    for key, entry in zip(keys, commit.signatures, strict=True):
        assert vote.verify(key.address, entry.signature)
        assert entry.signature == key.sign(
            b"marketchain/vote/v1\x00"
            + codec.encode(
                {"block_hash": BLOCK_HASH, "chain_id": CHAIN_ID, "height": HEIGHT, "round": 2, "type": "precommit"}
            )
        )


def test_commit_canonical_form() -> None:
    keys = validator_keys(2)
    commit = sign_commit(keys, CHAIN_ID, HEIGHT, 1, BLOCK_HASH)
    raw = commit.encode()
    decoded = codec.decode(raw)
    assert list(decoded) == ["block_hash", "height", "round", "signatures"]
    assert decoded["signatures"] == [
        {"signature": s.signature, "validator": s.validator} for s in commit.signatures
    ]
    assert decode_commit(raw) == commit
    assert Commit.from_map(commit.to_map()) == commit


# --------------------------------------------------------------------------- rejections


def test_signer_outside_the_set() -> None:
    keys = validator_keys(4)
    outsider = validator_keys(1, "outsider")[0]
    commit = sign_commit(keys[:3] + [outsider], CHAIN_ID, HEIGHT, 0, BLOCK_HASH)
    with pytest.raises(InvalidBlock, match="not in the set"):
        verify(commit, addresses(keys))
    # even a commit that would have a quorum without the outsider
    commit = sign_commit(keys + [outsider], CHAIN_ID, HEIGHT, 0, BLOCK_HASH)
    with pytest.raises(InvalidBlock, match="not in the set"):
        verify(commit, addresses(keys))


def _replace_signature(commit: Commit, position: int, signature: bytes) -> Commit:
    signatures = list(commit.signatures)
    signatures[position] = dataclasses.replace(signatures[position], signature=signature)
    return dataclasses.replace(commit, signatures=tuple(signatures))


def test_bad_signature() -> None:
    keys = validator_keys(4)
    commit = sign_commit(keys, CHAIN_ID, HEIGHT, 0, BLOCK_HASH)
    for position in range(4):
        original = commit.signatures[position].signature
        flipped = bytes([original[0] ^ 1]) + original[1:]
        with pytest.raises(InvalidBlock, match="invalid"):
            verify(_replace_signature(commit, position, flipped), addresses(keys))
    # a valid signature by another member, filed under the wrong validator
    swapped = _replace_signature(commit, 0, commit.signatures[1].signature)
    with pytest.raises(InvalidBlock, match="invalid"):
        verify(swapped, addresses(keys))


def test_wrong_block_hash() -> None:
    keys = validator_keys(4)
    commit = sign_commit(keys, CHAIN_ID, HEIGHT, 0, BLOCK_HASH)
    with pytest.raises(InvalidBlock, match="another block"):
        verify(commit, addresses(keys), block_hash=b"\x00" * 32)
    with pytest.raises(InvalidBlock, match="another block"):
        verify(commit, addresses(keys), height=HEIGHT + 1)
    # a commit claiming another block hash than its signatures cover
    relabelled = dataclasses.replace(commit, block_hash=b"\x00" * 32)
    with pytest.raises(InvalidBlock, match="invalid"):
        verify(relabelled, addresses(keys), block_hash=b"\x00" * 32)


@pytest.mark.parametrize(
    "vote",
    [
        Vote(CHAIN_ID, HEIGHT, 0, "prevote", BLOCK_HASH),
        Vote("marketchain-other", HEIGHT, 0, "precommit", BLOCK_HASH),
        Vote(CHAIN_ID, HEIGHT, 1, "precommit", BLOCK_HASH),
        Vote(CHAIN_ID, HEIGHT - 1, 0, "precommit", BLOCK_HASH),
        Vote(CHAIN_ID, HEIGHT, 0, "precommit", None),
    ],
    ids=["prevote", "other chain", "other round", "other height", "nil"],
)
def test_signatures_of_other_votes_do_not_count(vote: Vote) -> None:
    keys = validator_keys(4)
    signatures = tuple(CommitSignature(k.address, vote.sign(k)) for k in keys)
    commit = Commit(BLOCK_HASH, HEIGHT, 0, signatures)
    with pytest.raises(InvalidBlock, match="invalid"):
        verify(commit, addresses(keys))


def test_duplicate_signer_does_not_make_a_quorum() -> None:
    keys = validator_keys(4)
    commit = sign_commit([keys[0], keys[0], keys[1]], CHAIN_ID, HEIGHT, 0, BLOCK_HASH)
    with pytest.raises(InvalidBlock):
        verify(commit, addresses(keys))


# --------------------------------------------------------------------------- parsing


def _commit_map(keys: list[KeyPair]) -> dict[str, Any]:
    return sign_commit(keys, CHAIN_ID, HEIGHT, 0, BLOCK_HASH).to_map()


def test_from_map_rejects_unsorted_signatures() -> None:
    value = _commit_map(validator_keys(3))
    value["signatures"] = value["signatures"][::-1]
    with pytest.raises(InvalidBlock, match="sorted"):
        Commit.from_map(value)
    with pytest.raises(InvalidBlock, match="sorted"):
        decode_commit(codec.encode(value))


def test_from_map_rejects_duplicate_signatures() -> None:
    value = _commit_map(validator_keys(3))
    value["signatures"] = [value["signatures"][0], *value["signatures"]]
    with pytest.raises(InvalidBlock, match="unique"):
        Commit.from_map(value)


@pytest.mark.parametrize(
    "change",
    [
        lambda m: m.pop("round"),
        lambda m: m.__setitem__("extra", 1),
        lambda m: m.__setitem__("block_hash", b"\x00" * 31),
        lambda m: m.__setitem__("height", -1),
        lambda m: m.__setitem__("round", True),
        lambda m: m.__setitem__("signatures", {}),
        lambda m: m["signatures"][0].__setitem__("signature", b"\x00" * 63),
        lambda m: m["signatures"][0].__setitem__("validator", b"\x00" * 33),
        lambda m: m["signatures"][0].__setitem__("extra", 1),
        lambda m: m["signatures"].append([]),
    ],
)
def test_from_map_rejects_malformed_commits(change: Any) -> None:
    value = _commit_map(validator_keys(2))
    Commit.from_map(value)
    change(value)
    with pytest.raises(InvalidBlock):
        Commit.from_map(value)


def test_decode_commit_rejects_non_canonical_bytes() -> None:
    raw = sign_commit(validator_keys(1), CHAIN_ID, HEIGHT, 0, BLOCK_HASH).encode()
    with pytest.raises(InvalidBlock, match="canonical"):
        decode_commit(raw + b"\x00")

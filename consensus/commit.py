"""Commits: the +2/3 precommits that make a block final (PROTOCOL R24, R25)."""

from __future__ import annotations

from collections.abc import Sequence

from consensus.vote import Vote
from marketplace_tx.chain.block import Commit, CommitSignature
from marketplace_tx.primitives.crypto import KeyPair, verify_signature
from marketplace_tx.primitives.errors import InvalidBlock


def has_quorum(signers: int, validators: int) -> bool:
    """More than 2/3 of the set: 3 × signers > 2 × n (R25)."""
    return 3 * signers > 2 * validators


def sign_commit(
    keys: Sequence[KeyPair], chain_id: str, height: int, round_number: int, block_hash: bytes
) -> Commit:
    """A commit built from the precommits of `keys` (the single-authority case, and tests)."""
    vote = Vote(chain_id, height, round_number, "precommit", block_hash)
    signatures = sorted(
        (CommitSignature(key.address, vote.sign(key)) for key in keys),
        key=lambda signature: signature.validator,
    )
    return Commit(block_hash, height, round_number, tuple(signatures))


def verify_commit(
    commit: Commit, chain_id: str, block_hash: bytes, height: int, validators: Sequence[bytes]
) -> None:
    """Raise `InvalidBlock` unless `commit` finalizes `block_hash` at `height` (R24).

    Signatures must be sorted and unique (checked when parsed), come from
    `validators` (the set of that height), be valid precommits, and number more
    than 2/3 of the set.
    """
    if commit.block_hash != block_hash or commit.height != height:
        raise InvalidBlock("commit is for another block")
    members = set(validators)
    signers = [entry.validator for entry in commit.signatures]
    if signers != sorted(set(signers)):
        raise InvalidBlock("commit signatures must be sorted by validator and unique")
    vote = Vote(chain_id, height, commit.round, "precommit", block_hash)
    message = vote.signing_bytes()
    for entry in commit.signatures:
        if entry.validator not in members:
            raise InvalidBlock(f"commit signer {entry.validator.hex()} is not in the set")
        if not verify_signature(entry.validator, message, entry.signature):
            raise InvalidBlock(f"commit signature of {entry.validator.hex()} is invalid")
    if not has_quorum(len(commit.signatures), len(members)):
        raise InvalidBlock("commit does not hold more than 2/3 of the validators")



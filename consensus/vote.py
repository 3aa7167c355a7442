"""Votes: prevotes and precommits, their signing bytes and signatures (PROTOCOL R26)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from marketplace_tx.primitives.crypto import KeyPair, signing_bytes, verify_signature

VOTE_TYPES = ("prevote", "precommit")
"""The two kinds of vote of Tendermint's algorithm."""


@dataclass(frozen=True)
class Vote:
    """What a validator votes for at (height, round); `block_hash` None is a nil vote."""

    chain_id: str
    """The chain's id."""
    height: int
    """The height voted on."""
    round: int
    """The round voted in."""
    type: str
    """`prevote` or `precommit`."""
    block_hash: bytes | None
    """The block voted for, or None for nil (encoded as an explicit msgpack nil)."""

    def to_map(self) -> dict[str, Any]:
        """The signed map `{block_hash, chain_id, height, round, type}` (R26)."""
        return {
            "block_hash": self.block_hash,
            "chain_id": self.chain_id,
            "height": self.height,
            "round": self.round,
            "type": self.type,
        }

    def signing_bytes(self) -> bytes:
        """Domain tag `vote` + canonical map (R4, R26)."""
        return signing_bytes("vote", self.to_map())

    def sign(self, key: KeyPair) -> bytes:
        """The validator's signature of this vote."""
        return key.sign(self.signing_bytes())

    def verify(self, validator: bytes, signature: bytes) -> bool:
        """True iff `signature` is `validator`'s signature of this vote."""
        return verify_signature(validator, self.signing_bytes(), signature)


@dataclass(frozen=True)
class SignedVote:
    """A vote with its signer and signature, as the consensus core counts it (R26, R27)."""

    validator: bytes
    """The signer's address."""
    vote: Vote
    """What was voted."""
    signature: bytes
    """The signer's Ed25519 signature (kind `vote`) of `vote`."""

    def verify(self) -> bool:
        """True iff `signature` is `validator`'s signature of `vote`."""
        return self.vote.verify(self.validator, self.signature)

    def conflicts_with(self, other: SignedVote) -> bool:
        """True iff both are one validator's votes at one (height, round, type) for
        different blocks: the double sign that R27 forbids and that is evidence."""
        return (
            self.validator == other.validator
            and self.vote.chain_id == other.vote.chain_id
            and self.vote.height == other.vote.height
            and self.vote.round == other.vote.round
            and self.vote.type == other.vote.type
            and self.vote.block_hash != other.vote.block_hash
        )

"""The votes of one (height, round, type) (PROTOCOL R25, R27).

Algorithm 1 counts messages from distinct validators: "2f+1 ⟨PREVOTE, h, r, id(v)⟩"
is a tally per value, "2f+1 ⟨PREVOTE, h, r, *⟩" a tally of validators. So a validator
counts at most once in each value's tally and once in the total. A validator that
votes twice for different values (a double sign, R27) is reported as evidence and
counts once in each of those values' tallies: safety holds anyway (two quorums share
more than f validators, so at least one correct one), and liveness needs it, since
correct nodes may each have heard a different one of the two votes first.

The set is immutable: `add` returns a new set.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from consensus.vote import SignedVote
from marketplace_tx.chain.block import CommitSignature


def more_than_one_third(signers: int, validators: int) -> bool:
    """At least f + 1 of n = 3f + 1: 3 × signers > n (Algorithm 1, line 55)."""
    return 3 * signers > validators


@dataclass(frozen=True)
class VoteSet:
    """Votes of one (height, round, type); never mutated."""

    first_votes: dict[bytes, SignedVote] = field(default_factory=dict)
    """The first vote of each validator, in arrival order (the "any" tally)."""
    by_value: dict[bytes | None, dict[bytes, SignedVote]] = field(default_factory=dict)
    """For each block hash (None: nil), the validators that voted for it."""

    def add(self, signed: SignedVote) -> tuple[VoteSet, SignedVote | None]:
        """This set with `signed` counted, and the signer's earlier vote for another
        value if there is one (a double sign, R27); a duplicate returns this set."""
        value = signed.vote.block_hash
        voters = self.by_value.get(value, {})
        if signed.validator in voters:
            return self, None
        by_value = dict(self.by_value)
        by_value[value] = {**voters, signed.validator: signed}
        earlier = self.first_votes.get(signed.validator)
        if earlier is not None:
            return VoteSet(self.first_votes, by_value), earlier
        first_votes = {**self.first_votes, signed.validator: signed}
        return VoteSet(first_votes, by_value), None

    def count(self, block_hash: bytes | None) -> int:
        """How many validators voted for `block_hash` (None: nil)."""
        return len(self.by_value.get(block_hash, ()))

    def total(self) -> int:
        """How many validators voted at all (Algorithm 1: `2f+1 ⟨…, *⟩`)."""
        return len(self.first_votes)

    def signers(self) -> tuple[bytes, ...]:
        """Every validator counted here, in arrival order."""
        return tuple(self.first_votes)

    def commit_signatures(self, block_hash: bytes) -> tuple[CommitSignature, ...]:
        """The signatures of the votes for `block_hash`, sorted by validator (R24)."""
        voters = self.by_value.get(block_hash, {})
        return tuple(
            CommitSignature(validator, voters[validator].signature) for validator in sorted(voters)
        )

"""What the consensus core asks the driver to do: the outputs of `step` (PROTOCOL R24–R27)."""

from __future__ import annotations

from dataclasses import dataclass

from consensus.timeouts import Step
from consensus.vote import SignedVote
from marketplace_tx.chain.block import Commit


@dataclass(frozen=True)
class BuildProposal:
    """This node proposes at (height, round) and holds no valid value: build a block
    and answer with `ProposalBuilt`."""

    height: int
    """The height to build for."""
    round: int
    """The round to propose in."""


@dataclass(frozen=True)
class BroadcastProposal:
    """Sign (kind `proposal`, R26) and gossip this proposal with its block."""

    height: int
    """The height proposed for."""
    round: int
    """The round proposed in."""
    pol_round: int
    """The proof-of-lock round of a re-proposed valid value, or −1 for a fresh one."""
    block_hash: bytes
    """The proposed block's hash."""
    block: object
    """The opaque block payload to gossip with it."""


@dataclass(frozen=True)
class CastVote:
    """Persist (fsynced), sign, gossip, and feed back as `VoteReceived`, this vote.

    The core never asks for two different votes at one (height, round, type) (R27).
    """

    height: int
    """The height voted on."""
    round: int
    """The round voted in."""
    type: str
    """`prevote` or `precommit`."""
    block_hash: bytes | None
    """The block voted for, or None for nil."""


@dataclass(frozen=True)
class ScheduleTimeout:
    """Feed `TimeoutFired(height, round, step)` back after `delay_ms`."""

    height: int
    """The height it belongs to."""
    round: int
    """The round it belongs to."""
    step: Step
    """Which timeout."""
    delay_ms: int
    """How long to wait (grows per round, R25)."""


@dataclass(frozen=True)
class DecideBlock:
    """`block_hash` is final at `height` (R25): store it with its commit, execute it,
    then start the next height."""

    height: int
    """The decided height."""
    round: int
    """The round whose precommits decided it."""
    block_hash: bytes
    """The decided block's hash."""
    block: object
    """The decided block's payload."""
    commit: Commit
    """More than 2/3 precommits for it in `round`, sorted by validator (R24)."""


@dataclass(frozen=True)
class EvidenceFound:
    """One validator signed two different votes at one (height, round, type) (R27)."""

    vote_a: SignedVote
    """The vote counted first."""
    vote_b: SignedVote
    """The conflicting vote."""


Action = (
    BuildProposal | BroadcastProposal | CastVote | ScheduleTimeout | DecideBlock | EvidenceFound
)
"""Every output of `consensus.tendermint.step`."""

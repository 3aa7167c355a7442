"""What the driver tells the consensus core: the inputs of `step` (PROTOCOL R25–R29).

The driver (node/ in production, tests/consensus_simulator.py in tests) checks every
signature, executes proposed blocks, runs the timers and buffers messages of future
heights; the core sees only these checked, typed facts.
"""

from __future__ import annotations

from dataclasses import dataclass

from consensus.proposal import Proposal
from consensus.timeouts import Step
from consensus.vote import SignedVote, Vote


@dataclass(frozen=True)
class StartHeight:
    """Begin consensus on `height`. The core then waits silently (R29) until
    `WorkAvailable`, or a proposal or vote of this height from a validator."""

    height: int
    """The height to decide; must exceed the current one (else ignored)."""
    validators: tuple[bytes, ...]
    """The set that signs this height, any order (equal power, R25)."""
    own_address: bytes | None
    """This node's validator address, or None for a non-validator that only follows."""


@dataclass(frozen=True)
class WorkAvailable:
    """A block is needed at `height`: transactions wait, or a deadline or validator
    change falls due (R29). Starts round 0 if the height has not started."""

    height: int
    """The height the work is for (ignored unless it is the current one)."""


@dataclass(frozen=True)
class ProposalReceived:
    """A proposal whose signature the driver checked, with its block and the driver's
    verdict on it (executed, roots checked, R28 clock drift for fresh values)."""

    proposal: Proposal
    """The signed proposal (R26)."""
    proposer: bytes
    """Who signed it; must be `proposer_for(validators, height, round)` (R25)."""
    block: object
    """The opaque block payload; its hash must be `proposal.block_hash`."""
    valid: bool
    """The driver's `valid(v)`: the block executes and hashes to `proposal.block_hash`."""
    timely: bool = True
    """False if the block's time is more than `max_clock_drift_ms` ahead of this node's
    clock (R28): the node then prevotes nil on it as a fresh proposal (line 22), yet it
    stays valid for a re-proposal, a lock or a decision."""


@dataclass(frozen=True)
class VoteReceived:
    """A prevote or precommit whose signature the driver checked; the driver also
    feeds back this node's own votes this way (R26)."""

    validator: bytes
    """The signer's address."""
    vote: Vote
    """The vote."""
    signature: bytes
    """Its signature, kept for commits (R24) and evidence (R27)."""

    def signed(self) -> SignedVote:
        """The vote with its signer and signature."""
        return SignedVote(self.validator, self.vote, self.signature)


@dataclass(frozen=True)
class TimeoutFired:
    """A timeout that the core scheduled has expired."""

    height: int
    """The height it was scheduled at."""
    round: int
    """The round it was scheduled in."""
    step: Step
    """Which timeout: propose, prevote or precommit."""


@dataclass(frozen=True)
class ProposalBuilt:
    """The driver built the block asked for by `BuildProposal`."""

    height: int
    """The height it was asked for."""
    round: int
    """The round it was asked for."""
    block_hash: bytes
    """The new block's hash (R23)."""
    block: object
    """The opaque block payload."""


@dataclass(frozen=True)
class NodeRestarted:
    """The driver restored the state persisted before a crash (R27) and lost its
    timers: the core schedules them again, asks again for a block being built, or
    repeats its decision."""


Event = (
    StartHeight
    | WorkAvailable
    | ProposalReceived
    | VoteReceived
    | TimeoutFired
    | ProposalBuilt
    | NodeRestarted
)
"""Every input of `consensus.tendermint.step`."""

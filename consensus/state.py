"""The consensus core's state: one height of Tendermint (Algorithm 1's variables, R25).

Every value is immutable in use: `step` never mutates a state it is given, it
returns a new one (the containers are plain dicts and frozensets, copied on write).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from consensus.timeouts import Step, TimeoutConfig
from consensus.vote import SignedVote
from consensus.vote_set import VoteSet


@dataclass(frozen=True)
class ProposalRecord:
    """A proposal of some round, from that round's proposer, with the driver's verdict."""

    pol_round: int
    """Its proof-of-lock round, −1 for a fresh value."""
    block_hash: bytes
    """The proposed block's hash: `id(v)`."""
    block: object
    """The opaque block payload: `v`."""
    valid: bool
    """`valid(v)`, as the driver judged it."""
    timely: bool = True
    """False if the driver found its time too far ahead of its clock (R28)."""


@dataclass(frozen=True)
class Decision:
    """What this height decided (Algorithm 1: `decision_p[h_p]`)."""

    round: int
    """The round whose precommits decided it."""
    block_hash: bytes
    """The decided block's hash."""


RoundAndType = tuple[int, str]
"""A (round, vote type) key."""


@dataclass(frozen=True)
class ConsensusState:
    """Everything one node's consensus core knows about its current height."""

    chain_id: str
    """The chain's id; votes of other chains are ignored."""
    timeouts: TimeoutConfig
    """How long each step waits (R25)."""
    height: int = 0
    """`h_p`: the height being decided; 0 before the first `StartHeight`."""
    validators: tuple[bytes, ...] = ()
    """The set of this height, sorted by address (R25)."""
    members: frozenset[bytes] = frozenset()
    """The same set, for membership tests."""
    own_address: bytes | None = None
    """This node's address if it is in the set; None for a follower that never votes."""
    started: bool = False
    """False until work is available or a validator's message of this height arrives
    (R29): until then the node does nothing."""
    round: int = 0
    """`round_p`: the current round."""
    step: Step = Step.PROPOSE
    """`step_p`: the current step."""
    locked_value: bytes | None = None
    """`lockedValue_p`: the block hash this node is locked on, or None."""
    locked_round: int = -1
    """`lockedRound_p`: the round it locked in, −1 for none."""
    valid_value: bytes | None = None
    """`validValue_p`: the hash of the latest block seen with a prevote quorum, or None."""
    valid_block: object = None
    """The payload of `valid_value`, re-proposed when this node proposes."""
    valid_round: int = -1
    """`validRound_p`: the round of `valid_value`, −1 for none."""
    proposals: dict[int, dict[bytes, ProposalRecord]] = field(default_factory=dict)
    """Proposals from each round's proposer, by round then block hash, in arrival order."""
    votes: dict[RoundAndType, VoteSet] = field(default_factory=dict)
    """Counted votes by (round, type)."""
    round_senders: dict[int, frozenset[bytes]] = field(default_factory=dict)
    """Validators heard from (votes or proposal) in each round (line 55's f + 1)."""
    cast_votes: dict[RoundAndType, bytes | None] = field(default_factory=dict)
    """What this node voted, by (round, type): never two values for one key (R27)."""
    fired: frozenset[tuple[str, int]] = frozenset()
    """The (rule, round) pairs of Algorithm 1's "for the first time" rules that fired."""
    pending_build: int | None = None
    """The round whose block the driver is building (`BuildProposal` sent), or None."""
    decision: Decision | None = None
    """What this height decided, or None."""
    reported_evidence: frozenset[tuple[bytes, int, str]] = frozenset()
    """(validator, round, type) already reported as double signs (R27)."""

    @property
    def is_validator(self) -> bool:
        """True iff this node votes at this height."""
        return self.own_address is not None

    def evolve(self, **changes: object) -> ConsensusState:
        """A copy with `changes`: `dataclasses.replace` without re-running `__init__`,
        which the simulator's thousands of schedules call millions of times."""
        copy = object.__new__(ConsensusState)
        copy.__dict__.update(self.__dict__)
        copy.__dict__.update(changes)
        return copy

    def vote_set(self, round_number: int, vote_type: str) -> VoteSet:
        """The counted votes of (round, type); empty if none."""
        return self.votes.get((round_number, vote_type), _EMPTY)


_EMPTY = VoteSet()


def with_proposal(
    state: ConsensusState, round_number: int, proposer: bytes, record: ProposalRecord
) -> ConsensusState:
    """`state` with `record` kept as a proposal of `round_number` by `proposer`.

    Every distinct block a round's proposer offers is kept (a faulty proposer may offer
    several): the decision rule needs the one that gathers the precommits.
    """
    proposals = dict(state.proposals)
    in_round = dict(proposals.get(round_number, {}))
    in_round.setdefault(record.block_hash, record)
    proposals[round_number] = in_round
    return _with_sender(state, round_number, proposer, proposals=proposals)


def with_vote(
    state: ConsensusState, signed: SignedVote
) -> tuple[ConsensusState, SignedVote | None]:
    """`state` with `signed` counted, and the signer's earlier vote for another value at
    this (round, type) if any (a double sign, R27). A duplicate returns `state` itself."""
    key = (signed.vote.round, signed.vote.type)
    before = state.vote_set(*key)
    after, earlier = before.add(signed)
    if after is before:
        return state, None
    votes = dict(state.votes)
    votes[key] = after
    return _with_sender(state, signed.vote.round, signed.validator, votes=votes), earlier


def _with_sender(
    state: ConsensusState, round_number: int, sender: bytes, **changes: object
) -> ConsensusState:
    senders = state.round_senders.get(round_number, frozenset())
    if sender not in senders:
        round_senders = dict(state.round_senders)
        round_senders[round_number] = senders | {sender}
        changes["round_senders"] = round_senders
    return state.evolve(**changes)

"""The Tendermint consensus core as a pure state machine (PROTOCOL R25–R27, R29).

    state, actions = step(state, event)

No I/O, clock, randomness or mutation: the driver feeds checked events (signatures
verified, blocks executed, timers fired) and carries out the returned actions
(sign, persist, gossip, schedule, commit). The rules themselves are in
`consensus.rules`, line by line with the paper; this module checks each event,
records it, and lets the rules fire. See docs/consensus.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from consensus.actions import Action, BroadcastProposal, BuildProposal, EvidenceFound
from consensus.events import (
    Event,
    NodeRestarted,
    ProposalBuilt,
    ProposalReceived,
    StartHeight,
    TimeoutFired,
    VoteReceived,
    WorkAvailable,
)
from consensus.proposal import NO_POL_ROUND
from consensus.rules import (
    Result,
    apply_rules,
    decide_action,
    on_timeout,
    schedule_timeout,
    start_round,
)
from consensus.state import ConsensusState, ProposalRecord, with_proposal, with_vote
from consensus.timeouts import Step, TimeoutConfig
from consensus.vote import VOTE_TYPES, SignedVote
from marketplace_tx.rules.validators import proposer_for

HASH_BYTES = 32


def initial_state(chain_id: str, timeouts: TimeoutConfig | None = None) -> ConsensusState:
    """The core before its first `StartHeight`."""
    return ConsensusState(chain_id=chain_id, timeouts=timeouts or TimeoutConfig())


def step(state: ConsensusState, event: Event) -> tuple[ConsensusState, tuple[Action, ...]]:
    """Apply one event: the new state and the actions for the driver, in order."""
    handler = _HANDLERS.get(type(event))
    if handler is None:
        raise TypeError(f"not a consensus event: {event!r}")
    new_state, actions = handler(state, event)
    return new_state, tuple(actions)


def is_future_height(state: ConsensusState, height: int) -> bool:
    """True iff a message of `height` must wait in the driver's buffer for a later
    `StartHeight` (the core ignores every height but its own)."""
    return height > state.height


# --------------------------------------------------------------------------- handlers


def _start_height(state: ConsensusState, event: StartHeight) -> Result:
    """A fresh height: nothing happens until work or a message arrives (R29)."""
    if event.height <= state.height or not event.validators:
        return state, []
    members = frozenset(event.validators)
    own = event.own_address if event.own_address in members else None
    fresh = ConsensusState(
        chain_id=state.chain_id,
        timeouts=state.timeouts,
        height=event.height,
        validators=tuple(sorted(members)),
        members=members,
        own_address=own,
    )
    return fresh, []


def _begin(state: ConsensusState) -> Result:
    """`upon start do StartRound(0)` (line 10), delayed by R29 until needed."""
    return start_round(state.evolve(started=True), 0)


def _work_available(state: ConsensusState, event: WorkAvailable) -> Result:
    if event.height != state.height or state.started or not state.validators:
        return state, []
    state, actions = _begin(state)
    state, more = apply_rules(state)
    return state, actions + more


def _proposal_received(state: ConsensusState, event: ProposalReceived) -> Result:
    proposal = event.proposal
    if not _proposal_acceptable(state, event):
        return state, []
    known = state.proposals.get(proposal.round, {})
    if proposal.block_hash in known:
        return state, []
    actions: list[Action] = []
    if not state.started:
        state, actions = _begin(state)
    record = ProposalRecord(
        proposal.pol_round, proposal.block_hash, event.block, event.valid, event.timely
    )
    state = with_proposal(state, proposal.round, event.proposer, record)
    state, more = apply_rules(state)
    return state, actions + more


def _proposal_acceptable(state: ConsensusState, event: ProposalReceived) -> bool:
    """Of this height and chain, from the round's proposer (R25), well formed."""
    proposal = event.proposal
    return (
        state.decision is None
        and bool(state.validators)
        and proposal.height == state.height
        and proposal.chain_id == state.chain_id
        and isinstance(proposal.block_hash, bytes)
        and len(proposal.block_hash) == HASH_BYTES
        and 0 <= proposal.round
        and NO_POL_ROUND <= proposal.pol_round < proposal.round
        and event.proposer == proposer_for(state.validators, state.height, proposal.round)
    )


def _vote_received(state: ConsensusState, event: VoteReceived) -> Result:
    vote = event.vote
    well_formed = (
        vote.height == state.height
        and vote.chain_id == state.chain_id
        and event.validator in state.members
        and vote.type in VOTE_TYPES
        and vote.round >= 0
        and (
            vote.block_hash is None
            or (isinstance(vote.block_hash, bytes) and len(vote.block_hash) == HASH_BYTES)
        )
    )
    if not well_formed:
        return state, []
    counted, earlier = with_vote(state, event.signed())
    if counted is state:
        return state, []
    actions: list[Action] = []
    if earlier is not None:
        counted, actions = _report_double_sign(counted, earlier, event)
    if counted.decision is not None:
        return counted, actions
    if not counted.started:
        counted, begun = _begin(counted)
        actions.extend(begun)
    counted, more = apply_rules(counted)
    return counted, actions + more


def _report_double_sign(state: ConsensusState, earlier: SignedVote, event: VoteReceived) -> Result:
    """R27: two different signed votes of one validator at one (height, round, type),
    reported once per (validator, round, type)."""
    key = (event.validator, event.vote.round, event.vote.type)
    if key in state.reported_evidence:
        return state, []
    state = state.evolve(reported_evidence=state.reported_evidence | {key})
    return state, [EvidenceFound(earlier, event.signed())]


def _timeout_fired(state: ConsensusState, event: TimeoutFired) -> Result:
    state, actions = on_timeout(state, event)
    state, more = apply_rules(state)
    return state, actions + more


def _proposal_built(state: ConsensusState, event: ProposalBuilt) -> Result:
    """The block asked for in this round: propose it with pol_round −1 (line 19)."""
    if (
        event.height != state.height
        or event.round != state.round
        or state.pending_build != event.round
        or state.decision is not None
        or state.own_address is None
    ):
        return state, []
    record = ProposalRecord(NO_POL_ROUND, event.block_hash, event.block, True)
    state = with_proposal(state.evolve(pending_build=None), event.round, state.own_address, record)
    broadcast = BroadcastProposal(
        state.height, event.round, NO_POL_ROUND, event.block_hash, event.block
    )
    state, more = apply_rules(state)
    return state, [broadcast, *more]


def _node_restarted(state: ConsensusState, event: NodeRestarted) -> Result:
    """Timers die with the process: schedule again those the current round still
    waits on, ask again for a block being built, and repeat a decision the driver may
    not have stored (it must store a decided block idempotently)."""
    if state.decision is not None:
        return state, [decide_action(state)]
    if not state.started:
        return state, []
    actions: list[Action] = []
    if state.pending_build == state.round:
        actions.append(BuildProposal(state.height, state.round))
    if state.step is Step.PROPOSE:
        actions.extend(schedule_timeout(state, Step.PROPOSE))
    if state.step is Step.PREVOTE and ("prevote_timeout", state.round) in state.fired:
        actions.extend(schedule_timeout(state, Step.PREVOTE))
    if ("precommit_timeout", state.round) in state.fired:
        actions.extend(schedule_timeout(state, Step.PRECOMMIT))
    return state, actions


_HANDLERS: dict[type, Callable[[ConsensusState, Any], Result]] = {
    StartHeight: _start_height,
    WorkAvailable: _work_available,
    ProposalReceived: _proposal_received,
    VoteReceived: _vote_received,
    TimeoutFired: _timeout_fired,
    ProposalBuilt: _proposal_built,
    NodeRestarted: _node_restarted,
}

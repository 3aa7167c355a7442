"""Tendermint's Algorithm 1, rule by rule (PROTOCOL R25, R27).

Buchman, Kwon, Milosevic, "The latest gossip on BFT consensus" (2018), Algorithm 1.
Line numbers below are the paper's. Each `upon_*` function is one "upon" rule of the
current height: it returns None when its condition does not hold, else the new state
and the actions it asks for. `apply_rules` fires enabled rules until none is left.

With n validators of equal power, `2f + 1` reads "more than 2/3 of n" (`has_quorum`)
and `f + 1` reads "more than 1/3 of n" (`more_than_one_third`).
"""

from __future__ import annotations

from collections.abc import Callable

from consensus.actions import (
    Action,
    BroadcastProposal,
    BuildProposal,
    CastVote,
    DecideBlock,
    ScheduleTimeout,
)
from consensus.commit import has_quorum
from consensus.events import TimeoutFired
from consensus.proposal import NO_POL_ROUND
from consensus.state import ConsensusState, Decision, ProposalRecord, with_proposal
from consensus.timeouts import Step
from consensus.vote_set import more_than_one_third
from marketplace_tx.chain.block import Commit
from marketplace_tx.rules.validators import proposer_for

PREVOTE = "prevote"
PRECOMMIT = "precommit"

Result = tuple[ConsensusState, list[Action]]
"""A new state and the actions that lead to it."""


class ConflictingVoteError(Exception):
    """The core was about to ask for a second, different vote at one (height, round,
    type): a bug that R27 forbids ever reaching the signer."""


def quorum(state: ConsensusState, count: int) -> bool:
    """`count` is more than 2/3 of the set (2f + 1)."""
    return has_quorum(count, len(state.validators))


# --------------------------------------------------------------------------- helpers


def start_round(state: ConsensusState, round_number: int) -> Result:
    """StartRound (lines 11–21): enter `round_number` at step propose; the proposer
    re-proposes its valid value or asks the driver to build a block.

    Unlike the paper, the proposer also schedules timeoutPropose (as CometBFT does), so
    a driver that fails to build a block cannot stall it in step propose.
    """
    state = state.evolve(round=round_number, step=Step.PROPOSE, pending_build=None)
    actions: list[Action] = []
    own = state.own_address
    if own is not None and proposer_for(state.validators, state.height, round_number) == own:
        if state.valid_value is not None:
            record = ProposalRecord(state.valid_round, state.valid_value, state.valid_block, True)
            state = with_proposal(state, round_number, own, record)
            actions.append(
                BroadcastProposal(
                    state.height,
                    round_number,
                    state.valid_round,
                    state.valid_value,
                    state.valid_block,
                )
            )
        else:
            state = state.evolve(pending_build=round_number)
            actions.append(BuildProposal(state.height, round_number))
    actions.extend(schedule_timeout(state, Step.PROPOSE))
    return state, actions


def schedule_timeout(state: ConsensusState, step: Step) -> list[Action]:
    """Ask for timeout `step` of the current round (validators only)."""
    if not state.is_validator:
        return []
    delay_ms = state.timeouts.delay_ms(step, state.round)
    return [ScheduleTimeout(state.height, state.round, step, delay_ms)]


def cast_vote(state: ConsensusState, vote_type: str, block_hash: bytes | None) -> Result:
    """Broadcast ⟨vote_type, h_p, round_p, block_hash⟩, after checking R27: never a
    second, different vote at one (height, round, type). Followers record, never sign."""
    key = (state.round, vote_type)
    if key in state.cast_votes:
        if state.cast_votes[key] == block_hash:
            return state, []
        raise ConflictingVoteError(
            f"height {state.height} round {state.round}: {vote_type} already cast"
        )
    cast_votes = dict(state.cast_votes)
    cast_votes[key] = block_hash
    state = state.evolve(cast_votes=cast_votes)
    if not state.is_validator:
        return state, []
    return state, [CastVote(state.height, state.round, vote_type, block_hash)]


def _vote_and_step(
    state: ConsensusState, vote_type: str, block_hash: bytes | None, step: Step
) -> Result:
    state, actions = cast_vote(state, vote_type, block_hash)
    return state.evolve(step=step), actions


def _first_time(state: ConsensusState, rule: str) -> ConsensusState | None:
    """`state` with `rule` marked as fired in the current round, or None if it had."""
    key = (rule, state.round)
    if key in state.fired:
        return None
    return state.evolve(fired=state.fired | {key})


def _current_proposals(state: ConsensusState) -> list[ProposalRecord]:
    return list(state.proposals.get(state.round, {}).values())


# --------------------------------------------------------------------------- rules


def upon_decision(state: ConsensusState) -> Result | None:
    """Line 49: ⟨PROPOSAL, h_p, r, v, *⟩ from proposer(h_p, r) and 2f+1 ⟨PRECOMMIT, h_p,
    r, id(v)⟩ while decision_p[h_p] = nil: if valid(v), decide v, in any round r."""
    for round_number, records in state.proposals.items():
        precommits = state.vote_set(round_number, PRECOMMIT)
        if not quorum(state, precommits.total()):
            continue
        for record in records.values():
            if record.valid and quorum(state, precommits.count(record.block_hash)):
                decided = state.evolve(decision=Decision(round_number, record.block_hash))
                return decided, [decide_action(decided)]
    return None


def decide_action(state: ConsensusState) -> DecideBlock:
    """The `DecideBlock` of a decided height, with every precommit for the block known
    in the deciding round (more than 2/3), sorted by validator (R24)."""
    assert state.decision is not None
    round_number, block_hash = state.decision.round, state.decision.block_hash
    record = state.proposals[round_number][block_hash]
    signatures = state.vote_set(round_number, PRECOMMIT).commit_signatures(block_hash)
    commit = Commit(block_hash, state.height, round_number, signatures)
    return DecideBlock(state.height, round_number, block_hash, record.block, commit)


def upon_round_skip(state: ConsensusState) -> Result | None:
    """Line 55: f+1 ⟨*, h_p, round, *⟩ with round > round_p: StartRound(round), to the
    highest such round. Votes and proposals both count; each validator once."""
    target = None
    for round_number, senders in state.round_senders.items():
        if round_number > state.round and more_than_one_third(len(senders), len(state.validators)):
            if target is None or round_number > target:
                target = round_number
    if target is None:
        return None
    return start_round(state, target)


def upon_proposal(state: ConsensusState) -> Result | None:
    """Line 22: ⟨PROPOSAL, h_p, round_p, v, −1⟩ while step_p = propose: prevote id(v)
    if valid(v) and (lockedRound_p = −1 or lockedValue_p = v), else nil. A fresh block
    whose time is too far ahead of this node's clock also gets nil (R28)."""
    if state.step is not Step.PROPOSE:
        return None
    for record in _current_proposals(state):
        if record.pol_round == NO_POL_ROUND:
            acceptable = (
                record.valid
                and record.timely
                and (state.locked_round == -1 or state.locked_value == record.block_hash)
            )
            block_hash = record.block_hash if acceptable else None
            return _vote_and_step(state, PREVOTE, block_hash, Step.PREVOTE)
    return None


def upon_proposal_with_lock_proof(state: ConsensusState) -> Result | None:
    """Line 28: ⟨PROPOSAL, h_p, round_p, v, vr⟩ and 2f+1 ⟨PREVOTE, h_p, vr, id(v)⟩ while
    step_p = propose and 0 ≤ vr < round_p: prevote id(v) if valid(v) and
    (lockedRound_p ≤ vr or lockedValue_p = v), else nil."""
    if state.step is not Step.PROPOSE:
        return None
    for record in _current_proposals(state):
        pol_round = record.pol_round
        if not 0 <= pol_round < state.round:
            continue
        if not quorum(state, state.vote_set(pol_round, PREVOTE).count(record.block_hash)):
            continue
        acceptable = record.valid and (
            state.locked_round <= pol_round or state.locked_value == record.block_hash
        )
        block_hash = record.block_hash if acceptable else None
        return _vote_and_step(state, PREVOTE, block_hash, Step.PREVOTE)
    return None


def upon_polka_for_value(state: ConsensusState) -> Result | None:
    """Line 36: ⟨PROPOSAL, h_p, round_p, v, *⟩ and 2f+1 ⟨PREVOTE, h_p, round_p, id(v)⟩
    while valid(v) and step_p ≥ prevote, for the first time: in step prevote lock v and
    precommit id(v); in any case validValue_p ← v, validRound_p ← round_p."""
    if state.step is Step.PROPOSE:
        return None
    prevotes = state.vote_set(state.round, PREVOTE)
    if not quorum(state, prevotes.total()):
        return None
    for record in _current_proposals(state):
        if not (record.valid and quorum(state, prevotes.count(record.block_hash))):
            continue
        marked = _first_time(state, "polka")
        if marked is None:
            return None
        state = marked
        actions: list[Action] = []
        if state.step is Step.PREVOTE:
            state = state.evolve(locked_value=record.block_hash, locked_round=state.round)
            state, actions = _vote_and_step(state, PRECOMMIT, record.block_hash, Step.PRECOMMIT)
        state = state.evolve(
            valid_value=record.block_hash, valid_block=record.block, valid_round=state.round
        )
        return state, actions
    return None


def upon_nil_polka(state: ConsensusState) -> Result | None:
    """Line 44: 2f+1 ⟨PREVOTE, h_p, round_p, nil⟩ while step_p = prevote: precommit nil."""
    if state.step is not Step.PREVOTE:
        return None
    if not quorum(state, state.vote_set(state.round, PREVOTE).count(None)):
        return None
    return _vote_and_step(state, PRECOMMIT, None, Step.PRECOMMIT)


def upon_any_prevotes(state: ConsensusState) -> Result | None:
    """Line 34: 2f+1 ⟨PREVOTE, h_p, round_p, *⟩ while step_p = prevote, for the first
    time: schedule OnTimeoutPrevote(h_p, round_p) after timeoutPrevote(round_p)."""
    if state.step is not Step.PREVOTE:
        return None
    if not quorum(state, state.vote_set(state.round, PREVOTE).total()):
        return None
    marked = _first_time(state, "prevote_timeout")
    if marked is None:
        return None
    return marked, schedule_timeout(marked, Step.PREVOTE)


def upon_any_precommits(state: ConsensusState) -> Result | None:
    """Line 47: 2f+1 ⟨PRECOMMIT, h_p, round_p, *⟩ for the first time: schedule
    OnTimeoutPrecommit(h_p, round_p) after timeoutPrecommit(round_p)."""
    if not quorum(state, state.vote_set(state.round, PRECOMMIT).total()):
        return None
    marked = _first_time(state, "precommit_timeout")
    if marked is None:
        return None
    return marked, schedule_timeout(marked, Step.PRECOMMIT)


RULES: tuple[Callable[[ConsensusState], Result | None], ...] = (
    upon_decision,
    upon_round_skip,
    upon_proposal,
    upon_proposal_with_lock_proof,
    upon_polka_for_value,
    upon_nil_polka,
    upon_any_prevotes,
    upon_any_precommits,
)
"""The upon rules, tried in this order after every event until none fires."""


def apply_rules(state: ConsensusState) -> Result:
    """Fire enabled rules, first enabled first, until none is (or the height is decided)."""
    actions: list[Action] = []
    while state.started and state.decision is None:
        for rule in RULES:
            result = rule(state)
            if result is not None:
                state, new_actions = result
                actions.extend(new_actions)
                break
        else:
            break
    return state, actions


# --------------------------------------------------------------------------- timeouts


def on_timeout(state: ConsensusState, event: TimeoutFired) -> Result:
    """Lines 57–67: a timeout acts only at its own height and round, and (propose,
    prevote) only if the node is still in the step that scheduled it."""
    if (
        event.height != state.height
        or event.round != state.round
        or not state.started
        or state.decision is not None
    ):
        return state, []
    if event.step is Step.PROPOSE:
        if state.step is Step.PROPOSE:  # line 57: prevote nil
            return _vote_and_step(state, PREVOTE, None, Step.PREVOTE)
        return state, []
    if event.step is Step.PREVOTE:
        if state.step is Step.PREVOTE:  # line 61: precommit nil
            return _vote_and_step(state, PRECOMMIT, None, Step.PRECOMMIT)
        return state, []
    return start_round(state, state.round + 1)  # line 65: next round

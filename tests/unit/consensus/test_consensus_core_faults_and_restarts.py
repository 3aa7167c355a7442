"""The pure Tendermint core under faults (PROTOCOL R27, R29): each validator counted
once, double signs reported as evidence, no conflicting vote of its own, a single
validator, followers, restarts, and the invariants under any event sequence.

The setting (one validator of four) and the line numbers: consensus_core_fixtures.py.
"""

from __future__ import annotations

import copy

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consensus.actions import (
    BuildProposal,
    CastVote,
    DecideBlock,
    EvidenceFound,
    ScheduleTimeout,
)
from consensus.commit import verify_commit
from consensus.events import (
    Event,
    NodeRestarted,
    ProposalBuilt,
    StartHeight,
    TimeoutFired,
    VoteReceived,
    WorkAvailable,
)
from consensus.rules import ConflictingVoteError, cast_vote
from consensus.tendermint import initial_state, step
from consensus.timeouts import Step
from consensus.vote import SignedVote, Vote
from tests.unit.consensus.consensus_core_fixtures import (
    BLOCK_A,
    CHAIN_ID,
    HASH_A,
    HASH_B,
    HEIGHT,
    KEYS,
    PRECOMMIT,
    PREVOTE,
    cast,
    fresh,
    not_proposer,
    of_type,
    others,
    proposal,
    proposer_index,
    run,
    started,
    vote,
    votes,
)

# --------------------------------------------------------------------------- counting and evidence (R27)


def test_each_validator_counts_once() -> None:
    me = not_proposer(0)
    a = others(me)[0]
    state, _ = step(started(me), proposal(0))
    state, _ = run(state, *[vote(a, 0, PREVOTE, HASH_A)] * 5)
    assert state.vote_set(0, PREVOTE).count(HASH_A) == 1
    assert state.vote_set(0, PREVOTE).total() == 1


def test_a_double_sign_is_reported_once_with_both_signatures() -> None:
    me = not_proposer(0)
    a = others(me)[0]
    first, second = vote(a, 0, PREVOTE, HASH_A), vote(a, 0, PREVOTE, None)
    state, actions = run(started(me), first, second, vote(a, 0, PREVOTE, HASH_B))
    (evidence,) = of_type(actions, EvidenceFound)
    assert evidence.vote_a == first.signed() and evidence.vote_b == second.signed()
    assert evidence.vote_a.conflicts_with(evidence.vote_b)
    assert evidence.vote_a.verify() and evidence.vote_b.verify()
    prevotes = state.vote_set(0, PREVOTE)
    assert prevotes.total() == 1  # the validator counts once among "any" votes
    assert prevotes.count(HASH_A) == prevotes.count(None) == prevotes.count(HASH_B) == 1


def test_an_equivocator_cannot_stop_a_polka_that_correct_nodes_see() -> None:
    """Whichever of a double signer's votes arrives first, its vote for v still counts
    toward v's tally (liveness under equivocation; safety by quorum intersection)."""
    me = not_proposer(0)
    a, _, byzantine = others(me)
    state, _ = run(
        started(me),
        proposal(0),
        vote(byzantine, 0, PREVOTE, None),
        vote(a, 0, PREVOTE, HASH_A),
        vote(me, 0, PREVOTE, HASH_A),
    )
    state, actions = step(state, vote(byzantine, 0, PREVOTE, HASH_A))
    assert cast(actions) == [(0, PRECOMMIT, HASH_A)]
    assert len(of_type(actions, EvidenceFound)) == 1


def test_the_core_refuses_to_ask_for_a_conflicting_vote() -> None:
    """R27: the last line of defence, below every rule."""
    state = started(not_proposer(0))
    state, actions = cast_vote(state, PREVOTE, HASH_A)
    assert actions == [CastVote(HEIGHT, 0, PREVOTE, HASH_A)]
    assert cast_vote(state, PREVOTE, HASH_A) == (state, [])
    with pytest.raises(ConflictingVoteError):
        cast_vote(state, PREVOTE, None)


# --------------------------------------------------------------------------- n = 1, followers, restarts


def test_a_single_validator_decides_at_once() -> None:
    """n = 1 (a dev chain): build, propose, prevote, precommit, decide, no timeout fired."""
    key = KEYS[0]
    state, _ = step(initial_state(CHAIN_ID), StartHeight(1, (key.address,), key.address))
    state, actions = step(state, WorkAvailable(1))
    assert actions[0] == BuildProposal(1, 0)
    pending: list[Event] = [ProposalBuilt(1, 0, HASH_A, BLOCK_A)]
    decisions = []
    while pending:
        state, actions = step(state, pending.pop(0))
        for action in actions:
            if isinstance(action, CastVote):
                body = Vote(CHAIN_ID, 1, action.round, action.type, action.block_hash)
                pending.append(VoteReceived(key.address, body, body.sign(key)))
            decisions.extend(of_type([action], DecideBlock))
    (decided,) = decisions
    assert (decided.height, decided.round, decided.block_hash) == (1, 0, HASH_A)
    verify_commit(decided.commit, CHAIN_ID, HASH_A, 1, [key.address])


def test_a_follower_never_acts_but_decides() -> None:
    state = fresh(None)
    assert not state.is_validator
    state, actions = run(
        state,
        WorkAvailable(HEIGHT),
        proposal(0),
        *votes(range(4), 0, PREVOTE, HASH_A),
        *votes(range(3), 0, PRECOMMIT, HASH_A),
    )
    assert [type(action) for action in actions] == [DecideBlock]


def test_a_restart_rearms_the_timers_of_the_current_step() -> None:
    me = proposer_index(0)
    state = started(me)
    _, actions = step(state, NodeRestarted())
    assert actions == (BuildProposal(HEIGHT, 0), ScheduleTimeout(HEIGHT, 0, Step.PROPOSE, 3000))
    state, _ = run(
        state, ProposalBuilt(HEIGHT, 0, HASH_A, BLOCK_A), *votes(others(me), 0, PREVOTE, None)
    )
    assert state.step is Step.PRECOMMIT
    state, _ = run(state, *votes(others(me), 0, PRECOMMIT, None))
    _, actions = step(state, NodeRestarted())
    assert actions == (ScheduleTimeout(HEIGHT, 0, Step.PRECOMMIT, 1000),)


def test_a_restart_after_the_decision_repeats_it() -> None:
    """The driver may have crashed before storing the block: it gets the decision again."""
    me = not_proposer(0)
    state, actions = run(started(me), proposal(0), *votes(others(me), 0, PRECOMMIT, HASH_A))
    (decided,) = of_type(actions, DecideBlock)
    assert step(state, NodeRestarted())[1] == (decided,)


# --------------------------------------------------------------------------- any event sequence


def _event_pool() -> list[Event]:
    pool: list[Event] = [WorkAvailable(HEIGHT), NodeRestarted()]
    values = (HASH_A, HASH_B, None)
    for round_number in range(4):
        for index in range(4):
            for vote_type in (PREVOTE, PRECOMMIT):
                for value in values:
                    pool.append(vote(index, round_number, vote_type, value))
        for value in (HASH_A, HASH_B):
            for pol_round in range(-1, round_number):
                for valid in (True, False):
                    pool.append(proposal(round_number, value, pol_round, valid))
        for step_name in Step:
            pool.append(TimeoutFired(HEIGHT, round_number, step_name))
        pool.append(ProposalBuilt(HEIGHT, round_number, HASH_A, BLOCK_A))
    return pool


EVENT_POOL = _event_pool()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(me=st.integers(0, 3), picks=st.lists(st.integers(0, len(EVENT_POOL) - 1), max_size=60))
def test_any_event_sequence_keeps_the_invariants(me: int, picks: list[int]) -> None:
    """Whatever arrives, in whatever order: never two different votes for one (round,
    type) (R27), step never mutates its input, locks and valid values stay ordered."""
    state = fresh(me)
    requested: dict[tuple[int, str], bytes | None] = {}
    decisions = 0
    for pick in picks:
        before = copy.deepcopy(state)
        new_state, actions = step(state, EVENT_POOL[pick])
        assert state == before, "step mutated its input"
        state = new_state
        for action in actions:
            if isinstance(action, CastVote):
                key = (action.round, action.type)
                assert requested.setdefault(key, action.block_hash) == action.block_hash, "R27"
            decisions += isinstance(action, DecideBlock)
        assert state.locked_round <= state.valid_round <= state.round
        assert (state.locked_round == -1) == (state.locked_value is None)
    assert decisions <= 1


def test_signed_votes_conflict_only_at_one_height_round_and_type() -> None:
    base = vote(0, 1, PREVOTE, HASH_A).signed()
    assert base.conflicts_with(vote(0, 1, PREVOTE, None).signed())
    assert not base.conflicts_with(base)
    assert not base.conflicts_with(vote(0, 2, PREVOTE, None).signed())
    assert not base.conflicts_with(vote(0, 1, PRECOMMIT, None).signed())
    assert not base.conflicts_with(vote(1, 1, PREVOTE, None).signed())
    assert not base.conflicts_with(
        SignedVote(base.validator, Vote(CHAIN_ID, HEIGHT + 1, 1, PREVOTE, None), b"")
    )

"""The pure Tendermint core until it prevotes (PROTOCOL R25, R29): idle until work
arrives, prevoting a fresh proposal (line 22) or a reproposal with a proof of lock
(line 28), and timeoutPrevote (line 34).

The setting (one validator of four) and the line numbers: consensus_core_fixtures.py.
"""

from __future__ import annotations

import pytest

from consensus.actions import (
    BroadcastProposal,
    BuildProposal,
    CastVote,
    DecideBlock,
    ScheduleTimeout,
)
from consensus.events import (
    NodeRestarted,
    ProposalBuilt,
    ProposalReceived,
    StartHeight,
    TimeoutFired,
    VoteReceived,
    WorkAvailable,
)
from consensus.proposal import Proposal
from consensus.tendermint import is_future_height, step
from consensus.timeouts import Step
from consensus.vote import Vote
from marketplace_tx.rules.validators import proposer_for
from tests.unit.consensus.consensus_core_fixtures import (
    BLOCK_A,
    CHAIN_ID,
    HASH_A,
    HASH_B,
    HEIGHT,
    KEYS,
    OUTSIDER,
    PRECOMMIT,
    PREVOTE,
    VALIDATORS,
    at_round,
    cast,
    fresh,
    lock_on,
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

# --------------------------------------------------------------------------- R29: idle until needed


def test_a_new_height_does_nothing_until_work_arrives() -> None:
    """R29: no proposal, no timer, no vote at a new height until work is available."""
    for index in range(4):
        state = fresh(index)
        assert not state.started
        for event in (
            TimeoutFired(HEIGHT, 0, Step.PROPOSE),
            WorkAvailable(HEIGHT + 1),
            NodeRestarted(),
        ):
            state, actions = step(state, event)
            assert actions == () and not state.started


def test_work_starts_round_zero() -> None:
    """Line 10 (delayed by R29) and StartRound (lines 11–21)."""
    me = not_proposer(0)
    state, actions = step(fresh(me), WorkAvailable(HEIGHT))
    assert state.started and state.round == 0 and state.step is Step.PROPOSE
    assert actions == (ScheduleTimeout(HEIGHT, 0, Step.PROPOSE, 3000),)
    again, actions = step(state, WorkAvailable(HEIGHT))
    assert actions == () and again == state


def test_the_proposer_builds_then_proposes_and_prevotes() -> None:
    """Lines 16–19: no valid value, so getValue(): the driver builds the block."""
    me = proposer_index(0)
    state, actions = step(fresh(me), WorkAvailable(HEIGHT))
    assert actions == (BuildProposal(HEIGHT, 0), ScheduleTimeout(HEIGHT, 0, Step.PROPOSE, 3000))
    state, actions = step(state, ProposalBuilt(HEIGHT, 0, HASH_A, BLOCK_A))
    assert actions == (
        BroadcastProposal(HEIGHT, 0, -1, HASH_A, BLOCK_A),
        CastVote(HEIGHT, 0, PREVOTE, HASH_A),
    )
    assert state.step is Step.PREVOTE


def test_a_stale_built_block_is_not_proposed() -> None:
    me = proposer_index(0)
    state = at_round(started(me), 1)
    state, actions = step(state, ProposalBuilt(HEIGHT, 0, HASH_A, BLOCK_A))
    assert actions == ()
    assert step(started(me), ProposalBuilt(HEIGHT + 1, 0, HASH_A, BLOCK_A))[1] == ()


@pytest.mark.parametrize("kind", ["prevote", "precommit", "proposal"])
def test_a_message_from_a_validator_wakes_an_idle_node(kind: str) -> None:
    """R29: a proposal or vote of this height from a validator starts round 0."""
    me = not_proposer(0)
    sender = others(me)[0]
    event = proposal(0) if kind == "proposal" else vote(sender, 0, kind, HASH_A)
    state, actions = step(fresh(me), event)
    assert state.started and state.round == 0
    assert ScheduleTimeout(HEIGHT, 0, Step.PROPOSE, 3000) in actions
    if kind == "proposal":
        assert cast(actions) == [(0, PREVOTE, HASH_A)]


def test_messages_that_do_not_count_leave_an_idle_node_idle() -> None:
    """Other heights, other chains, non-validators, wrong proposers: ignored."""
    me = not_proposer(0)
    outsider_vote = Vote(CHAIN_ID, HEIGHT, 0, PREVOTE, HASH_A)
    other_chain = Vote("other-chain", HEIGHT, 0, PREVOTE, HASH_A)
    wrong_proposer = ProposalReceived(
        Proposal(CHAIN_ID, HEIGHT, 0, -1, HASH_A),
        VALIDATORS[(proposer_index(0) + 1) % 4],
        BLOCK_A,
        True,
    )
    bad_pol = ProposalReceived(
        Proposal(CHAIN_ID, HEIGHT, 0, 0, HASH_A), proposer_for(VALIDATORS, HEIGHT, 0), BLOCK_A, True
    )
    ignored = [
        vote(0, 0, PREVOTE, HASH_A, height=HEIGHT + 1),
        vote(0, 0, PREVOTE, HASH_A, height=HEIGHT - 1),
        VoteReceived(OUTSIDER.address, outsider_vote, outsider_vote.sign(OUTSIDER)),
        VoteReceived(KEYS[0].address, other_chain, other_chain.sign(KEYS[0])),
        wrong_proposer,
        bad_pol,
    ]
    state = fresh(me)
    for event in ignored:
        after, actions = step(state, event)
        assert actions == () and after == state


def test_future_heights_are_for_the_driver_to_buffer() -> None:
    state = fresh(0)
    assert is_future_height(state, HEIGHT + 1)
    assert not is_future_height(state, HEIGHT)


def test_start_height_never_goes_back() -> None:
    state = started(0)
    for height in (HEIGHT, HEIGHT - 1):
        after, actions = step(state, StartHeight(height, VALIDATORS, KEYS[0].address))
        assert after == state and actions == ()


# --------------------------------------------------------------------------- line 22: prevote a fresh proposal


def test_prevote_a_valid_proposal() -> None:
    me = not_proposer(0)
    state, actions = step(started(me), proposal(0))
    assert cast(actions) == [(0, PREVOTE, HASH_A)]
    assert state.step is Step.PREVOTE


def test_prevote_nil_for_an_invalid_proposal() -> None:
    me = not_proposer(0)
    state, actions = step(started(me), proposal(0, valid=False))
    assert cast(actions) == [(0, PREVOTE, None)]
    assert state.step is Step.PREVOTE


def test_a_fresh_block_from_the_future_gets_nil_but_stays_valid() -> None:
    """R28: too far ahead of this node's clock, no prevote for a fresh proposal; the
    block may still be locked on, re-proposed and decided."""
    me = not_proposer(0, 1)
    state, actions = step(started(me), proposal(0, timely=False))
    assert cast(actions) == [(0, PREVOTE, None)]
    state, actions = run(state, *votes(others(me), 0, PREVOTE, HASH_A))
    assert cast(actions) == [(0, PRECOMMIT, HASH_A)]
    _, actions = run(at_round(state, 1), proposal(1, HASH_A, pol_round=0, timely=False))
    assert cast(actions) == [(1, PREVOTE, HASH_A)]
    _, actions = run(state, *votes(others(me), 0, PRECOMMIT, HASH_A))
    assert len(of_type(actions, DecideBlock)) == 1


def test_a_locked_node_prevotes_nil_for_another_value_and_its_lock_for_the_same() -> None:
    """Line 23: lockedRound = −1 or lockedValue = v."""
    me = not_proposer(0, 1)
    state = lock_on(me, HASH_A, 0)
    _, actions = step(state, proposal(1, HASH_B))
    assert cast(actions) == [(1, PREVOTE, None)]
    _, actions = step(state, proposal(1, HASH_A))
    assert cast(actions) == [(1, PREVOTE, HASH_A)]


def test_only_one_prevote_per_round() -> None:
    me = not_proposer(0)
    state, _ = step(started(me), proposal(0))
    state, actions = run(state, TimeoutFired(HEIGHT, 0, Step.PROPOSE), proposal(0, HASH_B))
    assert cast(actions) == []


# --------------------------------------------------------------------------- line 28: proposal with a proof of lock


def test_prevote_a_reproposal_backed_by_a_polka_at_pol_round() -> None:
    """Locked on A in round 0, a proposal of B with pol_round 1 and a polka for B in
    round 1 (later than the lock, lockedRound ≤ vr): prevote B — how a lock is released."""
    me = not_proposer(0, 2)
    state = lock_on(me, HASH_A, 0)  # now in round 1
    state, _ = run(state, *votes([i for i in range(4) if i != me], 1, PREVOTE, HASH_B))
    state = at_round(state, 2)
    state, actions = step(state, proposal(2, HASH_B, pol_round=1))
    assert cast(actions) == [(2, PREVOTE, HASH_B)]


def test_prevote_nil_for_a_reproposal_older_than_the_lock() -> None:
    """Locked on A in round 1, a proposal of B with a polka of round 0 < lockedRound: nil."""
    me = not_proposer(1, 2)
    state = at_round(started(me), 0)
    state, _ = run(state, *votes([i for i in range(4) if i != me], 0, PREVOTE, HASH_B))
    state = at_round(state, 1)
    state, _ = run(state, proposal(1, HASH_A), *votes(others(me)[:2] + [me], 1, PREVOTE, HASH_A))
    assert (state.locked_value, state.locked_round) == (HASH_A, 1)
    state = at_round(state, 2)
    state, actions = step(state, proposal(2, HASH_B, pol_round=0))
    assert cast(actions) == [(2, PREVOTE, None)]


def test_an_invalid_reproposal_gets_nil() -> None:
    me = not_proposer(1)
    state, _ = run(started(me), *votes(others(me), 0, PREVOTE, HASH_B))
    state = at_round(state, 1)
    _, actions = step(state, proposal(1, HASH_B, pol_round=0, valid=False))
    assert cast(actions) == [(1, PREVOTE, None)]


def test_a_reproposal_waits_for_its_polka() -> None:
    """Without 2f+1 prevotes at vr the rule does not fire; the polka completes it later."""
    me = not_proposer(1)
    state = at_round(started(me), 1)
    state, actions = step(state, proposal(1, HASH_B, pol_round=0))
    assert cast(actions) == []
    state, actions = run(state, *votes(others(me)[:2], 0, PREVOTE, HASH_B))
    assert cast(actions) == []
    state, actions = step(state, vote(others(me)[2], 0, PREVOTE, HASH_B))
    assert cast(actions) == [(1, PREVOTE, HASH_B)]


# --------------------------------------------------------------------------- line 34: timeoutPrevote


def test_any_prevote_quorum_schedules_timeout_prevote_once() -> None:
    me = not_proposer(0)
    state, _ = step(started(me), TimeoutFired(HEIGHT, 0, Step.PROPOSE))
    a, b, c = others(me)
    state, actions = run(state, vote(a, 0, PREVOTE, HASH_A), vote(b, 0, PREVOTE, None))
    assert of_type(actions, ScheduleTimeout) == []
    state, actions = step(state, vote(c, 0, PREVOTE, HASH_B))
    assert of_type(actions, ScheduleTimeout) == [ScheduleTimeout(HEIGHT, 0, Step.PREVOTE, 1000)]
    state, actions = step(state, vote(me, 0, PREVOTE, None))
    assert of_type(actions, ScheduleTimeout) == []


def test_no_prevote_timeout_before_the_node_prevoted() -> None:
    """Line 34 holds only in step prevote."""
    me = not_proposer(0)
    a, b, c = others(me)
    _, actions = run(
        started(me),
        vote(a, 0, PREVOTE, HASH_A),
        vote(b, 0, PREVOTE, None),
        vote(c, 0, PREVOTE, HASH_B),
    )
    assert of_type(actions, ScheduleTimeout) == []

"""The pure Tendermint core from a polka to a decision (PROTOCOL R25, R26): lock and
precommit (line 36), nil polka (44), timeoutPrecommit (47), decide (49), round skip
(55), the timeouts (57–67) and re-proposing the valid value (15–16).

The setting (one validator of four) and the line numbers: consensus_core_fixtures.py.
"""

from __future__ import annotations

from consensus.actions import (
    BroadcastProposal,
    BuildProposal,
    DecideBlock,
    ScheduleTimeout,
)
from consensus.commit import verify_commit
from consensus.events import (
    TimeoutFired,
    WorkAvailable,
)
from consensus.tendermint import step
from consensus.timeouts import Step, TimeoutConfig
from tests.unit.consensus.consensus_core_fixtures import (
    BLOCK_A,
    CHAIN_ID,
    HASH_A,
    HASH_B,
    HEIGHT,
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

# --------------------------------------------------------------------------- line 36: polka → lock, precommit


def test_a_polka_locks_and_precommits() -> None:
    me = not_proposer(0)
    state, _ = step(started(me), proposal(0))
    state, actions = run(state, *votes(others(me)[:2], 0, PREVOTE, HASH_A))
    assert cast(actions) == []
    state, actions = step(state, vote(me, 0, PREVOTE, HASH_A))
    assert cast(actions) == [(0, PRECOMMIT, HASH_A)]
    assert state.step is Step.PRECOMMIT
    assert (state.locked_value, state.locked_round) == (HASH_A, 0)
    assert (state.valid_value, state.valid_block, state.valid_round) == (HASH_A, BLOCK_A, 0)


def test_a_polka_before_the_proposal_counts_once_it_arrives() -> None:
    me = not_proposer(0)
    state, _ = run(started(me), *votes(others(me), 0, PREVOTE, HASH_A))
    state, actions = step(state, proposal(0))
    assert cast(actions) == [(0, PREVOTE, HASH_A), (0, PRECOMMIT, HASH_A)]


def test_a_polka_after_precommitting_only_updates_the_valid_value() -> None:
    """Line 36 in step precommit: validValue ← v, no lock, no second precommit."""
    me = not_proposer(0)
    state, _ = run(
        started(me),
        TimeoutFired(HEIGHT, 0, Step.PROPOSE),
        *votes(others(me)[:2], 0, PREVOTE, HASH_B),
    )
    state, actions = step(state, TimeoutFired(HEIGHT, 0, Step.PREVOTE))
    assert cast(actions) == [(0, PRECOMMIT, None)]
    state, actions = run(state, proposal(0, HASH_B), vote(others(me)[2], 0, PREVOTE, HASH_B))
    assert cast(actions) == []
    assert (state.locked_value, state.locked_round) == (None, -1)
    assert (state.valid_value, state.valid_round) == (HASH_B, 0)


def test_no_lock_on_an_invalid_value() -> None:
    me = not_proposer(0)
    state, _ = run(started(me), proposal(0, valid=False), *votes(others(me), 0, PREVOTE, HASH_A))
    assert state.locked_value is None and state.valid_value is None


# --------------------------------------------------------------------------- line 44: nil polka


def test_a_nil_polka_precommits_nil() -> None:
    me = not_proposer(0)
    state, _ = step(started(me), proposal(0))
    state, actions = run(state, *votes(others(me), 0, PREVOTE, None))
    assert cast(actions) == [(0, PRECOMMIT, None)]
    assert state.step is Step.PRECOMMIT and state.locked_value is None


# --------------------------------------------------------------------------- line 47: timeoutPrecommit


def test_any_precommit_quorum_schedules_timeout_precommit_once_in_any_step() -> None:
    me = not_proposer(0)
    a, b, c = others(me)
    state, actions = run(started(me), vote(a, 0, PRECOMMIT, HASH_A), vote(b, 0, PRECOMMIT, None))
    assert of_type(actions, ScheduleTimeout) == []
    state, actions = step(state, vote(c, 0, PRECOMMIT, HASH_B))
    assert of_type(actions, ScheduleTimeout) == [ScheduleTimeout(HEIGHT, 0, Step.PRECOMMIT, 1000)]
    assert state.step is Step.PROPOSE
    _, actions = step(state, vote(me, 0, PRECOMMIT, None))
    assert of_type(actions, ScheduleTimeout) == []


# --------------------------------------------------------------------------- line 49: decide


def test_a_precommit_quorum_with_the_proposal_decides() -> None:
    me = not_proposer(0)
    state, _ = step(started(me), proposal(0))
    state, actions = run(state, *votes(others(me), 0, PREVOTE, HASH_A))
    assert cast(actions) == [(0, PRECOMMIT, HASH_A)]
    state, actions = run(state, *votes(others(me)[:2], 0, PRECOMMIT, HASH_A))
    assert of_type(actions, DecideBlock) == []
    state, actions = step(state, vote(me, 0, PRECOMMIT, HASH_A))
    (decided,) = of_type(actions, DecideBlock)
    assert (decided.height, decided.round, decided.block_hash, decided.block) == (
        HEIGHT,
        0,
        HASH_A,
        BLOCK_A,
    )
    signers = [entry.validator for entry in decided.commit.signatures]
    assert signers == sorted(signers) and len(signers) == 3
    verify_commit(decided.commit, CHAIN_ID, HASH_A, HEIGHT, VALIDATORS)
    assert state.decision is not None and state.decision.block_hash == HASH_A


def test_decide_in_an_earlier_round_from_any_step() -> None:
    """Line 49 holds for any round r, not only round_p."""
    me = not_proposer(0, 1, 2)
    state = at_round(started(me), 2)
    state, actions = run(state, proposal(0, HASH_B), *votes(others(me), 0, PRECOMMIT, HASH_B))
    (decided,) = of_type(actions, DecideBlock)
    assert (decided.round, decided.block_hash) == (0, HASH_B)


def test_precommits_without_the_block_wait_for_it() -> None:
    me = not_proposer(0)
    state, actions = run(started(me), *votes(others(me), 0, PRECOMMIT, HASH_A))
    assert of_type(actions, DecideBlock) == []
    state, actions = step(state, proposal(0))
    assert len(of_type(actions, DecideBlock)) == 1


def test_an_invalid_block_is_never_decided() -> None:
    me = not_proposer(0)
    _, actions = run(
        started(me), proposal(0, valid=False), *votes(others(me), 0, PRECOMMIT, HASH_A)
    )
    assert of_type(actions, DecideBlock) == []


def test_after_the_decision_the_height_is_quiet() -> None:
    me = not_proposer(0)
    state, _ = run(started(me), proposal(0), *votes(others(me), 0, PRECOMMIT, HASH_A))
    assert state.decision is not None
    for event in (
        TimeoutFired(HEIGHT, 0, Step.PRECOMMIT),
        proposal(1),
        vote(others(me)[0], 3, PREVOTE, None),
        WorkAvailable(HEIGHT),
    ):
        state, actions = step(state, event)
        assert actions == ()


# --------------------------------------------------------------------------- line 55: round skip


def test_f_plus_one_messages_of_a_higher_round_skip_to_it() -> None:
    me = not_proposer(0, 3)
    a, b, _ = others(me)
    state, actions = step(started(me), vote(a, 3, PREVOTE, None))
    assert state.round == 0 and actions == ()
    state, actions = step(state, vote(b, 3, PRECOMMIT, None))
    assert state.round == 3 and state.step is Step.PROPOSE
    assert ScheduleTimeout(HEIGHT, 3, Step.PROPOSE, 3000 + 3 * 500) in actions


def test_one_validator_twice_is_not_f_plus_one() -> None:
    me = not_proposer(0)
    a = others(me)[0]
    state, _ = run(started(me), vote(a, 2, PREVOTE, None), vote(a, 2, PRECOMMIT, None))
    assert state.round == 0


def test_a_proposal_counts_toward_the_round_skip() -> None:
    me = not_proposer(0, 2)
    helper = next(i for i in others(me) if i != proposer_index(2))
    state, _ = run(started(me), vote(helper, 2, PREVOTE, None))
    state, actions = step(state, proposal(2))
    assert state.round == 2
    assert (2, PREVOTE, HASH_A) in cast(actions)


def test_an_idle_node_skips_straight_to_the_round_of_its_peers() -> None:
    me = not_proposer(0, 4)
    a, b, _ = others(me)
    state, _ = run(fresh(me), vote(a, 4, PREVOTE, None), vote(b, 4, PREVOTE, None))
    assert state.started and state.round == 4


# --------------------------------------------------------------------------- lines 57–67: timeouts


def test_timeout_propose_prevotes_nil_only_in_step_propose() -> None:
    me = not_proposer(0, 1)
    state, actions = step(started(me), TimeoutFired(HEIGHT, 0, Step.PROPOSE))
    assert cast(actions) == [(0, PREVOTE, None)] and state.step is Step.PREVOTE
    _, actions = step(state, TimeoutFired(HEIGHT, 0, Step.PROPOSE))
    assert actions == ()
    state = at_round(started(me), 1)
    _, actions = step(state, TimeoutFired(HEIGHT, 0, Step.PROPOSE))  # stale round
    assert actions == ()
    _, actions = step(state, TimeoutFired(HEIGHT - 1, 1, Step.PROPOSE))  # other height
    assert actions == ()


def test_timeout_prevote_precommits_nil_only_in_step_prevote() -> None:
    me = not_proposer(0)
    _, actions = step(started(me), TimeoutFired(HEIGHT, 0, Step.PREVOTE))
    assert actions == ()
    state, _ = step(started(me), proposal(0))
    state, actions = step(state, TimeoutFired(HEIGHT, 0, Step.PREVOTE))
    assert cast(actions) == [(0, PRECOMMIT, None)] and state.step is Step.PRECOMMIT
    _, actions = step(state, TimeoutFired(HEIGHT, 0, Step.PREVOTE))
    assert actions == ()


def test_timeout_precommit_starts_the_next_round_from_any_step() -> None:
    me = not_proposer(0, 1)
    state, actions = step(started(me), TimeoutFired(HEIGHT, 0, Step.PRECOMMIT))
    assert state.round == 1 and state.step is Step.PROPOSE
    assert actions == (ScheduleTimeout(HEIGHT, 1, Step.PROPOSE, 3500),)
    _, actions = step(state, TimeoutFired(HEIGHT, 0, Step.PRECOMMIT))
    assert actions == ()


def test_timeouts_grow_per_round() -> None:
    config = TimeoutConfig()
    assert [config.delay_ms(Step.PROPOSE, r) for r in range(3)] == [3000, 3500, 4000]
    assert [config.delay_ms(Step.PREVOTE, r) for r in range(3)] == [1000, 1500, 2000]
    assert [config.delay_ms(Step.PRECOMMIT, r) for r in range(3)] == [1000, 1500, 2000]
    custom = TimeoutConfig(propose_base_ms=10, propose_per_round_ms=1)
    assert custom.delay_ms(Step.PROPOSE, 5) == 15


# --------------------------------------------------------------------------- lines 15–16: re-propose the valid value


def test_the_proposer_reproposes_its_valid_value_with_its_round() -> None:
    me = proposer_index(1)
    assert proposer_index(0) != me
    state, _ = run(started(me), proposal(0), *votes(others(me), 0, PREVOTE, HASH_A))
    assert (state.valid_value, state.valid_round) == (HASH_A, 0)
    state, actions = step(state, TimeoutFired(HEIGHT, 0, Step.PRECOMMIT))
    assert of_type(actions, BuildProposal) == []
    assert of_type(actions, BroadcastProposal) == [BroadcastProposal(HEIGHT, 1, 0, HASH_A, BLOCK_A)]
    assert cast(actions) == [(1, PREVOTE, HASH_A)]  # line 28: its own polka of round 0


def test_a_newer_polka_moves_the_lock() -> None:
    """Locked on A in round 0; a polka for B in round 1 while in step prevote locks B."""
    me = not_proposer(0, 1)
    state = lock_on(me, HASH_A, 0)
    state, actions = run(
        state, proposal(1, HASH_B, pol_round=-1), *votes(others(me), 1, PREVOTE, HASH_B)
    )
    assert cast(actions) == [(1, PREVOTE, None), (1, PRECOMMIT, HASH_B)]
    assert (state.locked_value, state.locked_round) == (HASH_B, 1)

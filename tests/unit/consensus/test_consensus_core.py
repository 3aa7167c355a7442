"""The pure Tendermint core, rule by rule (PROTOCOL R25–R27, R29).

Line numbers are those of Algorithm 1 in Buchman, Kwon, Milosevic, "The latest gossip
on BFT consensus" (2018). The node under test is one validator of four (f = 1,
quorum 3, f + 1 = 2), picked per test with `not_proposer` or `proposer_index`.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consensus.actions import (
    Action,
    BroadcastProposal,
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
    ProposalReceived,
    StartHeight,
    TimeoutFired,
    VoteReceived,
    WorkAvailable,
)
from consensus.proposal import Proposal
from consensus.rules import ConflictingVoteError, cast_vote
from consensus.state import ConsensusState
from consensus.tendermint import initial_state, is_future_height, step
from consensus.timeouts import Step, TimeoutConfig
from consensus.vote import SignedVote, Vote
from marketplace_tx.primitives.crypto import KeyPair
from marketplace_tx.rules.validators import proposer_for

CHAIN_ID = "marketchain-test"
HEIGHT = 5
KEYS = sorted(
    (KeyPair.from_seed(hashlib.sha256(f"core-validator-{i}".encode()).digest()) for i in range(4)),
    key=lambda key: key.address,
)
VALIDATORS = tuple(key.address for key in KEYS)
OUTSIDER = KeyPair.from_seed(hashlib.sha256(b"not a validator").digest())
TIMEOUTS = TimeoutConfig()
BLOCK_A = b"block A"
BLOCK_B = b"block B"
HASH_A = hashlib.sha256(BLOCK_A).digest()
HASH_B = hashlib.sha256(BLOCK_B).digest()
PAYLOADS = {HASH_A: BLOCK_A, HASH_B: BLOCK_B}
PREVOTE = "prevote"
PRECOMMIT = "precommit"

_SIGNATURES: dict[tuple[int, Vote], bytes] = {}


def proposer_index(round_number: int, height: int = HEIGHT) -> int:
    return VALIDATORS.index(proposer_for(VALIDATORS, height, round_number))


def not_proposer(*rounds: int) -> int:
    """A validator that proposes in none of `rounds` (the node under test)."""
    return next(i for i in range(4) if all(proposer_index(r) != i for r in rounds))


def vote(
    index: int, round_number: int, vote_type: str, block_hash: bytes | None, height: int = HEIGHT
) -> VoteReceived:
    """A real, signed vote of validator `index`."""
    body = Vote(CHAIN_ID, height, round_number, vote_type, block_hash)
    signature = _SIGNATURES.get((index, body))
    if signature is None:
        signature = _SIGNATURES[(index, body)] = body.sign(KEYS[index])
    return VoteReceived(KEYS[index].address, body, signature)


def votes(
    indexes: Iterable[int], round_number: int, vote_type: str, block_hash: bytes | None
) -> list[VoteReceived]:
    return [vote(i, round_number, vote_type, block_hash) for i in indexes]


def proposal(
    round_number: int,
    block_hash: bytes = HASH_A,
    pol_round: int = -1,
    valid: bool = True,
    timely: bool = True,
) -> ProposalReceived:
    body = Proposal(CHAIN_ID, HEIGHT, round_number, pol_round, block_hash)
    proposer = proposer_for(VALIDATORS, HEIGHT, round_number)
    return ProposalReceived(body, proposer, PAYLOADS[block_hash], valid, timely)


def run(state: ConsensusState, *events: Event) -> tuple[ConsensusState, list[Action]]:
    """Feed events in order; all actions, in order."""
    actions: list[Action] = []
    for event in events:
        state, new = step(state, event)
        actions.extend(new)
    return state, actions


def fresh(index: int | None, validators: tuple[bytes, ...] = VALIDATORS) -> ConsensusState:
    own = None if index is None else KEYS[index].address
    state, actions = step(initial_state(CHAIN_ID, TIMEOUTS), StartHeight(HEIGHT, validators, own))
    assert actions == ()
    return state


def started(index: int) -> ConsensusState:
    state, _ = step(fresh(index), WorkAvailable(HEIGHT))
    return state


def others(me: int) -> list[int]:
    return [i for i in range(4) if i != me]


def of_type(actions: Iterable[Action], kind: type) -> list:
    return [action for action in actions if isinstance(action, kind)]


def cast(actions: Iterable[Action]) -> list[tuple[int, str, bytes | None]]:
    return [(a.round, a.type, a.block_hash) for a in of_type(actions, CastVote)]


def at_round(state: ConsensusState, round_number: int) -> ConsensusState:
    """Move `state` to `round_number` by precommit timeouts (line 65)."""
    while state.round < round_number:
        state, _ = step(state, TimeoutFired(HEIGHT, state.round, Step.PRECOMMIT))
    return state


def lock_on(me: int, block_hash: bytes, round_number: int) -> ConsensusState:
    """A node at `round_number` + 1, locked on `block_hash` in `round_number` (line 36)."""
    state = at_round(started(me), round_number)
    assert proposer_index(round_number) != me
    state, actions = run(
        state,
        proposal(round_number, block_hash),
        *votes(others(me)[:2] + [me], round_number, PREVOTE, block_hash),
    )
    assert (round_number, PRECOMMIT, block_hash) in cast(actions)
    assert (state.locked_value, state.locked_round) == (block_hash, round_number)
    return at_round(state, round_number + 1)


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

"""What a peer's consensus message must pass before the core sees it (node/inbound_checks.py),
the evidence pool (R27), the peer actions and the test-only fault plan, without a node."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from consensus.proposal import NO_POL_ROUND, Proposal
from consensus.tendermint import initial_state
from consensus.vote import Vote
from marketplace_tx.chain.params import Params
from node.evidence_pool import EvidencePool, evidence_id
from node.fault_plan import NO_FAULTS, FaultPlan
from node.inbound_checks import (
    MAX_ROUNDS_AHEAD,
    Timing,
    is_timely,
    proposal_timing,
    vote_timing,
)
from node.peer_actions import NetworkPeerActions

CHAIN = "inbound-test"
MEMBER = b"\x01" * 32
OUTSIDER = b"\x02" * 32


def _state(height: int = 5, round_number: int = 0) -> Any:
    return initial_state(CHAIN).evolve(
        height=height, round=round_number, validators=(MEMBER,), members=frozenset({MEMBER})
    )


def _proposal(height: int = 5, round_number: int = 0, chain_id: str = CHAIN, pol_round: int = NO_POL_ROUND) -> Proposal:
    return Proposal(chain_id, height, round_number, pol_round, b"\xaa" * 32)


def _vote(height: int = 5, round_number: int = 0, chain_id: str = CHAIN) -> Vote:
    return Vote(chain_id, height, round_number, "prevote", b"\xaa" * 32)


def test_a_proposal_is_current_future_or_ignored() -> None:
    state = _state()
    assert proposal_timing(state, CHAIN, _proposal()) is Timing.CURRENT
    assert proposal_timing(state, CHAIN, _proposal(height=6)) is Timing.FUTURE
    assert proposal_timing(state, CHAIN, _proposal(height=4)) is Timing.IGNORED
    assert proposal_timing(state, CHAIN, _proposal(chain_id="other")) is Timing.IGNORED
    assert proposal_timing(state, CHAIN, _proposal(round_number=MAX_ROUNDS_AHEAD)) is Timing.CURRENT
    assert proposal_timing(state, CHAIN, _proposal(round_number=MAX_ROUNDS_AHEAD + 1)) is Timing.IGNORED
    assert proposal_timing(state.evolve(validators=()), CHAIN, _proposal()) is Timing.IGNORED


def test_only_members_votes_of_this_height_reach_the_core() -> None:
    state = _state(round_number=3)
    assert vote_timing(state, CHAIN, MEMBER, _vote()) is Timing.CURRENT
    assert vote_timing(state, CHAIN, OUTSIDER, _vote()) is Timing.IGNORED
    assert vote_timing(state, CHAIN, OUTSIDER, _vote(height=9)) is Timing.FUTURE  # the set of 9 is not known yet
    assert vote_timing(state, CHAIN, MEMBER, _vote(height=4)) is Timing.IGNORED
    assert vote_timing(state, CHAIN, MEMBER, _vote(chain_id="other")) is Timing.IGNORED
    assert vote_timing(state, CHAIN, MEMBER, _vote(round_number=3 + MAX_ROUNDS_AHEAD + 1)) is Timing.IGNORED


def test_a_fresh_value_too_far_ahead_of_the_clock_is_not_timely_but_a_reproposal_is() -> None:
    params = Params()
    now = 1_000_000
    limit = now + params.max_clock_drift_ms
    assert is_timely(_proposal(), limit, now, params)
    assert not is_timely(_proposal(), limit + 1, now, params)
    assert is_timely(_proposal(pol_round=0), limit + 1, now, params)


def test_the_evidence_pool_keeps_an_item_once() -> None:
    pool = EvidencePool(SimpleNamespace(), CHAIN, Params(), lambda: 0)  # type: ignore[arg-type]
    item = {"validator": MEMBER, "vote_a": {"height": 3}, "vote_b": {"height": 3, "x": 1}}
    assert pool.add(item)
    assert not pool.add(dict(item))
    assert len(pool) == 1
    pool.remove_included([item])
    assert len(pool) == 0
    assert evidence_id(item) == evidence_id(dict(item))


def test_peer_actions_penalize_relay_and_sync_only_when_behind() -> None:
    calls: list[tuple[Any, ...]] = []
    peers = SimpleNamespace(
        report=lambda *arguments: calls.append(("report", *arguments)),
        broadcast=lambda kind, body, exclude=None: calls.append(("broadcast", kind, body, exclude)),
    )
    actions = NetworkPeerActions(peers, lambda: 10, lambda peer, height: calls.append(("sync", peer, height)))  # type: ignore[arg-type]
    actions.penalize(OUTSIDER, 20, "vote signature")
    actions.relay(OUTSIDER, "vote", {"v": 1})
    actions.maybe_sync(OUTSIDER, 10)
    actions.maybe_sync(OUTSIDER, 11)
    assert calls == [
        ("report", OUTSIDER, 20, "vote signature"),
        ("broadcast", "vote", {"v": 1}, OUTSIDER),
        ("sync", OUTSIDER, 11),
    ]


def test_the_default_fault_plan_has_no_fault_and_the_true_clock() -> None:
    assert NO_FAULTS == FaultPlan() == FaultPlan(clock_skew_ms=0, equivocate=False)
    skewed = FaultPlan(clock_skew_ms=5_000).clock()
    assert 4_000 < skewed() - NO_FAULTS.clock()() <= 5_000

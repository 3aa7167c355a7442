"""Shared by the tests of the pure Tendermint core: four validators' keys, two blocks,
vote and proposal builders, and states prepared at a round, step or lock.

The node under test is one validator of four (f = 1, quorum 3, f + 1 = 2), picked per
test with `not_proposer` or `proposer_index`; the tests' line numbers are those of
Algorithm 1 in Buchman, Kwon, Milosevic, "The latest gossip on BFT consensus" (2018).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from consensus.actions import (
    Action,
    CastVote,
)
from consensus.events import (
    Event,
    ProposalReceived,
    StartHeight,
    TimeoutFired,
    VoteReceived,
    WorkAvailable,
)
from consensus.proposal import Proposal
from consensus.state import ConsensusState
from consensus.tendermint import initial_state, step
from consensus.timeouts import Step, TimeoutConfig
from consensus.vote import Vote
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
    """The index in `KEYS` of the proposer of `round_number` at `height` (R25)."""
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
    """Signed votes of the validators at `indexes`, all alike."""
    return [vote(i, round_number, vote_type, block_hash) for i in indexes]


def proposal(
    round_number: int,
    block_hash: bytes = HASH_A,
    pol_round: int = -1,
    valid: bool = True,
    timely: bool = True,
) -> ProposalReceived:
    """The round's proposal from its rightful proposer, as the driver hands it to the core."""
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
    """Validator `index` (None: a follower) at the start of `HEIGHT`, idle."""
    own = None if index is None else KEYS[index].address
    state, actions = step(initial_state(CHAIN_ID, TIMEOUTS), StartHeight(HEIGHT, validators, own))
    assert actions == ()
    return state


def started(index: int) -> ConsensusState:
    """Validator `index` at round 0 of `HEIGHT`, with work to do."""
    state, _ = step(fresh(index), WorkAvailable(HEIGHT))
    return state


def others(me: int) -> list[int]:
    """Every validator index but `me`."""
    return [i for i in range(4) if i != me]


def of_type(actions: Iterable[Action], kind: type) -> list:
    """The actions of one kind, in order."""
    return [action for action in actions if isinstance(action, kind)]


def cast(actions: Iterable[Action]) -> list[tuple[int, str, bytes | None]]:
    """The votes cast among `actions`, as (round, type, block hash)."""
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

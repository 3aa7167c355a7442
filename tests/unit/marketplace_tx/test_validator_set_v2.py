"""PROTOCOL v2's validator-set state (R35, R34): `v` after block h is the set that signs
h+1, genesis holds `y ‖ 1`, and a departing validator's pending votes are dropped."""

from __future__ import annotations

from marketplace_tx.primitives import codec
from marketplace_tx.rules.state import State
from marketplace_tx.rules.state_keys import VALIDATORS, validator_history_key, validator_vote_key
from marketplace_tx.rules.validators import load_validators, validators_hash
from tests.unit.marketplace_tx.test_governance import Chain, key


def test_genesis_holds_v_and_y_1() -> None:
    """R35: genesis holds `v` and `y ‖ 1`."""
    alpha, beta = key(1), key(2)
    chain = Chain([alpha, beta])
    state = State(chain.base)
    expected = sorted([alpha.address, beta.address])
    assert codec.decode(state.get(VALIDATORS)) == {"validators": expected}
    assert codec.decode(state.get(validator_history_key(1))) == {"validators": expected}


def test_v_after_block_h_hashes_to_header_h_next_validators_hash() -> None:
    """R35: after every block h, hash(`v`) is header h's next_validators_hash, including
    the block right before a change signs (header H+1 when decided in H)."""
    alpha, newcomer = key(1), key(9)
    chain = Chain([alpha])
    assert chain.vote(alpha, "add", newcomer.address).ok  # decided in block H
    assert validators_hash(load_validators(State(chain.base))) == chain.headers[-1].next_validators_hash
    chain.block()  # block H+1: shows the change, `v` already holds the set signing H+2
    header = chain.headers[-1]
    assert header.next_validators_hash != header.validators_hash
    assert validators_hash(load_validators(State(chain.base))) == header.next_validators_hash
    assert State(chain.base).get(validator_history_key(header.height + 1)) is not None
    chain.block()
    assert validators_hash(load_validators(State(chain.base))) == chain.headers[-1].next_validators_hash


def test_pending_votes_of_a_departing_validator_are_dropped() -> None:
    """R34 (v2): when a validator leaves the set, its pending votes are dropped."""
    keys = [key(1), key(2), key(3), key(4)]
    chain = Chain(keys)
    outsider = key(9).address
    assert chain.vote(keys[3], "add", outsider).ok  # a pending vote by the one who will leave
    assert chain.vote(keys[1], "add", outsider).ok
    pending = codec.decode(State(chain.base).get(validator_vote_key("add", outsider)))["voters"]
    assert keys[3].address in pending
    for voter in keys[:3]:  # 3 of 4: the removal passes with the third vote
        assert chain.vote(voter, "remove", keys[3].address).ok
    chain.block()  # the start of this block puts the removal in force
    assert keys[3].address not in load_validators(State(chain.base))
    raw = State(chain.base).get(validator_vote_key("add", outsider))
    assert raw is not None
    assert codec.decode(raw)["voters"] == [keys[1].address]

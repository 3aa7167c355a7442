"""The validator set as application state: the set in force, decided changes, history
(R23, R25, R27, R34, R35).

After block h (genesis: h = 0) state `v` holds the set that signs block h+1, so its hash
is header h's `next_validators_hash` (R35). A change decided in block H (a
`validator_vote` that passes, or evidence) is listed in `n` by the first height it
signs, H+2; the start of block H+1 puts it in force (`v`, and `y ‖ H+2` in the
history), so header H+1's `next_validators_hash` shows it. Genesis writes `v` and
`y ‖ 1`. `set_at(h)` answers for any past height, for block sync (R30) and for
evidence (R27). "The current set" of R34 is `v`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from marketplace_tx.primitives import codec
from marketplace_tx.rules.state import State
from marketplace_tx.rules.state_keys import (
    VALIDATOR_HISTORY,
    VALIDATOR_SCHEDULE,
    VALIDATOR_VOTES,
    VALIDATORS,
    validator_history_key,
)
from marketplace_tx.speedups import decode_trusted

ACTIVATION_DELAY = 2
"""A set change decided in block H signs from H + 2 (R34)."""


def validators_hash(validators: Sequence[bytes]) -> bytes:
    """SHA-256(canonical(sorted list of addresses)) (R23)."""
    return hashlib.sha256(codec.encode(sorted(validators))).digest()


def load_validators(state: State) -> tuple[bytes, ...]:
    """The set in force (`v`), sorted by address: after block h, the set that signs h+1."""
    raw = state.get(VALIDATORS)
    if raw is None:
        return ()
    return tuple(decode_trusted(raw)["validators"])


def store_validators(state: State, validators: Sequence[bytes]) -> None:
    """Replace the set in force."""
    state.put(VALIDATORS, codec.encode({"validators": sorted(validators)}))


def store_genesis_validators(state: State, validators: Sequence[bytes]) -> None:
    """Genesis holds `v` and `y ‖ 1`: the set that signs block 1 (R35)."""
    store_validators(state, validators)
    state.put(validator_history_key(1), codec.encode({"validators": sorted(validators)}))


def scheduled_changes(state: State) -> list[tuple[int, tuple[bytes, ...]]]:
    """Decided sets not yet in force: (height, set), ascending."""
    raw = state.get(VALIDATOR_SCHEDULE)
    if raw is None:
        return []
    return [(item["height"], tuple(item["validators"])) for item in decode_trusted(raw)["changes"]]


def projected_validators(state: State) -> tuple[bytes, ...]:
    """The set once every decided change is in force: what new decisions build on."""
    changes = scheduled_changes(state)
    return changes[-1][1] if changes else load_validators(state)


def validators_for(state: State, height: int) -> tuple[bytes, ...]:
    """The set for `height` ≥ the next block's, as known now (header next_validators_hash)."""
    result = load_validators(state)
    for change_height, validators in scheduled_changes(state):
        if change_height <= height:
            result = validators
    return result


def schedule_change(state: State, decided_at: int, validators: Sequence[bytes]) -> int:
    """Schedule `validators` to sign from `decided_at + 2`; returns that height."""
    height = decided_at + ACTIVATION_DELAY
    changes = [(h, v) for h, v in scheduled_changes(state) if h != height]
    changes.append((height, tuple(sorted(validators))))
    changes.sort()
    state.put(
        VALIDATOR_SCHEDULE,
        codec.encode({"changes": [{"height": h, "validators": list(v)} for h, v in changes]}),
    )
    return height


def apply_scheduled(state: State, height: int) -> tuple[bytes, ...] | None:
    """At the start of block `height` − 1: put in force the set decided to sign `height`,
    if any (R35), and drop the pending votes of validators that leave (R34 v2)."""
    changes = scheduled_changes(state)
    due = [validators for change_height, validators in changes if change_height == height]
    if not due:
        return None
    rest = [(h, v) for h, v in changes if h != height]
    if rest:
        state.put(
            VALIDATOR_SCHEDULE,
            codec.encode({"changes": [{"height": h, "validators": list(v)} for h, v in rest]}),
        )
    else:
        state.delete(VALIDATOR_SCHEDULE)
    departed = set(load_validators(state)) - set(due[0])
    store_validators(state, due[0])
    state.put(validator_history_key(height), codec.encode({"validators": list(due[0])}))
    if departed:
        _drop_votes_of(state, departed)
    return due[0]


def _drop_votes_of(state: State, departed: set[bytes]) -> None:
    """Remove the pending votes cast by validators that left the set (R34 v2)."""
    for key, value in list(state.scan(VALIDATOR_VOTES, VALIDATOR_VOTES + b"\xff")):
        voters = decode_trusted(value)["voters"]
        kept = [voter for voter in voters if voter not in departed]
        if len(kept) == len(voters):
            continue
        if kept:
            state.put(key, codec.encode({"voters": kept}))
        else:
            state.delete(key)


def set_at(state: State, height: int) -> tuple[bytes, ...]:
    """The set that signed block `height` ≥ 1 (for any height up to the one after next)."""
    result: tuple[bytes, ...] = ()
    for _, value in state.scan(VALIDATOR_HISTORY, validator_history_key(height + 1)):
        result = tuple(decode_trusted(value)["validators"])
    for change_height, validators in scheduled_changes(state):  # decided, not yet in force
        if change_height <= height:
            result = validators
    return result


def proposer_for(validators: Sequence[bytes], height: int, round_number: int) -> bytes:
    """The proposer of (height, round): sorted validators, index (height + round) mod n (R25)."""
    ordered = sorted(validators)
    return ordered[(height + round_number) % len(ordered)]

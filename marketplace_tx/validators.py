"""The validator set as application state, and its hash (PROTOCOL R23, R25)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from marketplace_tx import codec
from marketplace_tx.state import State
from marketplace_tx.state_keys import VALIDATORS


def validators_hash(validators: Sequence[bytes]) -> bytes:
    """SHA-256(canonical(sorted list of addresses)) (R23)."""
    return hashlib.sha256(codec.encode(sorted(validators))).digest()


def load_validators(state: State) -> tuple[bytes, ...]:
    """The current validator set, sorted by address."""
    raw = state.get(VALIDATORS)
    if raw is None:
        return ()
    return tuple(codec.decode(raw)["validators"])


def store_validators(state: State, validators: Sequence[bytes]) -> None:
    """Replace the current validator set."""
    state.put(VALIDATORS, codec.encode({"validators": sorted(validators)}))


def proposer_for(validators: Sequence[bytes], height: int, round_number: int) -> bytes:
    """The proposer of (height, round): sorted validators, index (height + round) mod n (R25)."""
    ordered = sorted(validators)
    return ordered[(height + round_number) % len(ordered)]

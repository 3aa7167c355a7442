"""Evidence of equivocation: two conflicting signed votes of one validator (PROTOCOL R27).

An evidence item is the canonical map

    {validator: bin32, vote_a: VOTE, vote_b: VOTE}
    VOTE = {block_hash: bin32 | nil, chain_id, height, round, signature: bin64, type}

with the same (height, round, type), different `block_hash`, `vote_a` before `vote_b`
in canonical byte order, and both signatures valid (kind `vote`, R26). It is valid if
the signer was in the set at that height, is still in the projected set, and was not
already punished. A block carrying it removes the validator from H + 2 and records the
punishment; invalid evidence makes the block invalid.
"""

from __future__ import annotations

from typing import Any

from marketplace_tx.primitives import codec
from marketplace_tx.primitives.crypto import signing_bytes, verify_signature
from marketplace_tx.primitives.errors import InvalidBlock
from marketplace_tx.rules.context import BlockContext
from marketplace_tx.rules.state import State
from marketplace_tx.rules.state_keys import punished_key
from marketplace_tx.rules.validators import projected_validators, schedule_change, set_at

VOTE_KEYS = {"block_hash", "chain_id", "height", "round", "signature", "type"}


def make_evidence(validator: bytes, first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    """An evidence item from two signed vote maps (each with `signature`), canonically ordered."""
    vote_a, vote_b = sorted((first, second), key=codec.encode)
    return {"validator": validator, "vote_a": vote_a, "vote_b": vote_b}


def _unsigned(vote: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in vote.items() if key != "signature"}


def check_evidence(state: State, block: BlockContext, item: Any) -> bytes:
    """Raise `InvalidBlock` unless `item` is valid evidence now; returns the validator."""
    if not isinstance(item, dict) or set(item) != {"validator", "vote_a", "vote_b"}:
        raise InvalidBlock("evidence must be {validator, vote_a, vote_b}")
    validator, vote_a, vote_b = item["validator"], item["vote_a"], item["vote_b"]
    if not isinstance(validator, bytes) or len(validator) != 32:
        raise InvalidBlock("evidence.validator must be 32 bytes")
    for vote in (vote_a, vote_b):
        if not isinstance(vote, dict) or set(vote) != VOTE_KEYS:
            raise InvalidBlock("evidence votes must be signed vote maps")
        if vote["chain_id"] != block.chain_id or vote["type"] not in ("prevote", "precommit"):
            raise InvalidBlock("evidence vote is for another chain or of an unknown type")
        if isinstance(vote["height"], bool) or not isinstance(vote["height"], int) or not 1 <= vote["height"] < block.height:
            raise InvalidBlock("evidence vote height out of range")
        if isinstance(vote["round"], bool) or not isinstance(vote["round"], int) or not 0 <= vote["round"] < 2**63:
            raise InvalidBlock("evidence vote round must be an unsigned integer")
        if vote["block_hash"] is not None and (not isinstance(vote["block_hash"], bytes) or len(vote["block_hash"]) != 32):
            raise InvalidBlock("evidence vote block_hash must be 32 bytes or nil (R26)")
        if not isinstance(vote["signature"], bytes) or not verify_signature(
            validator, signing_bytes("vote", _unsigned(vote)), vote["signature"]
        ):
            raise InvalidBlock("evidence vote signature is invalid")
    if any(vote_a[key] != vote_b[key] for key in ("height", "round", "type")):
        raise InvalidBlock("evidence votes are for different (height, round, type)")
    if vote_a["block_hash"] == vote_b["block_hash"] or codec.encode(vote_a) >= codec.encode(vote_b):
        raise InvalidBlock("evidence votes do not conflict or are not in canonical order")
    error = standing_error(state, validator, vote_a["height"])
    if error is not None:
        raise InvalidBlock(error)
    return validator


def standing_error(state: State, validator: bytes, height: int) -> str | None:
    """Why evidence against `validator` for votes of `height` cannot count now (state
    reads only, no signature check); None if it can."""
    if validator not in set_at(state, height):
        return "evidence: the signer was not a validator at that height"
    if validator not in projected_validators(state):
        return "evidence: the signer is no longer a validator"
    if state.get(punished_key(validator)) is not None:
        return "evidence: the signer was already punished"
    return None


def apply_evidence(state: State, block: BlockContext, evidence: tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
    """Check every item and remove each equivocating validator from H + 2 (R27)."""
    events = []
    for item in evidence:
        validator = check_evidence(state, block, item)
        remaining = [v for v in projected_validators(state) if v != validator]
        state.put(punished_key(validator), codec.encode({"evidence_height": item["vote_a"]["height"], "height": block.height}))
        if remaining:
            schedule_change(state, block.height, remaining)
        events.append({"type": "validator_punished", "validator": validator, "height": item["vote_a"]["height"]})
    return events

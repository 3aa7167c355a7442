"""`validator_vote`: the validators add or remove one of their own (PROTOCOL R34).

Only identical pending votes from members of the current set count; a repeated vote
is `already_exists`; adding a member, removing a non-member or leaving the set empty
is `invalid_state`. The change passes in the block H where 3 × votes > 2 × n, signs
from H + 2, and its pending votes are cleared. Membership is judged against the
projected set (every decided change in force), so two votes cannot add one validator twice.
"""

from __future__ import annotations

from typing import Any

from marketplace_tx.primitives import codec
from marketplace_tx.primitives.errors import RuleError
from marketplace_tx.rules.context import TxContext
from marketplace_tx.rules.state import State
from marketplace_tx.rules.state_keys import validator_vote_key
from marketplace_tx.rules.validators import load_validators, projected_validators, schedule_change
from marketplace_tx.speedups import decode_trusted


def apply_validator_vote(state: State, context: TxContext, payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Record a member's vote; pass the change once more than 2/3 of the set agree."""
    action, validator = payload["action"], payload["validator"]
    current = load_validators(state)
    if context.sender not in current:
        raise RuleError("forbidden", "sender: only a current validator may vote")
    projected = projected_validators(state)
    if action == "add" and validator in projected:
        raise RuleError("invalid_state", "payload.validator: is already a member")
    if action == "remove" and validator not in projected:
        raise RuleError("invalid_state", "payload.validator: is not a member")
    if action == "remove" and len(projected) == 1:
        raise RuleError("invalid_state", "payload.validator: the set cannot become empty")
    key = validator_vote_key(action, validator)
    raw = state.get(key)
    voters = list(decode_trusted(raw)["voters"]) if raw is not None else []
    if context.sender in voters:
        raise RuleError("already_exists", "sender: already voted for this change")
    voters = sorted([*voters, context.sender])
    counted = [voter for voter in voters if voter in current]
    events: list[dict[str, Any]] = [
        {"type": "validator_vote", "action": action, "validator": validator, "votes": len(counted)}
    ]
    if 3 * len(counted) > 2 * len(current):
        new_set = [*projected, validator] if action == "add" else [v for v in projected if v != validator]
        height = schedule_change(state, context.block.height, new_set)
        state.delete(key)
        events.append({"type": "validator_set_change", "action": action, "validator": validator, "from_height": height})
    else:
        state.put(key, codec.encode({"voters": voters}))
    return events

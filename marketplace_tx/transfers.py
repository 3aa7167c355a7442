"""The `transfer` transaction: move µMKT between accounts (PROTOCOL §4)."""

from __future__ import annotations

from typing import Any

from marketplace_tx.accounts import checked_add, credit, debit, load_account
from marketplace_tx.context import TxContext
from marketplace_tx.state import State


def apply_transfer(state: State, context: TxContext, payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Move `amount` from the sender to `to`; `insufficient_funds` if the sender lacks it."""
    amount = payload["amount"]
    checked_add(load_account(state, payload["to"]).balance, amount, "payload.amount")  # R12: values before funds
    debit(state, context.sender, amount)
    credit(state, payload["to"], amount)
    event: dict[str, Any] = {"type": "transfer", "from": context.sender, "to": payload["to"], "amount": amount}
    if "memo" in payload:
        event["memo"] = payload["memo"]
    return [event]

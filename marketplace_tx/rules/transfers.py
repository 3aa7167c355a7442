"""The `transfer` transaction: move µMKT between accounts (PROTOCOL §4)."""

from __future__ import annotations

from typing import Any

from marketplace_tx.rules.accounts import (
    Account,
    checked_add,
    credit,
    debit,
    load_account,
    store_account,
)
from marketplace_tx.rules.context import TxContext
from marketplace_tx.rules.state import State


def apply_transfer(state: State, context: TxContext, payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Move `amount` from the sender to `to`; `insufficient_funds` if the sender lacks it."""
    amount, recipient = payload["amount"], payload["to"]
    receiving = load_account(state, recipient)
    checked_add(receiving.balance, amount, "payload.amount")  # R12: values before funds
    debit(state, context.sender, amount)
    if recipient == context.sender:
        credit(state, recipient, amount)
    else:  # speed: `credit` without reading the recipient's unchanged account again
        store_account(state, recipient, Account(checked_add(receiving.balance, amount, "amount"), receiving.nonce))
    event: dict[str, Any] = {"type": "transfer", "from": context.sender, "to": payload["to"], "amount": amount}
    if "memo" in payload:
        event["memo"] = payload["memo"]
    return [event]

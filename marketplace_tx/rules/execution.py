"""Transaction execution: dispatch, fees, nonces and receipts (PROTOCOL R11).

One table maps each transaction `type` to the function that applies its rule. An
included transaction always pays its fee to the block's proposer and bumps the
sender's nonce; its rule then runs inside a nested state transaction that is rolled
back if the rule fails.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from marketplace_tx.chain.receipts import Receipt
from marketplace_tx.chain.transaction import Transaction
from marketplace_tx.primitives.errors import InvalidBlock, RuleError
from marketplace_tx.rules import after_sales, items, listings, orders, reviews, shops
from marketplace_tx.rules.accounts import Account, credit, load_account, store_account
from marketplace_tx.rules.context import BlockContext, TxContext
from marketplace_tx.rules.governance import apply_validator_vote
from marketplace_tx.rules.roles import apply_role_grant, apply_role_revoke
from marketplace_tx.rules.schema import check_payload
from marketplace_tx.rules.state import State
from marketplace_tx.rules.transfers import apply_transfer

Handler = Callable[[State, TxContext, dict[str, Any]], list[dict[str, Any]]]
"""A rule: reads and writes state, returns events, raises `RuleError` on failure."""

HANDLERS: dict[str, Handler] = {
    "transfer": apply_transfer,
    "role_grant": apply_role_grant,
    "role_revoke": apply_role_revoke,
    "validator_vote": apply_validator_vote,
    "shop_create": shops.apply_shop_create,
    "shop_update": shops.apply_shop_update,
    "listing_create": listings.apply_listing_create,
    "listing_update": listings.apply_listing_update,
    "order_place": orders.apply_order_place,
    "order_accept": orders.apply_order_accept,
    "order_reject": orders.apply_order_reject,
    "order_cancel": orders.apply_order_cancel,
    "order_ship": orders.apply_order_ship,
    "order_deliver": orders.apply_order_deliver,
    "shipment_update": orders.apply_shipment_update,
    "order_confirm": orders.apply_order_confirm,
    "return_request": after_sales.apply_return_request,
    "order_refund": after_sales.apply_order_refund,
    "dispute_open": after_sales.apply_dispute_open,
    "dispute_resolve": after_sales.apply_dispute_resolve,
    "review_submit": reviews.apply_review_submit,
    "review_reply": reviews.apply_review_reply,
    "item_register": items.apply_item_register,
    "item_event": items.apply_item_event,
    "item_transfer": items.apply_item_transfer,
}
"""Transaction types this node executes; admission rejects any other as `unknown_type`."""


def inclusion_error(state: State, tx: Transaction) -> str | None:
    """Why `tx` cannot be included next in block order, or None (R11).

    A transaction is includable only if its nonce is the sender's next nonce and the
    sender can pay the fee.
    """
    return _inclusion_problem(load_account(state, tx.sender), tx)


def _inclusion_problem(account: Account, tx: Transaction) -> str | None:
    """`inclusion_error` for the sender's account as it stands."""
    if tx.nonce != account.nonce:
        return f"nonce {tx.nonce} is not the sender's next nonce {account.nonce}"
    if account.balance < tx.fee:
        return f"sender's balance {account.balance} cannot pay the fee {tx.fee}"
    return None


def execute_transaction(
    state: State, block: BlockContext, tx: Transaction, index: int
) -> Receipt:
    """Apply one included transaction and return its receipt (R11).

    The caller has checked the stateless rules of R10. Raises `InvalidBlock` if the
    transaction cannot be included at this point of the block.
    """
    account = load_account(state, tx.sender)
    problem = _inclusion_problem(account, tx)
    if problem is not None:
        raise InvalidBlock(f"transaction {index} ({tx.hash.hex()}): {problem}")
    return _execute_includable(state, block, tx, index, account)


def try_execute_transaction(
    state: State, block: BlockContext, tx: Transaction, index: int
) -> Receipt | None:
    """`execute_transaction` for a proposer: None (and no change) where `inclusion_error`
    would say `tx` cannot be included now, reading the sender's account only once."""
    account = load_account(state, tx.sender)
    if _inclusion_problem(account, tx) is not None:
        return None
    return _execute_includable(state, block, tx, index, account)


def _execute_includable(
    state: State, block: BlockContext, tx: Transaction, index: int, account: Account
) -> Receipt:
    """Fee, nonce and the rule of a transaction whose sender holds `account` and may send it."""
    store_account(state, tx.sender, Account(account.balance - tx.fee, account.nonce + 1))
    credit(state, block.proposer, tx.fee, "fee")
    context = TxContext(block=block, tx_hash=tx.hash, index=index, sender=tx.sender)
    state.begin()
    try:
        check_payload(tx.type, tx.payload)
        events = HANDLERS[tx.type](state, context, tx.payload)
    except RuleError as error:
        state.rollback()
        return Receipt(ok=False, code=error.code, message=error.message)
    state.commit()
    return Receipt(ok=True, events=tuple(events))

"""Accounts: balances, nonces and roles, read and written through `State` (PROTOCOL R6, R9)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from marketplace_tx.primitives import codec
from marketplace_tx.primitives.errors import RuleError
from marketplace_tx.primitives.limits import UINT64_MAX
from marketplace_tx.rules.state import State
from marketplace_tx.rules.state_keys import account_key, role_key, role_prefix
from marketplace_tx.speedups import decode_trusted


@dataclass(frozen=True)
class Account:
    """An account's balance and nonce; an address never seen has both at zero."""

    balance: int = 0
    """Spendable µMKT (R6)."""
    nonce: int = 0
    """The nonce its next transaction must carry (R9)."""


def load_account(state: State, address: bytes) -> Account:
    """The account at `address` (zero balance and nonce if it was never written)."""
    raw = state.get(account_key(address))
    if raw is None:
        return Account()
    value = decode_trusted(raw)
    return Account(balance=value["balance"], nonce=value["nonce"])


def store_account(state: State, address: bytes, account: Account) -> None:
    """Write an account record; an all-zero account is deleted to keep state small."""
    balance, nonce = account.balance, account.nonce
    if balance == 0 and nonce == 0:
        state.delete(account_key(address))
    elif type(balance) is int and type(nonce) is int and 0 <= balance <= UINT64_MAX and 0 <= nonce <= UINT64_MAX:
        # Speed: a map built in sorted key order with in-range ints packs canonically (R1),
        # the same bytes as `codec.encode` without its generic walk.
        state.put(account_key(address), msgpack.packb({"balance": balance, "nonce": nonce}))
    else:
        state.put(account_key(address), codec.encode({"balance": balance, "nonce": nonce}))


def checked_add(left: int, right: int, field: str) -> int:
    """left + right, or `invalid_field` if the result exceeds 2^64−1 (R11)."""
    total = left + right
    if total > UINT64_MAX:
        raise RuleError("invalid_field", f"{field}: the result exceeds 2^64-1")
    return total


def credit(state: State, address: bytes, amount: int, field: str = "amount") -> None:
    """Add `amount` µMKT to `address`."""
    account = load_account(state, address)
    store_account(state, address, Account(checked_add(account.balance, amount, field), account.nonce))


def debit(state: State, address: bytes, amount: int) -> None:
    """Take `amount` µMKT from `address`, or `insufficient_funds`."""
    account = load_account(state, address)
    if account.balance < amount:
        raise RuleError(
            "insufficient_funds", f"balance {account.balance} is below the {amount} needed"
        )
    store_account(state, address, Account(account.balance - amount, account.nonce))


def has_role(state: State, address: bytes, role: str) -> bool:
    """True iff `address` currently holds `role`."""
    return state.get(role_key(address, role)) is not None


def roles_of(state: State, address: bytes) -> list[str]:
    """Every role `address` holds, sorted."""
    start, end = role_prefix(address)
    return sorted(key[len(start):].decode("utf-8") for key, _ in state.scan(start, end))


def role_record(state: State, address: bytes, role: str) -> dict[str, Any] | None:
    """The record of a held role: evidence hash, granting registrar and height."""
    raw = state.get(role_key(address, role))
    return None if raw is None else decode_trusted(raw)


def grant_role(state: State, address: bytes, role: str, record: dict[str, Any]) -> None:
    """Record that `address` holds `role`."""
    state.put(role_key(address, role), codec.encode(record))


def revoke_role(state: State, address: bytes, role: str) -> None:
    """Remove `role` from `address`."""
    state.delete(role_key(address, role))

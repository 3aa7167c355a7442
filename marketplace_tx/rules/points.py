"""Loyalty points per (shop, account) (PROTOCOL R21). One point is one µMKT off."""

from __future__ import annotations

from marketplace_tx.primitives import codec
from marketplace_tx.primitives.errors import RuleError
from marketplace_tx.primitives.limits import UINT64_MAX
from marketplace_tx.rules.state import State
from marketplace_tx.rules.state_keys import points_key, points_prefix
from marketplace_tx.speedups import decode_trusted


def points_balance(state: State, shop_id: bytes, account: bytes) -> int:
    """Points `account` holds at `shop_id`."""
    raw = state.get(points_key(shop_id, account))
    return 0 if raw is None else decode_trusted(raw)


def _store(state: State, shop_id: bytes, account: bytes, points: int) -> None:
    if points == 0:
        state.delete(points_key(shop_id, account))
    else:
        state.put(points_key(shop_id, account), codec.encode(points))


def add_points(state: State, shop_id: bytes, account: bytes, points: int) -> None:
    """Credit points (saturating at 2^64−1: points are a reward, never a reason to fail)."""
    if points:
        _store(state, shop_id, account, min(points_balance(state, shop_id, account) + points, UINT64_MAX))


def take_points(state: State, shop_id: bytes, account: bytes, points: int) -> None:
    """Debit points, or `insufficient_funds` (R21)."""
    held = points_balance(state, shop_id, account)
    if held < points:
        raise RuleError("insufficient_funds", f"payload.redeem_points: {points} asked, {held} held")
    _store(state, shop_id, account, held - points)


def points_of_account(state: State, account: bytes) -> dict[bytes, int]:
    """Points `account` holds, by shop id."""
    start, end = points_prefix(account)
    return {key[len(start):]: decode_trusted(value) for key, value in state.scan(start, end)}

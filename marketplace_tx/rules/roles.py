"""Roles granted by registrars after off-chain KYC: `role_grant`, `role_revoke` (PROTOCOL §4)."""

from __future__ import annotations

from typing import Any

from marketplace_tx.primitives.errors import RuleError
from marketplace_tx.rules.accounts import grant_role, has_role, revoke_role
from marketplace_tx.rules.context import TxContext
from marketplace_tx.rules.state import State


def _require_registrar(state: State, context: TxContext) -> None:
    if not has_role(state, context.sender, "registrar"):
        raise RuleError("forbidden", "sender: only a registrar may grant or revoke roles")


def apply_role_grant(state: State, context: TxContext, payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Grant `role` to `account`, recording only the KYC document's hash on chain."""
    _require_registrar(state, context)
    account, role = payload["account"], payload["role"]
    if has_role(state, account, role):
        raise RuleError("already_exists", f"payload.account already holds the role {role}")
    grant_role(
        state,
        account,
        role,
        {
            "evidence_hash": payload["evidence_hash"],
            "granted_by": context.sender,
            "height": context.block.height,
        },
    )
    return [{"type": "role_granted", "account": account, "role": role, "by": context.sender}]


def apply_role_revoke(state: State, context: TxContext, payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Remove `role` from `account`; existing orders are not touched (§4).

    R12 order: a role that is not held (`not_found`) wins over a sender who is no
    registrar (`forbidden`).
    """
    account, role = payload["account"], payload["role"]
    if not has_role(state, account, role):
        raise RuleError("not_found", f"payload.account does not hold the role {role}")
    _require_registrar(state, context)
    revoke_role(state, account, role)
    return [{"type": "role_revoked", "account": account, "role": role, "by": context.sender}]

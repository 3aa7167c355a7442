"""The state a genesis document creates (PROTOCOL R33, §9)."""

from __future__ import annotations

from marketplace_tx.chain.genesis import Genesis
from marketplace_tx.rules.accounts import Account, grant_role, store_account
from marketplace_tx.rules.state import State
from marketplace_tx.rules.validators import store_genesis_validators


def apply_genesis(state: State, genesis: Genesis) -> None:
    """Write the genesis state: accounts, their roles, the validator set, and `registrar`
    for every genesis validator (R33)."""
    for account in genesis.accounts:
        store_account(state, account.address, Account(balance=account.balance))
        for role in account.roles:
            grant_role(state, account.address, role, {"height": 0})
    for validator in genesis.validators:
        grant_role(state, validator, "registrar", {"height": 0})
    store_genesis_validators(state, genesis.validators)

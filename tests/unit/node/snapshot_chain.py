"""A real ChainStore with a few thousand state entries for the snapshot tests.

The genesis gives `extra_accounts` made-up accounts a balance (one `a` entry each) besides
the test users of chain_store_model; then a few random blocks are committed exactly as a
node does (state_history_chain.RandomChain), so that the head has a header and a commit.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from marketplace_tx.chain.genesis import Genesis, GenesisAccount
from marketplace_tx.chain.params import Params
from node.storage import ChainStore
from tests.unit.node.chain_store_model import (
    CHAIN_ID,
    GENESIS_TIME,
    START_BALANCE,
    USERS,
    VALIDATOR,
)
from tests.unit.node.state_history_chain import RandomChain


def crowded_genesis(extra_accounts: int) -> Genesis:
    """The test genesis plus `extra_accounts` accounts with a balance."""
    balances = {user.address: START_BALANCE for user in USERS}
    balances[VALIDATOR.address] = 5 * START_BALANCE
    for number in range(extra_accounts):
        balances[hashlib.sha256(b"extra %d" % number).digest()] = 1 + number
    accounts = tuple(GenesisAccount(address, balances[address]) for address in sorted(balances))
    genesis = Genesis(CHAIN_ID, GENESIS_TIME, (VALIDATOR.address,), accounts, Params())
    genesis.validate()
    return genesis


def crowded_chain(path: Path, extra_accounts: int = 3000, blocks: int = 3, seed: int = 7) -> RandomChain:
    """A store at `path` (the caller closes `chain.store`) after `blocks` random blocks."""
    store = ChainStore(path)
    genesis = crowded_genesis(extra_accounts)
    store.initialize(genesis)
    chain = RandomChain.start(store, genesis, seed)
    chain.random_blocks(blocks)
    return chain

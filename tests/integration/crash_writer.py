"""A block writer to be killed: commits blocks of signed transfers forever.

    python tests/crash_writer.py DB_PATH CONFIG_JSON

Opens a `ChainStore` at DB_PATH with the genesis the config describes (or resumes
from the head already there: the senders' nonces are read from the state), prints
`ready <height> <block hash hex>`, then loops building blocks of `min_txs`…`max_txs`
signed transactions over the store, sealing each with the validator's commit and
writing it with `commit_block`. Just before `commit_block` it prints
`writing <height> <block hash hex>`; after it returns, `committed <height> <block hash
hex>`, flushing each line: every block reported committed must survive a SIGKILL,
and a kill after `writing` may leave that block or nothing of it
(tests/test_crash_consistency.py).

The config (JSON) holds: chain_id, genesis_time, validator_seed and account_seeds
(32-byte seeds in hex), balance and validator_balance (µMKT), min_txs, max_txs,
rng_seed, keep_state (the store's, small so that undo records are deleted in the
batches too). `make_genesis` and `make_keys` are shared with the test.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

from consensus.commit import sign_commit
from marketplace_tx.chain.genesis import Genesis, GenesisAccount
from marketplace_tx.chain.params import Params
from marketplace_tx.chain.transaction import Transaction, sign_transaction
from marketplace_tx.primitives.crypto import KeyPair
from marketplace_tx.rules.accounts import load_account
from marketplace_tx.rules.schema import ROLES
from marketplace_tx.rules.state import State
from marketplace_tx.rules.state_transition import build_block
from node.storage import ChainStore

FEE = 10
BLOCK_INTERVAL_MS = 1_000
HUGE_AMOUNT = 2**60
"""More than any account holds: the transfer fails with insufficient_funds."""


def make_keys(config: dict[str, Any]) -> tuple[KeyPair, list[KeyPair]]:
    """The validator's key pair and the users' key pairs of `config`."""
    validator = KeyPair.from_seed(bytes.fromhex(config["validator_seed"]))
    users = [KeyPair.from_seed(bytes.fromhex(seed)) for seed in config["account_seeds"]]
    return validator, users


def make_genesis(config: dict[str, Any]) -> Genesis:
    """The genesis `config` describes: one validator (a funded registrar) and funded users."""
    validator, users = make_keys(config)
    balances = {user.address: config["balance"] for user in users}
    balances[validator.address] = config["validator_balance"]
    accounts = tuple(GenesisAccount(address, balances[address]) for address in sorted(balances))
    genesis = Genesis(config["chain_id"], config["genesis_time"], (validator.address,), accounts, Params())
    genesis.validate()
    return genesis


def random_transactions(
    rng: random.Random,
    config: dict[str, Any],
    validator: KeyPair,
    users: list[KeyPair],
    nonces: dict[bytes, int],
) -> list[Transaction]:
    """Between min_txs and max_txs transactions, each sender's nonces in order.

    Mostly transfers (some with a memo, a few failing for want of funds), and some
    role grants and revocations by the validator (registrar), which create and
    delete state keys or fail with already_exists / not_found.
    """
    chain_id = config["chain_id"]
    transactions = []
    for _ in range(rng.randint(config["min_txs"], config["max_txs"])):
        draw = rng.random()
        if draw < 0.05:
            tx_type = rng.choice(("role_grant", "role_revoke"))
            payload: dict[str, Any] = {"account": rng.choice(users).address, "role": rng.choice(ROLES)}
            if tx_type == "role_grant":
                payload["evidence_hash"] = rng.randbytes(32)
            sender = validator
        else:
            tx_type = "transfer"
            sender = rng.choice(users)
            amount = HUGE_AMOUNT if draw < 0.08 else rng.randint(1, 10_000)
            payload = {"to": rng.choice(users).address, "amount": amount}
            if draw > 0.9:
                payload["memo"] = f"invoice {rng.randrange(10**6)}"
        nonce = nonces[sender.address]
        nonces[sender.address] = nonce + 1
        transactions.append(sign_transaction(sender, chain_id, tx_type, payload, nonce, FEE))
    return transactions


def main(argv: list[str]) -> int:
    db_path, config_path = Path(argv[1]), Path(argv[2])
    config = json.loads(config_path.read_text())
    genesis = make_genesis(config)
    validator, users = make_keys(config)
    store = ChainStore(db_path, keep_state=config["keep_state"])
    tip = store.initialize(genesis)  # checks the stored tree's root is the head's state root
    state = State(store)
    nonces = {key.address: load_account(state, key.address).nonce for key in [validator, *users]}
    last_commit = store.commit(tip.height) if tip.height > 0 else None
    if tip.height > 0 and last_commit is None:
        print(f"the commit of head {tip.height} is missing", file=sys.stderr)
        return 2
    rng = random.Random(f"{config['rng_seed']}:{tip.height}")
    print(f"ready {tip.height} {tip.block_hash.hex()}", flush=True)
    while True:
        candidates = random_transactions(rng, config, validator, users, dict(nonces))
        result = build_block(
            store, tip, genesis.chain_id, genesis.params, validator.address,
            tip.time + BLOCK_INTERVAL_MS, candidates, last_commit,
        )
        if len(result.transactions) != len(candidates):
            print(f"block {tip.height + 1} skipped candidates", file=sys.stderr)
            return 3
        commit = sign_commit([validator], genesis.chain_id, tip.height + 1, 0, result.block.hash)
        print(f"writing {tip.height + 1} {result.block.hash.hex()}", flush=True)
        tip = store.commit_block(result, commit)
        for tx in result.transactions:
            nonces[tx.sender] = tx.nonce + 1
        last_commit = commit
        print(f"committed {tip.height} {tip.block_hash.hex()}", flush=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv))

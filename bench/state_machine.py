"""Benchmark: the state machine alone, beside the machine's Ed25519 verification rate.

Prints, for one core: Ed25519 verifications/s (the yardstick), transaction decode +
stateless checks/s without signatures, and transfers applied per second by
`build_block` with no signature checks and no storage. Writes bench/results/state_machine.json.

    .venv/bin/python bench/state_machine.py [--transactions 20000]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from marketplace_tx.chain.genesis import Genesis, GenesisAccount
from marketplace_tx.chain.params import Params
from marketplace_tx.chain.transaction import sign_transaction
from marketplace_tx.primitives.crypto import KeyPair, verify_signature
from marketplace_tx.rules.admission import check_stateless
from marketplace_tx.rules.state import MemoryStateReader
from marketplace_tx.rules.state_transition import ChainTip, build_block, genesis_changes

CHAIN_ID = "bench"


def ed25519_rate(seconds: float = 2.0) -> float:
    """Verifications per second of one Ed25519 signature on this core."""
    key = KeyPair.from_seed(bytes(32))
    message = b"x" * 200
    signature = key.sign(message)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(200):
            verify_signature(key.address, message, signature)
        count += 200
    return count / (time.perf_counter() - start)


def measure(count: int) -> dict[str, float]:
    """Decode + stateless checks/s and transfers applied/s of `count` transfers, one core."""
    senders = [KeyPair.from_seed(bytes([index]) * 32) for index in range(1, 101)]
    proposer = KeyPair.from_seed(bytes([200]) * 32)
    params = Params(max_block_txs=count, max_block_bytes=64 * 1024 * 1024)
    genesis = Genesis(
        chain_id=CHAIN_ID,
        genesis_time=0,
        validators=(proposer.address,),
        accounts=tuple(sorted((GenesisAccount(k.address, 10**12) for k in senders), key=lambda a: a.address)),
        params=params,
    )
    tip, changes = genesis_changes(genesis)
    base = MemoryStateReader()
    base.apply(changes)
    per_sender = count // len(senders)
    transactions = [
        sign_transaction(key, CHAIN_ID, "transfer", {"to": senders[(i + 1) % len(senders)].address, "amount": 1}, nonce, 10)
        for nonce in range(per_sender)
        for i, key in enumerate(senders)
    ]
    start = time.perf_counter()
    for tx in transactions:
        check_stateless(tx.raw, CHAIN_ID, params, verify_signature=False)
    decode_rate = len(transactions) / (time.perf_counter() - start)
    ordered = sorted(transactions, key=lambda tx: (tx.sender, tx.nonce))
    start = time.perf_counter()
    result = build_block(base, ChainTip(0, tip.block_hash, 0, tip.state_root), CHAIN_ID, params, proposer.address, 1, ordered, None)
    apply_rate = len(result.transactions) / (time.perf_counter() - start)
    assert len(result.transactions) == len(transactions), "every transfer should be included"
    return {
        "decode_and_stateless_checks_per_second": round(decode_rate),
        "transfers_applied_per_second": round(apply_rate),
        "transactions": len(transactions),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--transactions", type=int, default=20000)
    arguments = parser.parse_args()
    yardstick = ed25519_rate()
    measured = measure(arguments.transactions)
    figures = {
        "machine": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "ed25519_verifications_per_second": round(yardstick),
        "decode_and_stateless_checks_per_second": measured["decode_and_stateless_checks_per_second"],
        "transfers_applied_per_second": measured["transfers_applied_per_second"],
        "transfers_applied_vs_ed25519": round(measured["transfers_applied_per_second"] / yardstick, 3),
        "transactions": measured["transactions"],
    }
    width = max(len(name) for name in figures)
    for name, value in figures.items():
        print(f"{name.ljust(width)}  {value}")
    output = Path(__file__).resolve().parent / "results"
    output.mkdir(exist_ok=True)
    (output / "state_machine.json").write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()

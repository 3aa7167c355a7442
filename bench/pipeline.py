"""Benchmark: a node's per-transaction CPU cost, stage by stage, in one process and thread.

Times are CPU time of the thread (`time.thread_time`), so other work on the machine
hardly changes them. No HTTP and no other process: a real `Node` (LevelDB in a temporary directory) admits
signed transfers the way `POST /txs/batch` does (their stateless verdicts with the
signature, `node/admission.py`, then `Mempool.admit`), builds blocks of them, stores them with `commit_block` and runs the
`after_block` bookkeeping, exactly as one authority does; then a second node replays
those blocks as block sync does (`apply_block` verifying every signature, then the same
storage and bookkeeping). Each stage is timed, so the table says where a transaction's
CPU goes; `--profile` adds the cProfile functions (of this thread only).

    .venv/bin/python bench/pipeline.py [--txs 20000] [--block 5000] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import pstats
import tempfile
import time
from pathlib import Path
from typing import Any

from state_machine import ed25519_rate

from marketplace_tx.chain.block import Commit
from marketplace_tx.chain.genesis import Genesis, GenesisAccount
from marketplace_tx.chain.params import Params
from marketplace_tx.chain.transaction import sign_transaction
from marketplace_tx.primitives.crypto import KeyPair
from marketplace_tx.rules.state_transition import apply_block, build_block
from node.home import init_home
from node.node import Node

CHAIN_ID = "bench-pipeline"


async def run(transactions: int, block_txs: int, profiler: cProfile.Profile | None) -> dict[str, Any]:
    senders = [KeyPair.from_seed(bytes([index % 256, index // 256]) * 16) for index in range(200)]
    validator = KeyPair.from_seed(bytes([7]) * 32)
    genesis = Genesis(CHAIN_ID, int(time.time() * 1000) - 10**7, (validator.address,), tuple(sorted(
        [GenesisAccount(key.address, 10**12) for key in senders]
        + [GenesisAccount(validator.address, 10**12, ("registrar",))], key=lambda account: account.address)),
        Params())
    per_sender = -(-transactions // len(senders))
    signed = [sign_transaction(key, CHAIN_ID, "transfer", {"to": senders[(index + 1) % len(senders)].address,
                                                           "amount": 1}, nonce, 10)
              for nonce in range(per_sender) for index, key in enumerate(senders)]
    seconds = {"admit: decode, checks, signature": 0.0, "admit: mempool": 0.0, "build block (execute)": 0.0,
               "commit block (LevelDB, indexes)": 0.0, "after block (events, mempool)": 0.0,
               "sync: apply block (decode, signatures, execute)": 0.0, "sync: commit block": 0.0,
               "sync: after block": 0.0}
    with tempfile.TemporaryDirectory(prefix="marketchain-pipeline-") as directory:
        node = Node(init_home(Path(directory) / "home", genesis=genesis, validator_key=validator))
        try:
            if profiler is not None:
                profiler.enable()
            for start in range(0, len(signed), block_txs):
                chunk = [tx.raw for tx in signed[start:start + block_txs]]
                began = time.thread_time()
                verdicts = node.admission.in_thread.check(chunk)
                middle = time.thread_time()
                for verdict in verdicts:
                    node.mempool.admit(verdict, 0)
                ended = time.thread_time()
                seconds["admit: decode, checks, signature"] += middle - began
                seconds["admit: mempool"] += ended - middle
                tip = node.store.head()
                began = time.thread_time()
                result = build_block(node.store, tip, CHAIN_ID, genesis.params, validator.address,
                                     max(int(time.time() * 1000), tip.time + 1), list(node.mempool.ready()),
                                     node.store.commit(tip.height) if tip.height else None)
                middle = time.thread_time()
                node.store.commit_block(result, Commit(result.block.hash, tip.height + 1, 0, ()))
                ended = time.thread_time()
                node.after_block(result)
                seconds["build block (execute)"] += middle - began
                seconds["commit block (LevelDB, indexes)"] += ended - middle
                seconds["after block (events, mempool)"] += time.thread_time() - ended
                assert len(result.transactions) == len(chunk), "every transfer should be included"
            await asyncio.sleep(0)
            follower = Node(init_home(Path(directory) / "follower", genesis=genesis))
            try:
                for height in range(1, node.store.head().height + 1):
                    block = node.store.block(height)
                    tip = follower.store.head()
                    began = time.thread_time()
                    result = apply_block(follower.store, tip, CHAIN_ID, genesis.params, block,
                                         follower.mempool.signature_known_valid)
                    middle = time.thread_time()
                    follower.store.commit_block(result, node.store.commit(height))
                    ended = time.thread_time()
                    follower.after_block(result)
                    seconds["sync: apply block (decode, signatures, execute)"] += middle - began
                    seconds["sync: commit block"] += ended - middle
                    seconds["sync: after block"] += time.thread_time() - ended
                await asyncio.sleep(0)
            finally:
                follower.store.close()
                follower.admission.close()
            if profiler is not None:
                profiler.disable()
        finally:
            node.store.close()
            node.admission.close()
    count = len(signed)
    stages = {name: round(1e6 * value / count, 1) for name, value in seconds.items()}
    authority = sum(value for name, value in stages.items() if not name.startswith("sync"))
    syncing = sum(value for name, value in stages.items() if name.startswith("sync"))
    return {"transactions": count, "block_txs": block_txs, "microseconds_per_tx": stages,
            "authority_microseconds_per_tx": round(authority, 1),
            "sync_microseconds_per_tx": round(syncing, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--txs", type=int, default=20_000)
    parser.add_argument("--block", type=int, default=5_000)
    parser.add_argument("--profile", action="store_true", help="print the top functions (cProfile)")
    arguments = parser.parse_args()
    profiler = cProfile.Profile() if arguments.profile else None
    figures = asyncio.run(run(arguments.txs, arguments.block, profiler))
    figures["ed25519_verifications_per_second"] = round(ed25519_rate())
    print(json.dumps(figures, indent=2))
    if profiler is not None:
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(35)
        print(text.getvalue())
    output = Path(__file__).resolve().parent / "results"
    output.mkdir(exist_ok=True)
    (output / "pipeline.json").write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()

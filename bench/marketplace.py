"""Benchmark: order transitions per second through `build_block`, beside the Ed25519 yardstick.

On one core, without signature checks and without storage, it runs a realistic order
mix through the state machine, one block per phase: `order_place` → `order_accept` →
`order_ship` → `shipment_update` (delivered) → `order_confirm` → `review_submit`.
Only `build_block` is timed (execution, deadlines scan, net changes and roots); signing
happens beforehand. Prints the rates and writes bench/results/marketplace.json.

    .venv/bin/python bench/marketplace.py [--orders 5000] [--shops 20] [--buyers 200]

The target is ≥ 5,000 order transitions per second.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

from state_machine import ed25519_rate

from marketplace_tx.chain.genesis import Genesis, GenesisAccount
from marketplace_tx.chain.params import Params
from marketplace_tx.chain.transaction import Transaction, sign_transaction
from marketplace_tx.primitives.crypto import KeyPair
from marketplace_tx.rules.state import MemoryStateReader
from marketplace_tx.rules.state_transition import ChainTip, build_block, genesis_changes

CHAIN_ID = "bench-marketplace"
TARGET = 5_000
PRICE = 1_000


def key(label: str, index: int) -> KeyPair:
    """A deterministic key per role and index."""
    return KeyPair.from_seed(f"{label}-{index}".encode().ljust(32, b"\x00")[:32])


class Bench:
    """A chain in memory and the nonces of every signer."""

    def __init__(self, shops: int, buyers: int, orders: int) -> None:
        self.proposer = key("proposer", 0)
        self.merchants = [key("merchant", index) for index in range(shops)]
        self.buyers = [key("buyer", index) for index in range(buyers)]
        self.carrier, self.arbiter = key("carrier", 0), key("arbiter", 0)
        self.params = Params(max_block_txs=10 * orders + 10_000, max_block_bytes=512 * 1024 * 1024)
        accounts = [GenesisAccount(who.address, 10**12, ("merchant",)) for who in self.merchants]
        accounts += [GenesisAccount(who.address, 10**12) for who in self.buyers]
        accounts += [GenesisAccount(self.carrier.address, 10**9, ("carrier",)),
                     GenesisAccount(self.arbiter.address, 10**9, ("arbiter",))]
        genesis = Genesis(CHAIN_ID, 0, (self.proposer.address,),
                          tuple(sorted(accounts, key=lambda account: account.address)), self.params)
        self.tip, changes = genesis_changes(genesis)
        self.base = MemoryStateReader(changes)
        self.nonces: dict[bytes, int] = {}
        self.time = 0

    def sign(self, who: KeyPair, tx_type: str, payload: dict[str, Any]) -> Transaction:
        nonce = self.nonces.get(who.address, 0)
        self.nonces[who.address] = nonce + 1
        return sign_transaction(who, CHAIN_ID, tx_type, payload, nonce, 10)

    def block(self, txs: list[Transaction]) -> float:
        """Build one block of `txs`, commit it, and return the seconds `build_block` took."""
        self.time += 1_000
        start = time.perf_counter()
        result = build_block(self.base, self.tip, CHAIN_ID, self.params, self.proposer.address, self.time, txs, None)
        elapsed = time.perf_counter() - start
        assert len(result.transactions) == len(txs), "every transaction should be included"
        failed = [receipt for receipt in result.receipts if not receipt.ok]
        assert not failed, f"{len(failed)} failed, e.g. {failed[0].code}: {failed[0].message}"
        self.base.apply(result.changes, result.tree)
        header = result.block.header
        self.tip = ChainTip(header.height, header.hash, header.time, header.state_root)
        return elapsed


def run(orders: int, shops: int, buyers: int) -> dict[str, Any]:
    bench = Bench(shops, buyers, orders)
    shop_txs = [bench.sign(merchant, "shop_create", {"name": f"shop {index}", "points_bps": 100,
                                                     "max_redeem_bps": 1000, "arbiters": [bench.arbiter.address]})
                for index, merchant in enumerate(bench.merchants)]
    bench.block(shop_txs)
    listing_txs = [bench.sign(merchant, "listing_create", {"shop_id": shop_tx.hash, "title": "tea", "price": PRICE,
                                                           "stock": orders})
                   for merchant, shop_tx in zip(bench.merchants, shop_txs, strict=True)]
    bench.block(listing_txs)

    placed = []
    for index in range(orders):
        listing = listing_txs[index % shops]
        placed.append((bench.merchants[index % shops], bench.buyers[index % buyers], bench.sign(
            bench.buyers[index % buyers], "order_place",
            {"listing_id": listing.hash, "quantity": 1, "max_unit_price": PRICE, "shipping": b"\x00" * 80,
             "arbiter": bench.arbiter.address})))
    phases: list[tuple[str, list[Transaction]]] = [("order_place", [tx for _, _, tx in placed])]

    def phase(name: str, make: Any) -> None:
        phases.append((name, [make(merchant, buyer, tx.hash) for merchant, buyer, tx in placed]))

    phase("order_accept", lambda merchant, buyer, order_id: bench.sign(merchant, "order_accept",
                                                                       {"order_id": order_id}))
    phase("order_ship", lambda merchant, buyer, order_id: bench.sign(
        merchant, "order_ship", {"order_id": order_id, "carrier": bench.carrier.address, "tracking": "SF0001"}))
    phase("shipment_update", lambda merchant, buyer, order_id: bench.sign(
        bench.carrier, "shipment_update", {"order_id": order_id, "status": "delivered", "location": "door"}))
    phase("order_confirm", lambda merchant, buyer, order_id: bench.sign(buyer, "order_confirm",
                                                                        {"order_id": order_id}))
    phase("review_submit", lambda merchant, buyer, order_id: bench.sign(
        buyer, "review_submit", {"order_id": order_id, "rating": 5, "text": "fragrant"}))

    seconds = {name: bench.block(txs) for name, txs in phases}
    total = sum(seconds.values())
    transitions = orders * len(phases)
    return {
        "orders": orders,
        "shops": shops,
        "buyers": buyers,
        "order_transitions": transitions,
        "order_transitions_per_second": round(transitions / total),
        "per_type_per_second": {name: round(orders / elapsed) for name, elapsed in seconds.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=5000)
    parser.add_argument("--shops", type=int, default=20)
    parser.add_argument("--buyers", type=int, default=200)
    arguments = parser.parse_args()
    measured = run(arguments.orders, arguments.shops, arguments.buyers)
    yardstick = ed25519_rate()
    figures = {
        "machine": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "ed25519_verifications_per_second": round(yardstick),
        **measured,
        "order_transitions_vs_ed25519": round(measured["order_transitions_per_second"] / yardstick, 3),
        "target_order_transitions_per_second": TARGET,
        "meets_target": measured["order_transitions_per_second"] >= TARGET,
    }
    width = max(len(name) for name in figures)
    for name, value in figures.items():
        if isinstance(value, dict):
            for inner, rate in value.items():
                print(f"{(name + '.' + inner).ljust(width + 16)}  {rate}")
        else:
            print(f"{name.ljust(width + 16)}  {value}")
    output = Path(__file__).resolve().parent / "results"
    output.mkdir(exist_ok=True)
    (output / "marketplace.json").write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()

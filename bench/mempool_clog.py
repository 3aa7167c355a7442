"""Benchmark: mempool admission, eviction and block filling at a full pool of many senders,
beside the Ed25519 yardstick (issue 13, attack 5; docs/performance.md).

    .venv/bin/python bench/mempool_clog.py [--senders 20000]

A pool of `--senders` senders, one ready transaction each, is full (`max_transactions`
= senders). Measured on one core, signatures already known valid (admission's stateful
part only, what runs on the event loop):

- `refused_us`: a ready newcomer paying no more than the cheapest (`mempool_full`);
- `refused_future_us`: a future newcomer (nonce above a gap) paying 1,000× more: it
  never evicts a ready transaction (`mempool_full`);
- `evicting_us`: a newcomer paying more, which evicts the cheapest tail;
- `screen_us`: `Mempool.screen`, the dry run gossip uses before a signature check;
- `ready_ms`: `ready()` over the whole pool, by fee rate across senders (block building).

Before issue 13 a refused admission rebuilt every sender's list: 21 ms at 20,000 senders.
Writes bench/results/mempool_clog.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

from state_machine import ed25519_rate

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(1, str(ROOT))

from marketplace_tx.chain.params import Params  # noqa: E402
from marketplace_tx.chain.transaction import Transaction, sign_transaction  # noqa: E402
from marketplace_tx.primitives.crypto import KeyPair  # noqa: E402
from marketplace_tx.primitives.errors import AdmissionError  # noqa: E402
from marketplace_tx.rules.accounts import Account  # noqa: E402
from marketplace_tx.rules.admission import Verdict  # noqa: E402
from mempool.pool import Mempool, MempoolLimits  # noqa: E402

CHAIN_ID = "bench-mempool"
RICH = Account(balance=10**15)
TRIES = 2_000


def signed(index: int, nonce: int, fee: int) -> Transaction:
    key = KeyPair.from_seed(index.to_bytes(8, "big") + bytes(24))
    return sign_transaction(key, CHAIN_ID, "transfer", {"to": bytes(32), "amount": 1}, nonce, fee)


def known(tx: Transaction) -> Verdict:
    """A verdict whose signature is known valid: admission's stateful part alone."""
    return Verdict(tx, True, False)


def per_call_us(calls: list[Verdict], action) -> float:
    started = time.perf_counter()
    for verdict in calls:
        action(verdict)
    return (time.perf_counter() - started) / len(calls) * 1e6


def run(senders: int) -> dict[str, float]:
    pool = Mempool(CHAIN_ID, Params(), lambda address: RICH, lambda tx_hash: False,
                   MempoolLimits(max_transactions=senders))
    for index in range(senders):
        pool.admit(known(signed(index, 0, 10 + index % 50)))
    refused = [known(signed(senders + index, 0, 10)) for index in range(TRIES)]
    future = [known(signed(senders + index, 1, 10_000)) for index in range(TRIES)]
    richer = [known(signed(2 * senders + index, 0, 1_000)) for index in range(TRIES)]

    def refuse(verdict: Verdict) -> None:
        try:
            pool.admit(verdict)
        except AdmissionError:
            return
        raise AssertionError("a newcomer that should be refused was admitted")

    figures = {
        "senders": senders,
        "refused_us": per_call_us(refused, refuse),
        "refused_future_us": per_call_us(future, refuse),
        "screen_us": per_call_us(refused, lambda verdict: refuse_screen(pool, verdict)),
        "evicting_us": per_call_us(richer, pool.admit),
    }
    started = time.perf_counter()
    count = sum(1 for _ in pool.ready())
    figures["ready_ms"] = (time.perf_counter() - started) * 1000
    assert count == senders and len(pool) == senders
    return {name: round(value, 2) if isinstance(value, float) else value for name, value in figures.items()}


def refuse_screen(pool: Mempool, verdict: Verdict) -> None:
    try:
        pool.screen(verdict.transaction)
    except AdmissionError:
        return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--senders", type=int, default=20_000)
    arguments = parser.parse_args()
    measured = run(arguments.senders)
    yardstick = ed25519_rate()
    figures = {
        "machine": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "ed25519_verifications_per_second": round(yardstick),
        "ed25519_us": round(1e6 / yardstick, 2),
        **measured,
        "refused_vs_one_ed25519": round(measured["refused_us"] * yardstick / 1e6, 3),
    }
    width = max(len(name) for name in figures)
    for name, value in figures.items():
        print(f"{name.ljust(width + 2)}  {value}")
    output = Path(__file__).resolve().parent / "results"
    output.mkdir(exist_ok=True)
    (output / "mempool_clog.json").write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()

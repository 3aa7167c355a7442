"""Benchmark: admission prechecks per second in worker threads or worker processes, with
and without a busy Python thread beside them (the GIL "convoy" effect).

A precheck is `check_stateless` with the signature: decoding and schema checks hold the
GIL, libsodium's verification releases it. A worker thread that gave the GIL away must
get it back, and while another thread runs Python code that takes up to the switch
interval (`sys.setswitchinterval`, 5 ms by default) each time. This is what limits a
node whose event loop or block builder is busy while signatures are checked.

    .venv/bin/python bench/gil_convoy.py [--txs 2000]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor

from marketplace_tx.chain.params import Params
from marketplace_tx.chain.transaction import sign_transaction
from marketplace_tx.primitives.crypto import KeyPair
from marketplace_tx.primitives.errors import AdmissionError
from marketplace_tx.rules.admission import check_stateless

CHAIN_ID = "bench-convoy"
PARAMS = Params()


def check_chunk(chunk: list[bytes]) -> list[str | None]:
    """Every stateless check with the signature; the error code or None per transaction."""
    outcomes: list[str | None] = []
    for raw in chunk:
        try:
            check_stateless(raw, CHAIN_ID, PARAMS)
            outcomes.append(None)
        except AdmissionError as error:
            outcomes.append(error.code)
    return outcomes


def rate(executor: Executor, chunks: list[list[bytes]], busy_threads: int, switch_interval: float,
         after: Callable[[], None] = lambda: None) -> float:
    stop = threading.Event()

    def busy() -> None:
        total = 0
        while not stop.is_set():
            for index in range(1000):
                total += index

    previous = sys.getswitchinterval()
    sys.setswitchinterval(switch_interval)
    threads = [threading.Thread(target=busy) for _ in range(busy_threads)]
    for thread in threads:
        thread.start()
    try:
        began = time.perf_counter()
        list(executor.map(check_chunk, chunks))
        after()
        return sum(len(chunk) for chunk in chunks) / (time.perf_counter() - began)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        sys.setswitchinterval(previous)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--txs", type=int, default=2000)
    arguments = parser.parse_args()
    keys = [KeyPair.from_seed(bytes([index]) * 32) for index in range(1, 41)]
    raws = [sign_transaction(key, CHAIN_ID, "transfer", {"to": key.address, "amount": 1}, nonce, 10).raw
            for nonce in range(arguments.txs // len(keys)) for key in keys]
    chunks = [raws[start:start + 64] for start in range(0, len(raws), 64)]
    figures: dict[str, float] = {}
    with ThreadPoolExecutor(2) as threads:
        for busy, interval in ((0, 0.005), (1, 0.005), (1, 0.001), (1, 0.0002)):
            figures[f"2 threads, {busy} busy thread, switch {interval * 1000:g} ms"] = round(
                rate(threads, chunks, busy, interval))
    context = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(2, mp_context=context) as processes:
        list(processes.map(check_chunk, chunks[:2]))  # start the workers

        def decode_again() -> None:  # the parent still needs the decoded transactions
            for raw in raws:
                check_stateless(raw, CHAIN_ID, PARAMS, verify_signature=False)

        for busy in (0, 1):
            figures[f"2 processes + decode in parent, {busy} busy thread"] = round(
                rate(processes, chunks, busy, 0.005, decode_again))
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()

"""Run as a script by tests/unit/node/test_pruning.py: prune the store at PATH to its last
KEEP blocks in batches of BATCH blocks, and SIGKILL this process either right after batch
AFTER is written (`between`) or AFTER milliseconds into pruning, wherever it is (`anywhere`).

    python -m tests.unit.node.pruning_kill PATH KEEP BATCH between|anywhere AFTER
"""

from __future__ import annotations

import os
import signal
import sys
import threading

from node.pruning import Pruner
from node.storage import ChainStore


def kill_now() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def main(path: str, keep: str, batch: str, where: str, after: str) -> None:
    store = ChainStore(path)
    written: list[int] = []

    def between(oldest: int) -> None:
        written.append(oldest)
        if where == "between" and len(written) == int(after):
            kill_now()

    if where == "anywhere":
        threading.Timer(int(after) / 1000, kill_now).start()
    Pruner(store, int(keep), lambda: None, batch_blocks=int(batch), batch_keys=40, between_batches=between).prune()
    kill_now()  # pruning ended before the kill: die the same way


if __name__ == "__main__":
    main(*sys.argv[1:])

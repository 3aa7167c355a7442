"""Block production by a single authority: the n = 1 case of consensus (PROTOCOL R25, R26, R29).

The producer sleeps until the mempool holds a ready transaction or the earliest order
deadline falls due (R29: an idle chain makes no blocks and does no work; a due
deadline makes a block even with no transaction), builds the next block from the ready
transactions, signs its precommit (R26) and, since one validator is the whole set,
that precommit is the block's commit (R24). Block and commit are written in one
synced batch before anything is announced, so a signature never leaves the node
for a block that is not stored.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from consensus.commit import sign_commit
from marketplace_tx.chain import BlockResult, build_block
from marketplace_tx.crypto import KeyPair
from marketplace_tx.deadlines import next_deadline
from marketplace_tx.genesis import Genesis
from marketplace_tx.state import State
from mempool.pool import Mempool
from node.storage import ChainStore

log = logging.getLogger("marketchain.producer")


def wall_clock_ms() -> int:
    """The node's clock in ms since the Unix epoch."""
    return int(time.time() * 1000)


class BlockProducer:
    """Makes blocks when transactions are waiting, and only then."""

    def __init__(
        self,
        store: ChainStore,
        mempool: Mempool,
        genesis: Genesis,
        key: KeyPair,
        on_block: Callable[[BlockResult], None],
        clock: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self.store = store
        """Where final blocks go."""
        self.mempool = mempool
        """Where transactions wait."""
        self.genesis = genesis
        """The chain's genesis (chain id, params)."""
        self.key = key
        """The authority's signing key."""
        self.on_block = on_block
        """Called on the event loop after each block is stored."""
        self.clock = clock
        """Source of block time."""
        self._wake = asyncio.Event()
        self._stopping = False

    def notify(self) -> None:
        """Tell the producer that transactions arrived."""
        self._wake.set()

    def stop(self) -> None:
        """Finish the block in progress, then stop."""
        self._stopping = True
        self._wake.set()

    def seconds_until_deadline(self) -> float | None:
        """Seconds until the earliest order deadline (≤ 0: due now), or None if none (R29)."""
        deadline = next_deadline(State(self.store))
        return None if deadline is None else (deadline - self.clock()) / 1000

    async def run(self) -> None:
        """Produce blocks until `stop`: when transactions are ready or a deadline is due (R29)."""
        stalled = False
        while not self._stopping:
            wait = self.seconds_until_deadline()
            due = wait is not None and wait <= 0
            if due or (self.mempool.has_ready() and not stalled):
                stalled = not await self.produce_block()
                continue
            try:
                await asyncio.wait_for(self._wake.wait(), wait)
            except TimeoutError:
                pass
            self._wake.clear()
            stalled = False

    async def produce_block(self) -> bool:
        """Build, seal and store one block; False if nothing was includable."""
        tip = self.store.head()
        assert tip is not None
        candidates = list(self.mempool.ready())
        time_ms = max(self.clock(), tip.time + 1)
        last_commit = self.store.commit(tip.height) if tip.height > 0 else None
        params = self.genesis.params
        result = await asyncio.to_thread(
            build_block,
            self.store,
            tip,
            self.genesis.chain_id,
            params,
            self.key.address,
            time_ms,
            candidates,
            last_commit,
        )
        if not result.transactions and not result.block_events:
            self.mempool.recheck()
            return False
        commit = sign_commit([self.key], self.genesis.chain_id, result.block.header.height, 0, result.block.hash)
        await asyncio.to_thread(self.store.commit_block, result, commit)
        self.mempool.remove_committed(list(result.transactions))
        log.info(
            "block %d %s txs=%d deadlines=%d",
            result.block.header.height,
            result.block.hash.hex()[:16],
            len(result.transactions),
            len(result.block_events),
        )
        self.on_block(result)
        return True

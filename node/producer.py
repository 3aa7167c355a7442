"""Block production by a single authority: the n = 1 case of consensus (PROTOCOL R25, R26, R29).

The producer sleeps until the mempool holds a ready transaction (R29: an idle chain
makes no blocks and does no work), builds the next block from the ready
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
from marketplace_tx.genesis import Genesis
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

    async def run(self) -> None:
        """Produce blocks until `stop`."""
        while not self._stopping:
            await self._wake.wait()
            self._wake.clear()
            while not self._stopping and self.mempool.has_ready():
                produced = await self.produce_block()
                if not produced:
                    break

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
        if not result.transactions:
            self.mempool.recheck()
            return False
        commit = sign_commit([self.key], self.genesis.chain_id, result.block.header.height, 0, result.block.hash)
        await asyncio.to_thread(self.store.commit_block, result, commit)
        self.mempool.remove_committed(list(result.transactions))
        log.info(
            "block %d %s txs=%d",
            result.block.header.height,
            result.block.hash.hex()[:16],
            len(result.transactions),
        )
        self.on_block(result)
        return True

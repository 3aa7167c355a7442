"""The node: storage, mempool, block production and the HTTP API, wired together."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import signal
from importlib import metadata

from aiohttp import web

from marketplace_tx.accounts import Account, load_account
from marketplace_tx.admission import check_stateless
from marketplace_tx.chain import BlockResult
from marketplace_tx.state import State
from marketplace_tx.transaction import Transaction
from mempool.pool import Mempool, MempoolLimits
from node.home import Home
from node.http_api import build_app
from node.producer import BlockProducer, wall_clock_ms
from node.storage import ChainStore

log = logging.getLogger("marketchain.node")


def package_version() -> str:
    """The installed marketchain version."""
    try:
        return metadata.version("marketchain")
    except metadata.PackageNotFoundError:
        return "0.0.0+unknown"


class Node:
    """A running marketchain node."""

    def __init__(self, home: Home) -> None:
        self.home = home
        """The node's home directory, config, genesis and keys."""
        self.config = home.config
        """The effective configuration."""
        self.genesis = home.genesis
        """The chain's genesis."""
        self.node_key = home.node_key
        """The node's identity key."""
        self.version = package_version()
        """The software version reported by `/status`."""
        self.store = ChainStore(home.data_directory / "chain.db")
        """The LevelDB database."""
        self.store.initialize(self.genesis)
        self.mempool = Mempool(
            self.genesis.chain_id,
            self.genesis.params,
            self.committed_account,
            lambda tx_hash: self.store.tx_location(tx_hash) is not None,
            MempoolLimits(home.config.mempool.max_transactions, home.config.mempool.max_bytes),
        )
        """Transactions waiting for a block."""
        key = home.validator_key
        self.validator_address = (
            key.address if key is not None and key.address in self.genesis.validators else None
        )
        """This node's validator address, if its key is in the set."""
        self.producer = (
            BlockProducer(self.store, self.mempool, self.genesis, key, self._on_block)
            if key is not None and self.validator_address is not None
            else None
        )
        """The block producer, on the authority's node."""
        self.new_block = asyncio.Condition()
        """Notified after every stored block."""
        self._runner: web.AppRunner | None = None
        self._producer_task: asyncio.Task[None] | None = None

    def committed_account(self, address: bytes) -> Account:
        """An account as of the last final block."""
        return load_account(State(self.store), address)

    @staticmethod
    def hash_of(raw: bytes) -> bytes:
        """A transaction's hash (R9)."""
        return hashlib.sha256(raw).digest()

    def decode_committed(self, raw: bytes) -> Transaction:
        """Decode a transaction already final in a block (its checks passed before)."""
        return check_stateless(raw, self.genesis.chain_id, self.genesis.params, verify_signature=False)

    def submit(self, raw: bytes) -> Transaction:
        """Admit a transaction to the mempool (R10) and wake the producer."""
        tx = self.mempool.add(raw, wall_clock_ms())
        if self.producer is not None:
            self.producer.notify()
        return tx

    def _on_block(self, result: BlockResult) -> None:
        async def announce() -> None:
            async with self.new_block:
                self.new_block.notify_all()

        asyncio.get_running_loop().create_task(announce())

    async def start(self) -> None:
        """Open the HTTP API and start producing blocks."""
        app = build_app(self)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.http.host, self.config.http.port, reuse_address=True)
        await site.start()
        if self.producer is not None:
            self._producer_task = asyncio.create_task(self.producer.run())
            if self.mempool.has_ready():
                self.producer.notify()
        tip = self.store.head()
        assert tip is not None
        log.info(
            "node %s serving http://%s:%d chain=%s height=%d validator=%s",
            self.config.moniker,
            self.config.http.host,
            self.config.http.port,
            self.genesis.chain_id,
            tip.height,
            self.validator_address.hex() if self.validator_address else "no",
        )

    async def stop(self) -> None:
        """Stop serving, let the block in progress finish, close the database."""
        if self._runner is not None:
            await self._runner.cleanup()
        if self.producer is not None and self._producer_task is not None:
            self.producer.stop()
            await self._producer_task
        self.store.close()
        log.info("node %s stopped", self.config.moniker)


async def run_node(home: Home) -> None:
    """Run a node until SIGTERM or SIGINT, then stop cleanly."""
    node = Node(home)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, stop.set)
    try:
        await node.start()
        await stop.wait()
        log.info("stopping")
    finally:
        await node.stop()

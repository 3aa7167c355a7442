"""Issue 15: pruning under load keeps disk bounded (R40, node/pruning.py).

A real `ChainStore` (LevelDB in a tmp dir) is fed real blocks of transfers among a fixed
set of accounts by a worker thread, exactly as a node stores them (`build_block` by the
state machine, `commit_block` with a commit sealed by the validator), while the `Pruner`
deletes old blocks in its background thread with `keep_blocks` and `keep_state` small.
The bytes of the LevelDB directory after 100,000 and after 200,000 transactions (same
accounts) differ by at most 10 %: disk grows with the state, not with history. The numbers
are printed (`pytest -s`).

Speed: signing 200,000 transactions would take minutes on a loaded 2-core machine, and a
node that already checked a signature skips it (`apply_block`'s `signature_known_valid`);
`build_block` never checks them. So the transactions carry a placeholder signature: every
other byte of every block, receipt, index entry and tree record is what a node stores.
"""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import msgpack
import pytest

from consensus.commit import sign_commit
from marketplace_tx.chain.genesis import Genesis, GenesisAccount
from marketplace_tx.chain.params import Params
from marketplace_tx.chain.transaction import Transaction, decode_transaction, unsigned_map
from marketplace_tx.primitives import codec
from marketplace_tx.primitives.crypto import KeyPair
from marketplace_tx.rules.state_transition import build_block
from node.pruning import Pruner
from node.storage import ChainStore

pytestmark = pytest.mark.integration

CHAIN_ID = "marketchain-pruning-disk"
ACCOUNTS = 1_000
"""The fixed set of accounts every transfer is between."""
BLOCK_TXS = 5_000
"""Transactions per block (genesis allows 10,000)."""
FIRST, SECOND = 100_000, 200_000
"""Transactions after which the database is measured."""
KEEP_BLOCKS, KEEP_STATE = 2, 1
MAX_GROWTH = 0.10
DEADLINE_S = 600.0
"""Generous: the machine is loaded."""
PLACEHOLDER_SIGNATURE = bytes(64)
FEE = Params().min_fee
VALIDATOR = KeyPair.from_seed(hashlib.sha256(b"test_pruning_disk/validator").digest())


def address(index: int) -> bytes:
    """The address of account `index` (no key is needed: signatures are placeholders)."""
    return hashlib.sha256(b"test_pruning_disk/account/%d" % index).digest()


def genesis() -> Genesis:
    balances = {address(index): 10**9 for index in range(ACCOUNTS)}
    balances[VALIDATOR.address] = 10**9
    accounts = tuple(GenesisAccount(owner, balances[owner]) for owner in sorted(balances))
    made = Genesis(CHAIN_ID, 1_700_000_000_000, (VALIDATOR.address,), accounts, Params())
    made.validate()
    return made


def transfer(sender: bytes, to: bytes, nonce: int) -> Transaction:
    """A transfer with a placeholder signature. Its canonical bytes (R1: keys sorted, shortest
    integers) come straight from msgpack, the fields in sorted order: `transfer_is_canonical`
    checks them against the codec and the decoder."""
    payload = {"amount": 1 + nonce % 97, "to": to}
    body = {"chain_id": CHAIN_ID, "fee": FEE, "nonce": nonce, "payload": payload, "sender": sender,
            "sig": PLACEHOLDER_SIGNATURE, "type": "transfer"}
    raw = msgpack.packb(body, use_bin_type=True)
    return Transaction(CHAIN_ID, FEE, nonce, payload, sender, "transfer", PLACEHOLDER_SIGNATURE, raw,
                       hashlib.sha256(raw).digest())


def test_transfer_is_canonical() -> None:
    made = transfer(address(1), address(2), 300)
    body = unsigned_map(CHAIN_ID, FEE, 300, {"amount": 1 + 300 % 97, "to": address(2)}, address(1), "transfer")
    assert made.raw == codec.encode({**body, "sig": PLACEHOLDER_SIGNATURE})
    assert decode_transaction(made.raw, len(made.raw)) == made


def directory_bytes(path: Path) -> int:
    return sum(item.stat().st_size for item in path.iterdir() if item.is_file())


class Load:
    """Blocks of transfers among the fixed accounts, stored by a worker thread."""

    def __init__(self, store: ChainStore, pruner: Pruner) -> None:
        self.store = store
        self.pruner = pruner
        self.nonces = [0] * ACCOUNTS
        self.sent = 0
        self.last_commit = None

    def blocks(self, transactions: int) -> None:
        """Store blocks until `transactions` more transactions are final."""
        target = self.sent + transactions
        while self.sent < target:
            candidates = []
            for _ in range(min(BLOCK_TXS, target - self.sent)):
                sender = self.sent % ACCOUNTS
                candidates.append(transfer(address(sender), address((sender * 7 + 1) % ACCOUNTS), self.nonces[sender]))
                self.nonces[sender] += 1
                self.sent += 1
            tip = self.store.head()
            assert tip is not None
            result = build_block(self.store, tip, CHAIN_ID, Params(), VALIDATOR.address, tip.time + 1_000,
                                 candidates, self.last_commit)
            assert len(result.transactions) == len(candidates) and all(receipt.ok for receipt in result.receipts)
            commit = sign_commit([VALIDATOR], CHAIN_ID, tip.height + 1, 0, result.block.hash)
            self.store.commit_block(result, commit)
            self.last_commit = commit
            self.pruner.after_block(tip.height + 1)


def run_in_worker(work: threading.Thread) -> None:
    work.start()
    work.join(DEADLINE_S)
    assert not work.is_alive(), "the load did not finish in time"


def test_pruning_under_load_keeps_disk_bounded(tmp_path: Path) -> None:
    path = tmp_path / "chain.db"
    store = ChainStore(path, write_buffer_bytes=4 * 1024 * 1024, keep_state=KEEP_STATE)
    pruner = Pruner(store, KEEP_BLOCKS, floor=lambda: None, compact_after_keys=100_000)
    try:
        store.initialize(genesis())
        load = Load(store, pruner)
        failures: list[BaseException] = []

        def feed(transactions: int) -> threading.Thread:
            def body() -> None:
                try:
                    load.blocks(transactions)
                except BaseException as error:  # reported by the main thread
                    failures.append(error)
            return threading.Thread(target=body, name="load")

        def measured() -> tuple[int, int, int]:
            """Bytes on disk as the load left them, then once LevelDB dropped what was deleted
            or overwritten (a full compaction: the live data), and the oldest block kept."""
            deadline = time.monotonic() + DEADLINE_S
            head = store.head()
            assert head is not None
            while store.oldest_block_height() != head.height - KEEP_BLOCKS + 1:
                assert time.monotonic() < deadline, "the pruner did not catch up"
                time.sleep(0.05)
            raw = directory_bytes(path)
            store.db.compact_range()
            return raw, directory_bytes(path), store.oldest_block_height()

        pruner.start()
        started = time.monotonic()
        run_in_worker(feed(FIRST))
        assert not failures, failures
        first_raw, first_bytes, first_oldest = measured()
        run_in_worker(feed(SECOND - FIRST))
        assert not failures, failures
        second_raw, second_bytes, second_oldest = measured()
        elapsed = time.monotonic() - started
    finally:
        pruner.stop()
        store.close()
    growth = second_bytes / first_bytes - 1
    print(f"\npruning disk: {FIRST:,} txs -> {first_bytes:,} bytes live, {first_raw:,} on disk (oldest block "
          f"{first_oldest}); {SECOND:,} txs -> {second_bytes:,} bytes live, {second_raw:,} on disk (oldest block "
          f"{second_oldest}); growth {growth:+.1%} live, {second_raw / first_raw - 1:+.1%} on disk; "
          f"{ACCOUNTS:,} accounts, keep_blocks {KEEP_BLOCKS}, keep_state {KEEP_STATE}, "
          f"{pruner.batches_written} batches, {elapsed:.1f} s")
    assert second_oldest > first_oldest > 1
    assert growth <= MAX_GROWTH, f"disk grew {growth:.1%} from {FIRST:,} to {SECOND:,} transactions"

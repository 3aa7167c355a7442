"""Crash consistency of ChainStore: SIGKILL a block writer at random moments, then check.

node/storage.py writes each block in one atomic, synced LevelDB batch, so whenever
the writer dies: every block it reported committed is there, at most the one block
it was writing beyond that, never half a block, and the stored blocks replayed from
genesis reproduce the head's state root and state exactly. The state tree (R35) is in
the same batch: after every kill its root is the head's state_root and R35's reference
root of the stored state, and proofs at the head and at the oldest kept height verify. The writer
(tests/crash_writer.py) is restarted on the same database after each kill and
must resume from the head.

The kill schedule comes from a seeded RNG; the seed is printed (run with -s) and
can be replayed with CRASH_SEED=<seed>.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import node.storage as storage
from consensus.commit import verify_commit
from marketplace_tx.chain.genesis import Genesis
from marketplace_tx.primitives import codec
from marketplace_tx.primitives.sparse_merkle import subtree_root, verify_state_proof
from marketplace_tx.rules.state_keys import ACCOUNT
from marketplace_tx.rules.state_transition import ChainTip, apply_block, genesis_changes
from marketplace_tx.rules.state_tree import tree_root
from node.state_history import oldest_provable_height, prove_state
from node.storage import ChainStore, TxLocation
from tests.paths import REPO_ROOT

WRITER = Path(__file__).with_name("crash_writer.py")
PROJECT_ROOT = REPO_ROOT
_spec = importlib.util.spec_from_file_location("crash_writer", WRITER)
assert _spec is not None and _spec.loader is not None
crash_writer = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(crash_writer)
"""The writer script as a module, for the genesis it builds (whatever pytest's import mode)."""
MIN_ITERATIONS = 15
MAX_ITERATIONS = 25
TIME_BUDGET_S = 40.0
"""Kill cycles stop after MAX_ITERATIONS, or after this long once MIN_ITERATIONS ran."""
LINE_DEADLINE_S = 60.0
"""Generous: how long the writer may take to print its next line."""
MAX_COMMITS_BEFORE_KILL = 8
MAX_KILL_DELAY_S = 0.08
"""About two blocks' worth of building and writing."""
KEEP_STATE = 4
"""Small, so that most batches also delete an undo record (R40)."""


def writer_config(seed: int) -> dict[str, Any]:
    def seed_hex(name: str) -> str:
        return hashlib.sha256(f"crash-writer/{name}".encode()).hexdigest()

    return {
        "chain_id": "marketchain-crash-test",
        "genesis_time": 1_700_000_000_000,
        "validator_seed": seed_hex("validator"),
        "account_seeds": [seed_hex(f"user-{index}") for index in range(24)],
        "balance": 10**12,
        "validator_balance": 10**9,
        "min_txs": 50,
        "max_txs": 200,
        "rng_seed": seed,
        "keep_state": KEEP_STATE,
    }


class Writer:
    """A running crash_writer.py whose stdout lines arrive on a queue (None at EOF)."""

    def __init__(self, db_path: Path, config_path: Path, stderr_path: Path) -> None:
        self.stderr_path = stderr_path
        with stderr_path.open("ab") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, str(WRITER), str(db_path), str(config_path)],
                stdout=subprocess.PIPE,
                stderr=stderr,
                cwd=PROJECT_ROOT,
                text=True,
            )
        self.lines: queue.Queue[tuple[float, str] | None] = queue.Queue()
        self.read: list[str] = []
        """Every line read so far."""
        self.arrivals: list[tuple[str, float]] = []
        """The first word of each line read so far and when it arrived (time.monotonic)."""
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put((time.monotonic(), line.rstrip("\n")))
        self.lines.put(None)

    def next_line(self) -> str:
        """The writer's next line; fails the test if it exits or stays silent too long."""
        try:
            item = self.lines.get(timeout=LINE_DEADLINE_S)
        except queue.Empty:
            pytest.fail(f"the writer printed nothing for {LINE_DEADLINE_S} s{self._stderr()}")
        if item is None:
            self.process.wait(timeout=LINE_DEADLINE_S)
            pytest.fail(f"the writer exited with {self.process.returncode}{self._stderr()}")
        arrival, line = item
        self.read.append(line)
        self.arrivals.append((line.split(" ", 1)[0], arrival))
        return line

    def read_until(self, word: str) -> float:
        """Read lines up to and including the next one starting with `word`; when it arrived."""
        while not self.next_line().startswith(word + " "):
            pass
        return self.arrivals[-1][1]

    def kill(self) -> list[str]:
        """SIGKILL the writer; return the lines it printed that were not read yet."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=LINE_DEADLINE_S)
        self.reader.join(timeout=LINE_DEADLINE_S)
        assert not self.reader.is_alive(), "the writer's stdout never closed"
        remaining = []
        while (item := self.lines.get_nowait()) is not None:
            remaining.append(item[1])
        assert self.process.returncode == -signal.SIGKILL, (
            f"the writer ended with {self.process.returncode} before the kill{self._stderr()}"
        )
        return remaining

    def _stderr(self) -> str:
        text = self.stderr_path.read_text(errors="replace")
        return f"; its stderr:\n{text[-4000:]}" if text else ""


def write_time(arrivals: list[tuple[str, float]]) -> float:
    """The writer's mean time from `writing` to `committed`: about one commit_block."""
    writes = [
        arrival - previous
        for (previous_word, previous), (word, arrival) in zip(arrivals, arrivals[1:], strict=False)
        if previous_word == "writing" and word == "committed"
    ]
    return sum(writes) / len(writes) if writes else 0.005


def wait_before_kill(rng: random.Random, writer: Writer) -> None:
    """Wait a random moment before the kill.

    Most often the writer is caught inside `commit_block`: wait for its next
    `writing` line, then a random part of (a bit more than) its measured write time.
    Otherwise any moment of its cycle, building or signing included.
    """
    if rng.random() < 0.6:
        write = write_time(writer.arrivals)
        announced = writer.read_until("writing")
        target = announced + rng.uniform(0, 1.3 * write)
        time.sleep(max(0.0, target - time.monotonic()))
    else:
        time.sleep(rng.uniform(0, MAX_KILL_DELAY_S))


@dataclass
class Report:
    """What the writer said before it died."""

    ready: tuple[int, bytes]
    """The head it started from: (height, block hash)."""
    committed: list[tuple[int, bytes]]
    """Blocks whose commit_block returned, in order."""
    writing: tuple[int, bytes] | None
    """The block it was writing (announced, not reported committed) when killed, if any."""

    @property
    def last(self) -> tuple[int, bytes]:
        """The last block known to be durable: the last committed, or the starting head."""
        return self.committed[-1] if self.committed else self.ready


def parse_line(line: str) -> tuple[str, int, bytes]:
    parts = line.split()
    assert len(parts) == 3 and parts[0] in ("ready", "writing", "committed"), f"writer said {line!r}"
    return parts[0], int(parts[1]), bytes.fromhex(parts[2])


def parse_report(lines: list[str]) -> Report:
    """Check the writer's lines follow `ready h`, (`writing h+1`, `committed h+1`)… and parse them."""
    word, height, block_hash = parse_line(lines[0])
    assert word == "ready", f"the writer's first line is {lines[0]!r}"
    report = Report((height, block_hash), [], None)
    for line in lines[1:]:
        word, height, block_hash = parse_line(line)
        assert height == report.last[0] + 1, f"the writer skipped a height: {line!r}"
        if word == "writing":
            assert report.writing is None, f"the writer announced two blocks: {line!r}"
            report.writing = (height, block_hash)
        else:
            assert word == "committed" and report.writing == (height, block_hash), line
            report.committed.append((height, block_hash))
            report.writing = None
    return report


@dataclass
class Replay:
    """A fresh store from the same genesis, fed the crashed store's blocks with apply_block."""

    store: ChainStore
    genesis: Genesis
    tip: ChainTip
    blocks: list[bytes] = field(default_factory=list)
    """The canonical bytes of every replayed block, blocks[h - 1] for height h."""

    @classmethod
    def start(cls, path: Path, genesis: Genesis) -> Replay:
        store = ChainStore(path, keep_state=KEEP_STATE)
        return cls(store, genesis, store.initialize(genesis))

    def catch_up(self, source: ChainStore, height: int) -> None:
        """Validate and execute the blocks of `source` up to `height`, committing each."""
        while self.tip.height < height:
            next_height = self.tip.height + 1
            block = source.block(next_height)
            commit = source.commit(next_height)
            assert block is not None and commit is not None, f"block or commit {next_height} missing"
            result = apply_block(self.store, self.tip, self.genesis.chain_id, self.genesis.params, block)
            self.tip = self.store.commit_block(result, commit)
            self.blocks.append(block.encode())


def prefixed(store: ChainStore, prefix: bytes) -> dict[bytes, bytes]:
    return dict(store.db.iterator(prefix=prefix))


def check_state_tree(store: ChainStore, genesis: Genesis, head: ChainTip) -> None:
    """The stored tree's root is the head's state_root and R35's root of the stored state
    (T(every entry, 0)); the head and the oldest kept height prove a key (R36)."""
    pairs = {key[len(storage.STATE):]: value for key, value in prefixed(store, storage.STATE).items()}
    assert tree_root(store) == head.state_root == subtree_root(pairs.items()), "the tree disagrees with the state"
    undo = sorted(int.from_bytes(key[len(storage.UNDO):], "big") for key in prefixed(store, storage.UNDO))
    assert undo == list(range(max(1, head.height - KEEP_STATE + 2), head.height + 1))
    key = min(key for key in pairs if key.startswith(ACCOUNT))
    for height in (head.height, oldest_provable_height(store)):
        proof, state_root = prove_state(store, key, height)
        if height == head.height:
            expected_root = head.state_root
        elif height == 0:
            expected_root = genesis_changes(genesis)[0].state_root
        else:
            expected_root = store.block(height).header.state_root  # type: ignore[union-attr]
        assert state_root == expected_root
        verify_state_proof(proof, key, height, expected_root)


def check_store(store: ChainStore, genesis: Genesis, replay: Replay) -> ChainTip:
    """Everything below the head is complete, nothing above it exists, and replay agrees."""
    head = store.head()
    assert head is not None
    previous_hash = genesis.hash
    tx_count = 0
    for height in range(1, head.height + 1):
        block = store.block(height)
        assert block is not None, f"block {height} below head {head.height} is missing"
        assert block.header.height == height and block.header.prev_hash == previous_hash
        commit = store.commit(height)
        assert commit is not None, f"commit {height} is missing"
        verify_commit(commit, genesis.chain_id, block.hash, height, genesis.validators)
        assert store.height_of_block(block.hash) == height
        for index, raw in enumerate(block.txs):
            assert store.tx_location(hashlib.sha256(raw).digest()) == TxLocation(height, index)
        assert len(store.receipts(height)) == len(block.txs) > 0
        previous_hash = block.hash
        tx_count += len(block.txs)
    assert head.block_hash == previous_hash
    above = head.height + 1
    assert store.block_bytes(above) is None and store.commit(above) is None
    assert store.db.get(storage.RECEIPTS + above.to_bytes(8, "big")) is None
    # no key of any block above the head, and exactly one index entry per block and tx
    for prefix in (storage.BLOCK, storage.COMMIT, storage.RECEIPTS):
        heights = sorted(int.from_bytes(key[1:], "big") for key in prefixed(store, prefix))
        assert heights == list(range(1, head.height + 1)), f"{prefix!r} keys are not exactly 1..head"
    assert len(prefixed(store, storage.BLOCK_HASH)) == head.height
    assert len(prefixed(store, storage.TX_INDEX)) == tx_count
    # conservation (R17): fees go to the validator, nothing is created or lost
    accounts = prefixed(store, storage.STATE + ACCOUNT)
    assert sum(codec.decode(value)["balance"] for value in accounts.values()) == genesis.total_supply()
    check_state_tree(store, genesis, head)

    # the stored blocks, replayed from genesis, give the same head, state and bytes
    replay.catch_up(store, head.height)
    assert replay.tip == head, "replay reached another head (state root)"
    assert replay.store.head() == head
    assert prefixed(replay.store, storage.STATE) == prefixed(store, storage.STATE)
    assert [store.block_bytes(height) for height in range(1, head.height + 1)] == replay.blocks
    assert dict(replay.store.db.iterator()) == dict(store.db.iterator())
    return head


@pytest.mark.timeout(240)
def test_sigkilled_writer_never_leaves_a_partial_block(tmp_path: Path) -> None:
    seed = int(os.environ.get("CRASH_SEED", random.SystemRandom().randrange(2**32)))
    print(f"\ncrash consistency seed {seed} (rerun with CRASH_SEED={seed})")
    rng = random.Random(seed)
    config = writer_config(seed)
    config_path = tmp_path / "writer.json"
    config_path.write_text(json.dumps(config))
    genesis = crash_writer.make_genesis(config)
    db_path = tmp_path / "chain"
    stderr_path = tmp_path / "writer.stderr"

    replay = Replay.start(tmp_path / "replay", genesis)
    expected_head = replay.tip  # the genesis tip: the writer initializes the store
    started = time.monotonic()
    iterations = killed_in_write = survived_write = 0
    try:
        while iterations < MAX_ITERATIONS and (
            iterations < MIN_ITERATIONS or time.monotonic() - started < TIME_BUDGET_S
        ):
            writer = Writer(db_path, config_path, stderr_path)
            try:
                writer.next_line()  # ready
                for _ in range(rng.randint(0, MAX_COMMITS_BEFORE_KILL)):
                    writer.read_until("committed")
                wait_before_kill(rng, writer)
            finally:
                late = writer.kill()
            # lines printed before the kill count too: those commits had returned
            report = parse_report(writer.read + late)
            assert report.ready == (expected_head.height, expected_head.block_hash), (
                f"the writer started from {report.ready[0]}, not from the head {expected_head.height}"
            )
            store = ChainStore(db_path, keep_state=KEEP_STATE)
            try:
                head = store.head()
                assert head is not None
                for height, block_hash in report.committed:
                    assert store.height_of_block(block_hash) == height, f"reported block {height} lost"
                if report.writing is None:
                    # killed outside commit_block: exactly the reported blocks are there
                    assert (head.height, head.block_hash) == report.last
                else:
                    # killed inside commit_block: all of that block, or nothing of it
                    killed_in_write += 1
                    assert (head.height, head.block_hash) in (report.last, report.writing), (
                        f"head {head.height}; last committed {report.last[0]}, "
                        f"writing {report.writing[0]}"
                    )
                    survived_write += head.height == report.writing[0]
                expected_head = check_store(store, genesis, replay)
            finally:
                store.close()
            iterations += 1

        # finally, every stored block replayed on a brand-new store from genesis
        final = Replay.start(tmp_path / "final-replay", genesis)
        crashed = ChainStore(db_path, keep_state=KEEP_STATE)
        try:
            final.catch_up(crashed, expected_head.height)
            assert final.tip == crashed.head() == expected_head
            assert dict(final.store.db.iterator()) == dict(crashed.db.iterator())
        finally:
            crashed.close()
            final.store.close()
    finally:
        replay.store.close()
    elapsed = time.monotonic() - started
    print(
        f"crash consistency: {iterations} kill cycles, head {expected_head.height}, "
        f"{killed_in_write} kills inside commit_block ({survived_write} of them kept the block), "
        f"{elapsed:.1f} s (seed {seed})"
    )
    assert iterations >= MIN_ITERATIONS
    assert expected_head.height > 0

"""Signature worker processes on real node processes (R10, R30; docs/performance.md).

- A large `POST /txs/batch` is checked in a worker process and answers, transaction by
  transaction and in order, exactly what the node's own threads answer for the same
  transactions sent alone (errors in R10's order, with their R12 codes).

- A full node that starts far behind verifies the signatures of fetched blocks in a
  worker process, ends with blocks identical to the validator's, and stops the worker
  once idle (no process left behind).
- A node killed with SIGKILL while its workers run does not leave them behind: each
  worker watches its parent and exits when the node is gone.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from marketplace_tx.chain.transaction import sign_transaction
from marketplace_tx.primitives import codec
from marketplace_tx.primitives.crypto import KeyPair
from node.config import MempoolConfig
from tests.e2e.harness.processes import pid_alive as _pid_alive
from tests.e2e.node_process import REPO_ROOT, NodeProcess, is_error_body
from tests.e2e.testnet_harness import Manifest, Testnet, wait_until

BLOCKS_BEHIND = 20
"""Blocks the full node must fetch: more than the sync window (16), so workers start."""


def children_of(pid: int) -> list[int]:
    """Live worker processes whose parent is `pid` (from /proc; multiprocessing's
    resource tracker, which lives as long as the node, is not a worker)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        try:
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z" and b"spawn_main" in command:
            found.append(int(entry.name))
    return found


def key(name: str) -> KeyPair:
    return KeyPair.from_seed(hashlib.sha256(b"test_worker_processes/" + name.encode()).digest())


def outcome(result: dict) -> str:
    """`admitted` or the error code of one answer."""
    return result["error"]["code"] if is_error_body(result) else "admitted"


def test_a_large_batch_checked_in_a_worker_answers_like_the_node_itself(tmp_path: Path) -> None:
    senders = [key(f"sender{index}") for index in range(4)]
    recipient = key("recipient")
    with NodeProcess(tmp_path / "node", fund={sender.address: 10_000_000 for sender in senders}) as node:
        chain_id = node.status()["chain_id"]

        def transfer(sender: KeyPair, nonce: int, fee: int = 10, chain: str = chain_id) -> bytes:
            return sign_transaction(sender, chain, "transfer", {"to": recipient.address, "amount": 7}, nonce, fee).raw

        committed = transfer(senders[3], 0)
        node.wait_for_tx(node.submit(committed))
        broken = bytearray(transfer(senders[2], 1))
        broken[broken.index(b"\xa3sig\xc4\x40") + 10] ^= 0x01
        special = {
            5: transfer(senders[0], 3, fee=1),  # fee below the minimum
            17: b"\x93garbage",  # not a transaction
            40: transfer(senders[1], 0, chain=chain_id + "-other"),
            41: bytes(broken),  # bad signature (nonce 1 of sender 2 is not sent otherwise)
            66: committed,  # final already: a duplicate, reported before anything else
            90: transfer(senders[3], 0),  # the same bytes again
            120: transfer(senders[0], 500),  # beyond the nonce window
        }
        batch, nonces = [], {sender.address: 0 for sender in senders[:3]}
        nonces[senders[3].address] = 1
        beyond_future_limit = []  # positions of sender 2's future transactions past the per-sender limit
        for position in range(200):
            if position in special:
                batch.append(special[position])
                continue
            sender = senders[position % 4]
            if sender is senders[2] and nonces[sender.address] == 1:
                nonces[sender.address] = 2  # its nonce 1 is the broken one: later ones wait behind it
            if sender is senders[2] and nonces[sender.address] >= 2 + MempoolConfig().max_future_per_sender:
                beyond_future_limit.append(position)
            batch.append(transfer(sender, nonces[sender.address]))
            nonces[sender.address] += 1
        status, body = node.post("/txs/batch", codec.encode(batch), "application/msgpack")
        assert status == 200, body
        answers = [outcome(result) for result in body["results"]]
        assert "started 1 signature worker process(es)" in node.log_path.read_text(), node.describe("workers used")
        assert answers[5] == "fee_too_low" and answers[17] == "malformed" and answers[40] == "wrong_chain"
        assert answers[41] == "bad_signature" and answers[66] == "duplicate" and answers[90] == "duplicate"
        assert answers[120] == "bad_nonce"
        # Issue 13: a sender holds at most `max_future_per_sender` transactions behind a gap.
        assert beyond_future_limit and all(answers[position] == "mempool_full" for position in beyond_future_limit)
        assert answers.count("admitted") == 200 - len(special) - len(beyond_future_limit)
        status, metrics = node.get("/metrics")
        text = metrics.decode() if isinstance(metrics, bytes) else str(metrics)
        assert status == 200 and "marketchain_signature_worker_processes 1.0" in text, text[-2000:]
        jobs = re.search(r"^marketchain_signature_worker_jobs_total (\S+)$", text, re.M)
        assert jobs is not None and float(jobs.group(1)) >= 1  # 200 transactions: one chunk of 250

    # The same transactions one at a time on a fresh node with the same genesis: the
    # node's own threads give the same answers in the same order.
    with NodeProcess(tmp_path / "again", fund={sender.address: 10_000_000 for sender in senders}) as again:
        assert again.status()["chain_id"] == chain_id
        again.wait_for_tx(again.submit(committed))
        alone = []
        for raw in batch:
            status, body = again.post("/txs", raw, "application/msgpack")
            alone.append("admitted" if status == 202 else body["error"]["code"])
        assert "signature worker" not in again.log_path.read_text()
        assert alone == answers


@pytest.fixture
def single_validator(tmp_path: Path) -> Iterator[Testnet]:
    net = Testnet(tmp_path / "net", Manifest(validators=1))
    try:
        yield net.start_all()
    finally:
        net.close()


def test_a_full_node_far_behind_syncs_with_a_worker_process_and_stops_it(single_validator: Testnet) -> None:
    net = single_validator
    while net.node(0).height() < BLOCKS_BEHIND:  # one block per final transfer
        net.wait_for_tx(net.transfer("faucet", "alice", 1_000 + net.node(0).height()))
    height = net.node(0).height()
    full = net.add_full_node()
    try:
        net.wait_identical_blocks([0, full.index], height=height)
        log = full.log_path.read_text()
        assert "started 1 signature worker process(es)" in log, net.describe("the full node used a worker")
        assert "checking in the node" not in log, net.describe("no worker failed")
        net.assert_conservation([full.index])
        # It follows the chain, and once idle its worker stops (IDLE_STOP_S) leaving no process.
        final = net.wait_for_tx(net.transfer("faucet", "bob", 4_321))  # final on the full node too
        net.wait_identical_blocks([0, full.index], height=final["height"])
        wait_until(
            lambda: "stopped the signature worker process(es)" in full.log_path.read_text(),
            net.timeout, lambda: net.describe("the worker stops once idle"),
        )
        assert full.pid is not None
        wait_until(lambda: not children_of(full.pid), net.timeout, lambda: net.describe("no worker left"))
    finally:
        net.stop(full.index)


WORKER_HOLDER = """
import asyncio, sys
from marketplace_tx.chain.params import Params
from node.signature_workers import SignatureWorkers

async def main():
    workers = SignatureWorkers(2)
    jobs = [workers.verify_block(b"not a block", Params()) for _ in range(4)]
    await asyncio.gather(*jobs)
    print("ready", flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


def test_workers_exit_when_their_node_is_killed(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", WORKER_HOLDER], cwd=REPO_ROOT, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"ready"
        workers: list[int] = []

        def started() -> bool:
            workers[:] = children_of(holder.pid)
            return len(workers) >= 2

        wait_until(started, 120, lambda: f"worker processes of {holder.pid}: {children_of(holder.pid)}")
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
        wait_until(
            lambda: not any(_pid_alive(pid) for pid in workers), 60,
            lambda: f"workers still alive after their node was killed: {[p for p in workers if _pid_alive(p)]}",
        )
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()

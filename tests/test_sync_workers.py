"""Block sync with signature worker processes, on real node processes (R30; docs/performance.md).

- A full node that starts far behind verifies the signatures of fetched blocks in a
  worker process, ends with blocks identical to the validator's, and stops the worker
  once it has caught up (no process left behind).
- A node killed with SIGKILL while its workers run does not leave them behind: each
  worker watches its parent and exits when the node is gone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.node_process import REPO_ROOT
from tests.testnet_harness import Manifest, Testnet, _pid_alive, wait_until

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
        assert "verifying in the node" not in log, net.describe("no worker failed")
        wait_until(
            lambda: "stopped the signature worker process(es)" in full.log_path.read_text(),
            net.timeout, lambda: net.describe("the worker stops after catching up"),
        )
        assert full.pid is not None
        wait_until(lambda: not children_of(full.pid), net.timeout, lambda: net.describe("no worker left"))
        net.assert_conservation([full.index])
        # It still follows the chain after the workers stopped.
        follow = net.transfer("faucet", "bob", 4_321)
        final = net.wait_for_tx(follow)  # final on the full node too, in the same block
        net.wait_identical_blocks([0, full.index], height=final["height"])
    finally:
        net.stop(full.index)


WORKER_HOLDER = """
import asyncio, sys
from node.signature_workers import SignatureWorkers

async def main():
    workers = SignatureWorkers(2, 4194304, 65536)
    jobs = [workers.verify_block(b"not a block") for _ in range(4)]
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

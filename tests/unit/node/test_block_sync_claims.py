"""Block sync does not believe a peer's claimed height until the peer proves it (issue 13; R30).

Two real LevelDB stores: a source holding five final blocks with their commits
(tests/unit/node/chain_store_model.py) and a fresh node store of the same genesis that
a `BlockSync` fills from the source's blocks, as a peer would send them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import node.block_sync as block_sync
from node.block_sync import WINDOW, BlockSync
from node.storage import ChainStore
from tests.unit.node.chain_store_model import build_chain, make_genesis, store_opener

HONEST = b"\x01" * 32
LIAR = b"\x02" * 32


class Peers:
    """Records what block sync sends and whom it penalizes."""

    def __init__(self) -> None:
        self.requests: list[tuple[bytes, int]] = []
        self.penalties: list[tuple[bytes, float, str]] = []

    def send(self, peer: bytes, kind: str, body: Any) -> bool:
        assert kind == "block_request"
        self.requests.append((peer, body["height"]))
        return True

    def penalize(self, peer: bytes, penalty: float, reason: str) -> None:
        self.penalties.append((peer, penalty, reason))


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[ChainStore, ChainStore]]:
    opener = store_opener(tmp_path)
    open_store = next(opener)
    genesis = make_genesis()
    source, fresh = open_store("source"), open_store("fresh")
    source.initialize(genesis)
    fresh.initialize(genesis)
    build_chain(source, genesis)
    yield source, fresh
    next(opener, None)


def make_sync(store: ChainStore, peers: Peers) -> tuple[BlockSync, list[asyncio.Task[None]]]:
    jobs: list[asyncio.Task[None]] = []

    def run_in_order(job: Callable[[], Awaitable[None]]) -> None:
        jobs.append(asyncio.ensure_future(job()))

    sync = BlockSync(
        store=store, chain_id=make_genesis().chain_id, params=make_genesis().params, send=peers.send,
        peers=peers, run_in_order=run_in_order, on_block=lambda result: None,  # type: ignore[arg-type]
        on_head_moved=lambda: None, signature_known_valid=lambda tx_hash: False,
    )
    return sync, jobs


async def wait_until(done: Callable[[], bool], message: str = "") -> None:
    """Poll `done` until it holds (fails after 30 s)."""
    deadline = asyncio.get_running_loop().time() + 30
    while not done():
        assert asyncio.get_running_loop().time() < deadline, message
        await asyncio.sleep(0.01)


def answer(source: ChainStore, height: int) -> dict[str, Any]:
    commit = source.commit(height)
    assert commit is not None
    return {"height": height, "block": source.block_bytes(height), "commit": commit.encode()}


async def test_a_huge_claimed_height_alone_sets_no_target_and_no_syncing(
    stores: tuple[ChainStore, ChainStore],
) -> None:
    _, fresh = stores
    peers = Peers()
    sync, _ = make_sync(fresh, peers)
    sync.peer_height(LIAR, 2**62)
    assert sync.syncing is False
    assert sync.target_height == 0
    assert sync.progress() == {"height": 0, "target": 0, "syncing": False}
    assert {height for _, height in peers.requests} == set(range(1, WINDOW + 1))  # asked, capped
    sync.stop()


async def test_the_claim_counts_once_the_peer_delivers_a_block_whose_commit_verifies(
    stores: tuple[ChainStore, ChainStore],
) -> None:
    source, fresh = stores
    peers = Peers()
    sync, jobs = make_sync(fresh, peers)
    sync.peer_height(HONEST, 5)
    assert sync.syncing is False  # nothing delivered yet
    sync.receive(HONEST, answer(source, 1))
    await asyncio.gather(*jobs)
    assert fresh.head().height == 1
    assert sync.target_height == 5 and sync.syncing is True
    for height in range(2, 6):
        sync.receive(HONEST, answer(source, height))
    await asyncio.gather(*jobs)
    assert fresh.head().height == 5 and sync.syncing is False
    assert not peers.penalties
    sync.stop()


async def test_a_peer_that_does_not_serve_its_claim_is_penalized_and_its_claim_dropped(
    stores: tuple[ChainStore, ChainStore], monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, fresh = stores
    monkeypatch.setattr(block_sync, "REQUEST_TIMEOUT_S", 0.05)
    peers = Peers()
    sync, _ = make_sync(fresh, peers)
    sync.peer_height(LIAR, 2**62)
    await wait_until(lambda: LIAR not in sync.peer_heights, "the claim was never dropped")
    assert [(peer, reason) for peer, _, reason in peers.penalties] == [
        (LIAR, "block 1 it claimed not served in time")
    ]
    assert sync.target_height == 0 and sync.syncing is False
    await wait_until(  # nothing claimed: nothing asked, no timer
        lambda: not sync._requested and sync._timer is None, "requests for an abandoned claim remain"
    )
    sync.stop()


async def test_a_peer_that_delivered_then_sends_an_invalid_block_loses_its_backing(
    stores: tuple[ChainStore, ChainStore],
) -> None:
    source, fresh = stores
    peers = Peers()
    sync, jobs = make_sync(fresh, peers)
    sync.peer_height(HONEST, 5)
    sync.receive(HONEST, answer(source, 1))
    await asyncio.gather(*jobs)
    assert HONEST in sync.backed
    forged = answer(source, 2) | {"commit": answer(source, 3)["commit"]}  # another block's commit
    sync.receive(HONEST, forged)
    await asyncio.gather(*jobs)
    assert HONEST not in sync.backed and HONEST not in sync.peer_heights
    assert sync.syncing is False
    assert [penalty for _, penalty, _ in peers.penalties] == [block_sync.PENALTY_INVALID_BLOCK]
    sync.stop()


async def test_a_late_answer_from_a_peer_asked_before_is_not_unsolicited(
    stores: tuple[ChainStore, ChainStore], monkeypatch: pytest.MonkeyPatch,
) -> None:
    source, fresh = stores
    monkeypatch.setattr(block_sync, "REQUEST_TIMEOUT_S", 0.05)
    peers = Peers()
    sync, jobs = make_sync(fresh, peers)
    sync.peer_height(HONEST, 1)
    sync.peer_height(LIAR, 1)
    first = peers.requests[0][0]
    await wait_until(lambda: len({peer for peer, _ in peers.requests}) >= 2)  # re-routed to the other peer
    sync.receive(first, answer(source, 1))  # the first one answers after all
    await asyncio.gather(*jobs)
    assert fresh.head().height == 1
    assert "unsolicited block_response" not in [reason for _, _, reason in peers.penalties]
    sync.stop()


async def test_an_oversized_block_response_is_refused_before_it_is_kept(
    stores: tuple[ChainStore, ChainStore],
) -> None:
    _, fresh = stores
    peers = Peers()
    sync, jobs = make_sync(fresh, peers)
    sync.peer_height(HONEST, 5)
    too_big = bytes(make_genesis().params.max_block_bytes + 1)
    sync.receive(HONEST, {"height": 1, "block": too_big, "commit": b""})
    assert not sync._received and not jobs
    assert [penalty for _, penalty, _ in peers.penalties] == [block_sync.PENALTY_MALFORMED]
    sync.stop()

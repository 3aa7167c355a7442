"""Serving `block_request`s: cheap checks first, once per peer per window, streamed
(issue 13, attack 1: 4,200 requests of 41 bytes queued 4,060 copies of a block).

`BlockSync.serve` over a real LevelDB store holding five blocks with their commits
(tests/unit/node/chain_store_model.py); the peers record what would be sent.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from node import block_serving
from node.block_sync import BlockSync
from node.storage import ChainStore
from p2p.messages import decode_message
from tests.unit.node.chain_store_model import build_chain, make_genesis, store_opener
from tests.unit.node.recording_peers import RecordingPeers

ATTACKER = b"\x03" * 32
HONEST = b"\x04" * 32


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ChainStore]:
    opener = store_opener(tmp_path)
    chain_store = next(opener)("chain")
    genesis = make_genesis()
    chain_store.initialize(genesis)
    build_chain(chain_store, genesis)
    yield chain_store
    next(opener, None)


def make_sync(store: ChainStore, peers: RecordingPeers) -> BlockSync:
    return BlockSync(
        store=store, chain_id=make_genesis().chain_id, params=make_genesis().params, send=peers.send,
        peers=peers, run_in_order=lambda job: None, on_block=lambda result: None,  # type: ignore[arg-type]
        on_head_moved=lambda: None, signature_known_valid=lambda tx_hash: False,
    )


def test_the_same_height_requested_4200_times_is_answered_once(store: ChainStore) -> None:
    peers = RecordingPeers()
    sync = make_sync(store, peers)
    for _ in range(4200):
        sync.serve(ATTACKER, {"height": 3})
    assert peers.answer_count(ATTACKER) == 1
    sync.serve(HONEST, {"height": 3})  # another peer's request is its own
    assert peers.answer_count(HONEST) == 1


def test_a_repeat_is_free_while_the_answer_waits_and_costs_once_it_was_sent(store: ChainStore) -> None:
    peers = RecordingPeers()
    sync = make_sync(store, peers)
    sync.serve(HONEST, {"height": 3})
    sync.serve(HONEST, {"height": 3})  # an honest requester's retry after its timeout
    assert not peers.penalties
    [(_, producer)] = peers.streamed
    producer()  # the writer reached it: the answer is on its way
    for _ in range(3):
        sync.serve(HONEST, {"height": 3})
    assert [penalty for _, penalty, _ in peers.penalties] == [block_serving.PENALTY_REPEAT] * 3
    assert peers.answer_count(HONEST) == 1


def test_the_answer_is_read_and_encoded_only_when_produced(store: ChainStore) -> None:
    peers = RecordingPeers()
    sync = make_sync(store, peers)
    sync.serve(HONEST, {"height": 2})
    assert not peers.sent
    [(_, producer)] = peers.streamed
    message = decode_message(producer() or b"")
    commit = store.commit(2)
    assert commit is not None
    assert message.kind == "block_response"
    assert message.body == {"height": 2, "block": store.block_bytes(2), "commit": commit.encode()}


def test_requests_are_checked_cheaply_before_anything_is_read(store: ChainStore) -> None:
    peers = RecordingPeers()
    sync = make_sync(store, peers)
    for body in ({"height": 0}, {"height": True}, {"height": "1"}, [], {"other": 1}):
        sync.serve(ATTACKER, body)
    assert [penalty for _, penalty, _ in peers.penalties] == [block_serving.PENALTY_MALFORMED] * 5
    peers.penalties.clear()
    for height in (6, 2**62):  # above our head: a height we never claimed
        sync.serve(ATTACKER, {"height": height})
    assert [penalty for _, penalty, _ in peers.penalties] == [block_serving.PENALTY_BEYOND_HEAD] * 2
    assert peers.answer_count(ATTACKER) == 0


def test_requests_beyond_the_waiting_answers_cost_the_peer(store: ChainStore) -> None:
    peers = RecordingPeers(room=2)
    sync = make_sync(store, peers)
    for height in range(1, 6):
        sync.serve(ATTACKER, {"height": height})
    assert peers.answer_count(ATTACKER) == 2
    assert [penalty for _, penalty, _ in peers.penalties] == [block_serving.PENALTY_QUEUE_FULL] * 3


def test_a_height_is_served_again_after_the_window(store: ChainStore, monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    peers = RecordingPeers()
    sync = make_sync(store, peers)
    sync.server = block_serving.BlockServer(store, peers, clock=lambda: now[0])  # type: ignore[arg-type]
    sync.serve(HONEST, {"height": 1})
    now[0] += block_serving.REPEAT_WINDOW_S - 1
    sync.serve(HONEST, {"height": 1})
    assert peers.answer_count(HONEST) == 1
    now[0] += 2
    sync.serve(HONEST, {"height": 1})
    assert peers.answer_count(HONEST) == 2
    sync.peer_gone(HONEST)  # a reconnected peer starts afresh
    sync.serve(HONEST, {"height": 1})
    assert peers.answer_count(HONEST) == 3

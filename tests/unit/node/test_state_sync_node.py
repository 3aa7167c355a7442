"""A node while it joins by state sync (node/node.py wiring, PROTOCOL R30, R32, R39): block
sync asks nothing and keeps the heights peers announce, gossip that needs the state is
dropped, state-sync answers go to the joiner, and a node that is not joining charges them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from node.config import HttpConfig, P2pConfig
from node.home import init_home, load_home
from node.node import Node

PEER = b"\x07" * 32


def _node(tmp_path: Path, environ: dict[str, str]) -> tuple[Node, list[tuple[bytes, float, str]]]:
    init_home(tmp_path / "home", http=HttpConfig(port=0), p2p=P2pConfig(port=0))
    node = Node(load_home(tmp_path / "home", environ=environ))
    charged: list[tuple[bytes, float, str]] = []
    node.peer_actions.penalize = lambda peer, penalty, reason: charged.append((peer, penalty, reason))  # type: ignore[method-assign]
    return node, charged


async def test_a_joining_node_keeps_claims_for_later_and_drops_what_needs_the_state(tmp_path: Path) -> None:
    node, charged = _node(tmp_path, {"MARKETCHAIN_STATESYNC_ENABLE": "true"})
    await node.start()
    try:
        assert node.joining is not None and node.validator_address is None
        assert node.runtime.state_sync() is not None
        node._on_message(PEER, "status", {"height": 500, "block_hash": bytes(32)})
        assert node.sync.peer_heights == {} and node.sync.target_height == 0  # block sync asks nothing
        assert node.joining._heard == {PEER: 500}
        for kind in ("txs", "proposal", "vote", "evidence"):
            assert node._on_message(PEER, kind, {"anything": 1}) is None
        assert len(node.mempool) == 0
        node._on_message(PEER, "chunk", {"chunk_depth": 0, "height": 9, "index": 0, "chunk": b"x"})
        assert charged == [(PEER, 5.0, "unsolicited chunk 0")]  # judged by the joiner: never asked
        assert not node.driver.state.started
    finally:
        await node.stop()  # cancels the state sync while it looks for snapshots


async def test_a_node_that_is_not_joining_charges_state_sync_answers(tmp_path: Path) -> None:
    node, charged = _node(tmp_path, {})
    assert node.joining is None
    body: dict[str, Any] = {"snapshots": []}
    for kind in ("snapshots", "manifest", "chunk", "light_changes", "header"):
        node._on_message(PEER, kind, body)
    assert [penalty for _, penalty, _ in charged] == [5.0] * 5
    node.store.close()
    node.workers.stop(wait=True)

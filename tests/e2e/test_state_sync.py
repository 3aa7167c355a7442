"""A fresh node joins a live 4-validator testnet by state sync (PROTOCOL R37, R39, R40; issue 15).

Four validator processes write a snapshot every `SNAPSHOT_INTERVAL` heights; a market load
of a few thousand transactions (accounts, shops, listings with long descriptions so that
the snapshot has several chunks, items, orders left placed, accepted, rejected, cancelled,
delivered and completed, reviews) runs through them. Once two validators offer the same
snapshot, a node made by `marketchain init --state-sync` joins: it shows its progress in
`/status` and `/metrics`, restores the snapshot, block-syncs the rest, answers 410
`pruned` for the blocks it never had, then follows the chain while more load runs (some
of it sent through it) and agrees with the validators on every block after its
snapshot, on every object the load touched, and on state proofs verified by the light
client against the other nodes' headers.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.e2e.state_sync_network import SNAPSHOT_INTERVAL, StateSyncTestnet
from tests.e2e.testnet_harness import Manifest

pytestmark = pytest.mark.integration

ORDER_STATES = {"placed", "accepted", "rejected", "cancelled", "delivered", "completed"}
"""The states the market load leaves orders in."""


def test_fresh_node_state_syncs_then_follows_a_live_four_validator_testnet_and_agrees(tmp_path: Path) -> None:
    with StateSyncTestnet(tmp_path / "net", Manifest(validators=4)) as net:
        validators = [net.node(index) for index in range(4)]
        load = net.market()
        load.play(validators)
        assert load.sent >= 1500, load.sent
        assert set(load.order_states()) == ORDER_STATES, load.order_states()
        for order in load.orders[::9]:
            assert validators[0].get_ok(f"/orders/{order.id.hex()}")["state"] == order.state, order
        head = net.advance_past_snapshot()
        snapshot = net.wait_common_snapshot(range(4), at_least=2, height=head - head % SNAPSHOT_INTERVAL)
        base, chunks = snapshot["height"], snapshot["chunks"]
        assert chunks >= 2, f"the load should make a snapshot of several chunks: {snapshot}"

        joiner = net.add_joiner("joiner", range(4), use_init_flag=True)
        net.start(joiner.index)
        seen = net.wait_state_synced(joiner.index, head)
        for status in seen:
            if status.get("syncing") == "state":
                match = re.fullmatch(r"(\d+)/(\d+)", status["chunks"])
                assert match and int(match[1]) <= int(match[2]) in (0, chunks), status  # 0/0: not chosen yet
        assert joiner.status()["syncing"] is False, "after state sync, `syncing` is a boolean again"
        assert net.metric(joiner, "marketchain_statesync_chunks_total") == chunks
        assert net.metric(joiner, "marketchain_statesync_chunks_done") == chunks
        assert net.metric(joiner, "marketchain_statesync_bad_chunks_total") == 0
        restored = re.search(rf"restoring height {base} from (\d+) peers", joiner.log_path.read_text())
        assert restored and int(restored[1]) >= 2, (
            f"the joiner restores snapshot {base}, which several validators serve:\n{joiner.log_tail()}")
        net.assert_pruned_below(joiner, base)
        net.assert_blocks_agree(joiner, validators[:2], base + 1, head)

        # It follows the live chain, transactions sent through it included.
        load.payments([joiner, validators[1]], per_buyer=10)
        load.place_orders([validators[2], joiner], per_buyer=2)
        load.fulfil([joiner, validators[3]])
        top = net.wait_same_height([0, 1, 2, 3, joiner.index])
        assert top > head
        net.assert_blocks_agree(joiner, [validators[0], validators[3]], base + 1, top)
        height = net.assert_same_objects(joiner, validators[2], load)
        net.assert_proofs_verify(joiner, validators[1], load, height)
        problems = net.log_problems()
        assert not problems, f"tracebacks or errors in node logs: {problems}"

"""State sync survives hostile snapshot peers (PROTOCOL R32, R37, R39; issue 15 point 4).

One network of two validators that write snapshots, a market load whose state makes a
snapshot of several chunks, and per fault a full node started with the test fault
`MARKETCHAIN_TEST_SNAPSHOT_FAULT` that block-syncs and serves snapshots as a hostile peer:

- `corrupt_chunk`: the honest manifest, but one value byte of every chunk flipped
  (cheap checks pass, the hash does not): charged 50, never asked again;
- `wrong_manifest`: a manifest for the honest height whose first chunk hash is changed,
  so it does not fold to the verified root: charged 50;
- `unfinal`: besides its honest snapshots, a made-up one 1000 heights above the head
  (with a header that cannot verify by R37): charged 20, even though the honest height,
  offered by two peers, is chosen first;
- `silent`: offers the honest snapshot, then answers no manifest, header or chunk
  request: charged 5 per request left unanswered past `chunk_request_timeout_s`, the
  snapshot fetched from the others.

A fresh joiner peered with one honest validator and the hostile peer only (so that the
hostile offer is always considered and its chunks always asked for) completes from the
honest peer, charges the hostile one (the "peer … loses N" lines of its R32 scoring log),
and ends with the same blocks and objects as the validators.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.e2e.harness.testnet_node import NodeHandle
from tests.e2e.state_sync_network import MarketNetwork, StateSyncTestnet
from tests.e2e.testnet_harness import Manifest

pytestmark = pytest.mark.integration

PENALTIES = {"corrupt_chunk": 50, "wrong_manifest": 50, "unfinal": 20, "silent": 5}
"""What the joiner charges each hostile peer (contract.md, the joiner's punishments)."""


@dataclass
class Network(MarketNetwork):
    """The shared network of this module, with its hostile snapshot servers."""

    hostile: dict[str, NodeHandle]
    """A hostile snapshot server per fault, each peered with node1."""


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    """Two validators, a market load, a snapshot of several chunks on both."""
    with StateSyncTestnet(tmp_path_factory.mktemp("hostile") / "net", Manifest(validators=2)) as net:
        load, head, snapshot = net.small_market("hostile", per_merchant=40)
        assert snapshot["chunks"] >= 2, snapshot
        # Peered with node1 only: every node here is on 127.0.0.1, and node0 must keep an
        # inbound slot (p2p.max_inbound_per_ip = 4) for each joiner.
        hostile = {fault: net.add_snapshot_server(f"hostile_{fault}", fault, peers=[1]) for fault in sorted(PENALTIES)}
        net.wait_serving(hostile.values())
        yield Network(net, load, head, snapshot["height"], snapshot["chunks"], hostile)


@pytest.mark.parametrize("fault", sorted(PENALTIES))
def test_joiner_completes_from_honest_peers_and_charges_the_hostile_one(network: Network, fault: str) -> None:
    net, load = network.net, network.load
    hostile = network.hostile[fault]
    joiner = None
    try:
        net.wait_common_snapshot([0, hostile.index], at_least=2, height=network.base)
        joiner = net.add_joiner(f"joiner_{fault}", [0, hostile.index])
        net.start(joiner.index)
        net.wait_state_synced(joiner.index, network.head)
        net.assert_pruned_below(joiner, network.base)
        assert net.metric(joiner, "marketchain_statesync_chunks_done") == network.chunks

        net.assert_blocks_agree(joiner, [net.node(1)], network.base + 1, network.head)
        height = net.assert_same_objects(joiner, net.node(1), load, every=3)
        net.assert_proofs_verify(joiner, net.node(1), load, height)
        problems = {name: lines for name, lines in net.log_problems().items() if name != hostile.name}
        assert not problems, f"tracebacks or errors in node logs: {problems}"
        if fault == "corrupt_chunk":
            assert net.metric(joiner, "marketchain_statesync_bad_chunks_total") >= 1

        charged = net.penalties(joiner, hostile)
        expected = f"loses {PENALTIES[fault]:g} "
        assert any(expected in line for line in charged), (
            f"{joiner.name} did not charge {hostile.name} {PENALTIES[fault]} (R32); its lines about it: {charged}\n"
            f"{joiner.log_tail()}")
    finally:
        if joiner is not None and joiner.running:
            net.stop(joiner.index)

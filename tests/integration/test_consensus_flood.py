"""Issue 13, attacks 2 and 3, against a real node process over the real handshake:
future-height proposals from a non-validator, a message for a far height, and forged
evidence. Each attacker must be disconnected (banned) within seconds, the node must not
start syncing towards a height nobody signed, and it must go on deciding blocks.

The node is a one-validator chain; the attackers connect from 127.90.0.0/16 (attack 80
of tests/e2e/adversary/attacker.py) so that their bans touch nothing else.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from consensus.proposal import NO_POL_ROUND, Proposal
from consensus.vote import Vote
from marketplace_tx.primitives.crypto import KeyPair
from marketplace_tx.rules.evidence import make_evidence
from node.consensus_messages import proposal_body, vote_body
from tests.e2e.adversary.attacker import AttackerPeer, ChainIdentity, source_address
from tests.e2e.node_process import NodeProcess
from tests.integration.node_http_support import key, next_nonce, transfer

pytestmark = pytest.mark.integration

ATTACK = 80
"""The attack number of tests/e2e/adversary/attacker.py these attackers use."""
BAN_WITHIN_S = 30.0
"""Time the node may take to hang up on an attacker (generous: a loaded 2-core machine)."""
SENDER = key("consensus-flood-sender")


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    with NodeProcess(tmp_path_factory.mktemp("consensus-flood") / "node", chain_id="consensus-flood",
                     fund={SENDER.address: 10_000_000}) as started:
        yield started


def _commit_one(node: NodeProcess) -> None:
    """Make the node decide one more block (a transfer of SENDER's)."""
    node.wait_for_tx(node.submit(transfer(node.genesis()["chain_id"], SENDER, next_nonce(node, SENDER)).raw))


def _attack(node: NodeProcess, host: int, messages: list[tuple[str, Any]]) -> bool:
    """Connect from a fresh address, send `messages`, and say whether the node hung up."""
    async def scenario() -> bool:
        assert node.p2p_port is not None
        attacker = AttackerPeer(ChainIdentity.of_home(node.home), "127.0.0.1", node.p2p_port,
                                source_address(ATTACK, host))
        await attacker.connect()
        try:
            for kind, body in messages:
                await attacker.send(kind, body)
            return await attacker.closed_by_node(BAN_WITHIN_S)
        except (ConnectionError, OSError):
            return True  # the node hung up while we were still sending
        finally:
            attacker.abort()

    return asyncio.run(scenario())


def test_future_proposals_of_a_non_validator_get_the_sender_banned(node: NodeProcess) -> None:
    """20 proposals of 64 KiB for the next height, signed by a key that is no validator:
    before, all were kept (by count, not bytes) and cost nothing."""
    _commit_one(node)
    head = node.height()
    chain_id = node.genesis()["chain_id"]
    outsider = KeyPair.generate()
    messages = []
    for round_number in range(20):
        proposal = Proposal(chain_id, head + 2, round_number, NO_POL_ROUND, b"\xbb" * 32)
        body = proposal_body(proposal, outsider.sign(proposal.signing_bytes()), b"\x00" * 65536)
        messages.append(("proposal", body))
    assert _attack(node, 0, messages), node.describe("the attacker was not disconnected")
    _commit_one(node)


def test_a_vote_for_a_far_height_never_starts_sync(node: NodeProcess) -> None:
    """One message at height 2^62 set the sync target and `syncing=true` before."""
    chain_id = node.genesis()["chain_id"]
    outsider = KeyPair.generate()
    vote = Vote(chain_id, 2**62, 0, "prevote", b"\xbb" * 32)
    proposal = Proposal(chain_id, 2**62, 0, NO_POL_ROUND, b"\xbb" * 32)

    async def scenario() -> dict[str, Any]:
        assert node.p2p_port is not None
        attacker = AttackerPeer(ChainIdentity.of_home(node.home), "127.0.0.1", node.p2p_port,
                                source_address(ATTACK, 250))
        await attacker.connect()
        try:
            await attacker.send("vote", vote_body(outsider.address, vote, outsider.sign(vote.signing_bytes())))
            await attacker.send("proposal", proposal_body(proposal, outsider.sign(proposal.signing_bytes()), b""))
            await asyncio.sleep(0.5)  # nothing to wait for: the node must do nothing
            return await asyncio.to_thread(node.status)
        finally:
            attacker.abort()

    status = asyncio.run(scenario())
    assert status["syncing"] is False, status
    assert status.get("sync", {}).get("target", 0) < 2**62, status


def test_forged_evidence_gets_the_sender_banned(node: NodeProcess) -> None:
    """Evidence against the real validator with forged signatures: before, both signatures
    were checked on the event loop and the item dropped silently, at no cost."""
    if node.height() < 2:
        _commit_one(node)
    chain_id = node.genesis()["chain_id"]
    validator = node.validator_address
    messages = []
    for height in (1, 1, 1, 1):
        votes = [{**Vote(chain_id, height, round_number, "prevote", block_hash).to_map(), "signature": bytes(64)}
                 for round_number, block_hash in ((0, b"\x01" * 32), (0, b"\x02" * 32))]
        item = make_evidence(validator, votes[0], votes[1])
        item["vote_a"]["round"] = item["vote_b"]["round"] = len(messages)  # four distinct items
        messages.append(("evidence", item))
    assert _attack(node, 500, messages), node.describe("the attacker was not disconnected")
    _commit_one(node)

"""Issue 13 against a real node process: block-request amplification and false height claims.

An attacker speaks the real handshake (p2p/handshake.py) from loopback:

1. It sends 4,200 `block_request`s of ~41 bytes for one ~20 KB block and does not read
   its socket. Before: each request queued a fresh encoded copy (4,060 copies, +113 MiB
   in the issue's run), at no score. Now the height is answered once per peer per
   window, streamed from storage, and asking again for a height already sent costs
   score: the attacker is banned, finds at most ONE answer, and the node's RSS barely
   moves.
2. It claims height 2^62 in a `status`. Before: `/status` said `syncing: true` with that
   target. Now the claim only makes the node ask for blocks; `syncing` stays false and
   the attacker, which serves nothing, loses score.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from marketplace_tx.chain.transaction import sign_transaction
from marketplace_tx.primitives import codec
from marketplace_tx.primitives.crypto import KeyPair
from p2p.channel import SecureChannel
from p2p.handshake import handshake
from p2p.messages import decode_message, encode_message
from tests.e2e.node_process import NodeProcess, wait_until

pytestmark = pytest.mark.integration

CHAIN = "marketchain-peer-memory"
MIB = 1024 * 1024
SENDERS = [KeyPair.from_seed(hashlib.sha256(b"test_peer_memory_attacks/sender%d" % index).digest())
           for index in range(4)]
RECIPIENT = KeyPair.from_seed(hashlib.sha256(b"test_peer_memory_attacks/recipient").digest())


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def metric(node: NodeProcess, name: str, labels: str = "") -> float | None:
    status, body = node.get("/metrics")
    assert status == 200
    text = body if isinstance(body, str) else body.decode() if isinstance(body, bytes) else str(body)
    match = re.search(rf"^{re.escape(name)}{re.escape(labels)}\S* (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else None


def make_big_block(node: NodeProcess) -> int:
    """Forty transfers with 256-byte memos in one batch: a block of some 10-20 KB; its height."""
    chain_id = node.status()["chain_id"]
    txs = [sign_transaction(sender, chain_id, "transfer",
                            {"to": RECIPIENT.address, "amount": 1, "memo": "m" * 256}, nonce, 10)
           for nonce in range(10) for sender in SENDERS]
    status, body = node.post("/txs/batch", codec.encode([tx.raw for tx in txs]))
    assert status == 200, body
    heights = [node.wait_for_tx(tx.hash.hex())["height"] for tx in txs]
    return max(set(heights), key=heights.count)


async def attacker(node: NodeProcess, source_host: str) -> tuple[SecureChannel, KeyPair]:
    """A handshaken connection from `source_host` (one /24 per test: the node bans a
    banned peer's IP) whose receive window is small (it reads nothing for now)."""
    genesis_hash = bytes.fromhex(node.status()["genesis_hash"])
    assert node.p2p_port is not None
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    sock.bind((source_host, 0))
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", node.p2p_port))
    reader, writer = await asyncio.open_connection(sock=sock)
    key = KeyPair.generate()
    result = await handshake(reader, writer, node_key=key, chain_id=CHAIN, genesis_hash=genesis_hash,
                             initiator=True, timeout_s=30.0)
    return result.channel, key


async def drain(channel: SecureChannel, quiet_s: float = 3.0) -> list[tuple[str, Any]]:
    """Every message the node sends until it has been quiet for `quiet_s`."""
    messages = []
    while True:
        try:
            message = decode_message(await asyncio.wait_for(channel.receive(), quiet_s))
        except (TimeoutError, Exception):  # quiet, or closed by the node
            return messages
        messages.append((message.kind, message.body))


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with NodeProcess(tmp_path_factory.mktemp("peer-memory") / "node", chain_id=CHAIN,
                     fund={sender.address: 10_000_000 for sender in SENDERS}) as process:
        yield process


def test_block_requests_for_one_height_are_answered_once_and_memory_stays_flat(node: NodeProcess) -> None:
    height = make_big_block(node)
    bans_before = metric(node, "marketchain_p2p_bans_total") or 0
    rss_before = rss_bytes(node.process.pid)
    request = encode_message("block_request", {"height": height})

    async def scenario() -> tuple[int, list[tuple[str, Any]]]:
        channel, _ = await attacker(node, "127.0.21.1")
        sent = 0
        try:
            for _ in range(0, 4200, 400):  # paced under the 1,000 messages/s rate limit
                for _request in range(400):
                    await channel.send(request)
                    sent += 1
                await asyncio.sleep(0.5)
        except OSError:  # the node closed the connection: banned
            pass
        wait_until(lambda: (metric(node, "marketchain_p2p_bans_total") or 0) > bans_before, 120,
                   lambda: "the attacker banned")
        growth = rss_bytes(node.process.pid) - rss_before
        assert growth < 32 * MIB, f"RSS grew by {growth / MIB:.1f} MiB"
        received = await drain(channel)
        await channel.close()
        return sent, received

    sent, received = asyncio.run(scenario())
    answers = [body for kind, body in received if kind == "block_response"]
    assert len(answers) <= 1, (sent, len(answers))
    assert all(answer["height"] == height and len(answer["block"]) > 5_000 for answer in answers)
    assert node.status()["height"] >= height  # the node goes on


def test_a_claimed_height_of_2_pow_62_does_not_make_the_node_syncing(node: NodeProcess) -> None:
    async def scenario() -> list[tuple[bool, int]]:
        channel, key = await attacker(node, "127.0.22.1")
        await channel.send(encode_message("status", {"height": 2**62, "block_hash": b"\x00" * 32}))
        samples: list[tuple[bool, int]] = []
        label = f'{{direction="inbound",peer="{key.address.hex()}"}}'

        def charged() -> bool:
            status = node.status()
            samples.append((status["syncing"], status["sync"]["target"]))
            assert status["syncing"] is False and status["sync"]["target"] < 2**62, status
            score = metric(node, "marketchain_peer_score", label)
            return score is not None and score < 100

        started = time.monotonic()
        wait_until(charged, 120, lambda: "the attacker charged for the blocks it did not serve")
        assert time.monotonic() - started >= 1.0 or len(samples) > 1
        await channel.close()
        return samples

    samples = asyncio.run(scenario())
    assert samples and not any(syncing for syncing, _ in samples), samples
    assert max(target for _, target in samples) < 2**62
    assert node.status()["syncing"] is False

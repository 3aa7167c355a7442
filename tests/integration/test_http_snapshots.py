"""Issue 15, HTTP: the snapshots a real node writes and serves (PROTOCOL R39;
node/http/snapshots.py, node/snapshot_writer.py).

A node with `[statesync] snapshot_interval = 2` and 2,500 funded accounts in genesis:

- `GET /snapshots` lists snapshots at multiples of 2, newest first, at most
  `snapshot_keep`; the manifest of the newest one folds up to the `state_root` of the header
  at its height (taken from `/blocks/{h}/raw`, decoded and hashed here), and every chunk
  checks against it (R39) and holds the node's state (an account read via `/accounts`).
- A height or index that does not parse is 400 `invalid_query`; a snapshot or chunk the node
  does not have is 404 `not_found`, never 500.
- A chunk is charged by its bytes before it is read (1 unit per 64 KiB): a client with a
  small budget gets one chunk and then 429 `rate_limited`, while another address is served.
- Over P2P (a peer speaking the real handshake): the snapshot's header verifies by the light
  client (R37) from the genesis, the manifest folds to its root and every chunk checks; a
  chunk asked 1,000 times is answered once, and malformed requests get the peer banned.

Requests that must not share a budget come from their own 127.x.y.z source address.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
from collections.abc import Iterator
from typing import Any

import pytest

from consensus.light_client import verify_header
from marketplace_tx.chain.block import decode_block, decode_commit
from marketplace_tx.chain.genesis import Genesis
from marketplace_tx.chain.transaction import Transaction, sign_transaction
from marketplace_tx.primitives import codec
from marketplace_tx.primitives.crypto import KeyPair
from marketplace_tx.rules.snapshots import check_chunk, check_manifest, manifest_from_map
from marketplace_tx.rules.state_keys import account_key
from node.http.costs import REQUEST_COST, snapshot_bytes_cost
from p2p.channel import SecureChannel
from p2p.handshake import handshake
from p2p.messages import decode_message, encode_message
from tests.e2e.node_process import NodeProcess, is_error_body, wait_until
from tests.integration.test_http_work_limits import Answer
from tests.integration.test_http_work_limits import call as call_from

pytestmark = pytest.mark.integration

DEADLINE_S = 120.0
"""Generous: the machine is loaded."""
INTERVAL = 2
"""A snapshot after every second height."""
KEEP = 2
"""Snapshots kept."""
ACCOUNTS = 2500
"""Funded accounts in genesis: a chunk of ~150 KB (several request units)."""
RATE, BURST = 1, 6
"""Each address's budget: 1 request unit per second, bursts of 6."""
_sources = (f"127.0.{60 + n // 250}.{n % 250 + 1}" for n in itertools.count())
"""Fresh loopback source addresses: each has its own full bucket."""


SENDER = KeyPair.from_seed(hashlib.sha256(b"test_http_snapshots/sender").digest())
FEE = 10


def _address(number: int) -> bytes:
    return hashlib.sha256(b"test_http_snapshots/%d" % number).digest()


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    fund = {_address(number): 1_000 + number for number in range(ACCOUNTS)}
    fund[SENDER.address] = 10_000_000
    config = {"statesync": {"snapshot_interval": INTERVAL, "snapshot_keep": KEEP},
              "http": {"rate_per_ip": RATE, "burst_per_ip": BURST}}
    with NodeProcess(tmp_path_factory.mktemp("snapshots") / "node", fund=fund, config=config,
                     timeout=DEADLINE_S) as running:
        chain_id = call(running, "/status").body["chain_id"]
        for nonce in range(2 * INTERVAL * KEEP):  # one block each (the chain makes no empty blocks)
            commit_transfer(running, sign_transaction(SENDER, chain_id, "transfer",
                                                      {"to": _address(nonce), "amount": 1}, nonce, FEE))
        yield running


def commit_transfer(node: NodeProcess, tx: Transaction) -> None:
    """Submit from a fresh address and wait until it is final (fresh addresses: small budgets)."""
    answer = call_from(node, "POST", "/txs", next(_sources), tx.raw, "application/msgpack")
    assert answer.status in (200, 202), answer

    def committed() -> bool:
        answer = call(node, f"/txs/{tx.hash.hex()}")
        return answer.status == 200 and answer.body.get("status") == "committed"

    wait_until(committed, DEADLINE_S, f"tx {tx.hash.hex()} committed")


def call(node: NodeProcess, path: str, source: str | None = None) -> Answer:
    return call_from(node, "GET", path, source or next(_sources))


def assert_error(answer: Answer, status: int, code: str) -> None:
    assert answer.status == status, answer
    assert is_error_body(answer.body) and answer.body["error"]["code"] == code, answer


def listed(node: NodeProcess, minimum: int = 1) -> list[dict[str, int]]:
    """The snapshots listed once at least `minimum` are."""
    found: list[dict[str, int]] = []

    def enough() -> bool:
        answer = call(node, "/snapshots")
        if answer.status == 200:
            found[:] = answer.body["snapshots"]
        return len(found) >= minimum

    wait_until(enough, DEADLINE_S, f"{minimum} snapshots listed")
    return found


def test_snapshot_verifies_against_the_header_of_its_height(node: NodeProcess) -> None:
    snapshots = listed(node, KEEP)
    heights = [entry["height"] for entry in snapshots]
    assert heights == sorted(heights, reverse=True) and len(heights) <= KEEP
    assert all(height % INTERVAL == 0 for height in heights)
    newest = snapshots[0]
    height = newest["height"]
    manifest_answer = call(node, f"/snapshots/{height}/manifest")
    assert manifest_answer.status == 200 and manifest_answer.headers["content-type"] == "application/msgpack"
    manifest = manifest_from_map(codec.decode(manifest_answer.body))
    block_answer = call(node, f"/blocks/{height}/raw")
    header = decode_block(block_answer.body, len(block_answer.body)).header
    assert manifest.height == height and manifest.state_root == header.state_root
    check_manifest(manifest)
    assert (newest["chunk_depth"], newest["chunks"]) == (manifest.chunk_depth, len(manifest.chunks))
    entries: dict[bytes, bytes] = {}
    for index in range(len(manifest.chunks)):
        chunk_answer = call(node, f"/snapshots/{height}/chunks/{index}")
        assert chunk_answer.status == 200, chunk_answer
        entries.update(check_chunk(manifest, index, chunk_answer.body))
    assert len(entries) > ACCOUNTS
    # The account the last transfer paid, as the snapshot holds it and as the node proves it at
    # that height (the newest snapshot may be from before or after that transfer's block).
    proven = call(node, f"/accounts/{_address(7).hex()}/proof?height={height}")
    assert proven.status == 200, proven
    assert entries[account_key(_address(7))] == bytes.fromhex(proven.body["value"])
    assert codec.decode(entries[account_key(_address(7))])["balance"] in (1_007, 1_008)


@pytest.mark.parametrize("path", [
    "/snapshots/abc/manifest", "/snapshots/0/manifest", "/snapshots/-2/manifest",
    "/snapshots/99999999999999999999999/manifest", "/snapshots/2/chunks/x",
    "/snapshots/2/chunks/65536", "/snapshots/2/chunks/-1",
])
def test_numbers_that_do_not_parse_are_400(node: NodeProcess, path: str) -> None:
    assert_error(call(node, path), 400, "invalid_query")


def test_what_the_node_does_not_have_is_404(node: NodeProcess) -> None:
    newest = listed(node)[0]
    assert_error(call(node, "/snapshots/1/manifest"), 404, "not_found")
    assert_error(call(node, "/snapshots/1/chunks/0"), 404, "not_found")
    assert_error(call(node, f"/snapshots/{newest['height']}/chunks/{newest['chunks']}"), 404, "not_found")
    assert_error(call(node, f"/snapshots/{2**62}/manifest"), 404, "not_found")


def test_a_chunk_is_charged_by_its_bytes_before_it_is_read(node: NodeProcess) -> None:
    newest = listed(node)[0]
    height = newest["height"]
    path = f"/snapshots/{height}/chunks/0"
    first = call(node, path)
    if first.status == 404:  # pruned by snapshot_keep meanwhile: take the newest again
        height = listed(node)[0]["height"]
        path = f"/snapshots/{height}/chunks/0"
        first = call(node, path)
    assert first.status == 200, first
    cost = REQUEST_COST + snapshot_bytes_cost(len(first.body))
    assert BURST / 2 < cost <= BURST  # one fits a full bucket, two do not
    source = next(_sources)
    assert call(node, path, source).status == 200
    answer = call(node, path, source)
    assert_error(answer, 429, "rate_limited")
    assert int(answer.headers["retry-after"]) >= 1
    assert call(node, "/snapshots", next(_sources)).status == 200  # another address is served


# --- the same snapshots over P2P, from a peer speaking the real handshake -------------------------


async def _peer(node: NodeProcess, source_host: str) -> SecureChannel:
    """A handshaken P2P connection to the node from `source_host` (its own /24 per test)."""
    status = call(node, "/status").body
    reader, writer = await asyncio.open_connection("127.0.0.1", node.p2p_port, local_addr=(source_host, 0))
    result = await handshake(reader, writer, node_key=KeyPair.generate(), chain_id=status["chain_id"],
                             genesis_hash=bytes.fromhex(status["genesis_hash"]), initiator=True, timeout_s=30.0)
    return result.channel


async def _ask(channel: SecureChannel, kind: str, body: Any, answer_kind: str) -> Any:
    """Send one request and return the body of the first answer of `answer_kind`."""
    await channel.send(encode_message(kind, body))
    while True:
        message = decode_message(await asyncio.wait_for(channel.receive(), DEADLINE_S))
        if message.kind == answer_kind:
            return message.body


async def _drain(channel: SecureChannel, quiet_s: float = 3.0) -> list[tuple[str, Any]]:
    messages = []
    while True:
        try:
            message = decode_message(await asyncio.wait_for(channel.receive(), quiet_s))
        except Exception:  # quiet, or closed by the node
            return messages
        messages.append((message.kind, message.body))


def test_a_peer_fetches_and_verifies_a_snapshot_over_p2p(node: NodeProcess) -> None:
    genesis = Genesis.from_json(call(node, "/genesis").body)

    async def scenario() -> None:
        channel = await _peer(node, "127.0.71.1")
        try:
            offers = (await _ask(channel, "snapshots_request", {}, "snapshots"))["snapshots"]
            newest = offers[0]
            height, depth = newest["height"], newest["chunk_depth"]
            header = await _ask(channel, "header_request", {"height": height}, "header")
            changes = await _ask(channel, "light_changes_request", {"after": 0, "limit": 32}, "light_changes")
            assert changes == {"changes": []}  # one validator, never changed
            verified = verify_header(genesis, [], header["header"], decode_commit(header["commit"]), height)
            answer = await _ask(channel, "manifest_request", {"chunk_depth": depth, "height": height}, "manifest")
            manifest = manifest_from_map(codec.decode(answer["manifest"]))
            assert manifest.state_root == verified.header.state_root
            check_manifest(manifest)
            for index in range(newest["chunks"]):
                chunk = await _ask(channel, "chunk_request",
                                   {"chunk_depth": depth, "height": height, "index": index}, "chunk")
                check_chunk(manifest, index, chunk["chunk"])
            absent = await _ask(channel, "manifest_request", {"chunk_depth": depth, "height": 1}, "manifest")
            assert "manifest" not in absent
        finally:
            await channel.close()

    asyncio.run(scenario())


def test_a_peer_repeating_and_malforming_requests_gets_one_answer_and_loses_score(node: NodeProcess) -> None:
    newest = listed(node)[0]
    request = encode_message("chunk_request", {"chunk_depth": newest["chunk_depth"], "height": newest["height"],
                                               "index": 0})
    malformed = encode_message("chunk_request", {"chunk_depth": 17, "height": newest["height"], "index": 0})

    async def scenario() -> list[tuple[str, Any]]:
        channel = await _peer(node, "127.0.72.1")
        try:
            for _ in range(4):
                for _ in range(250):  # paced under the 1,000 messages/s rate limit
                    await channel.send(request)
                await asyncio.sleep(0.5)
            for _ in range(12):  # 12 × 10 score: banned
                await channel.send(malformed)
        except OSError:  # closed by the node
            pass
        received = await _drain(channel)
        await channel.close()
        return received

    received = asyncio.run(scenario())
    assert [kind for kind, _ in received if kind == "chunk"] == ["chunk"]

    def banned() -> bool:
        answer = call(node, "/metrics")
        text = answer.body.decode() if isinstance(answer.body, bytes) else str(answer.body)
        return answer.status == 200 and any(
            line.startswith("marketchain_p2p_bans_total ") and float(line.split()[1]) >= 1
            for line in text.splitlines())

    wait_until(banned, DEADLINE_S, "the peer sending malformed chunk requests is banned")

"""Limits, abuse, replay and key safety (docs/security.md; PROTOCOL R4, R9, R10, R12, R27, R31, §10).

- The HTTP limits of node/http/limits.py, unit-tested with a fake clock, then on a real
  node with low limits: a flood from one loopback address gets 429 `rate_limited` with
  `Retry-After` while a client on another loopback address (127.0.0.3: Linux routes all
  of 127/8 to lo) is still served; connections beyond `max_connections` are refused.
  Work charged by cost (batches by their count, list rows, transaction ids), per-address
  connection and event stream caps and the header and body deadlines (slowloris, issue 13)
  are tested in test_http_work_limits.py and tests/unit/node/test_http_work_costs.py.
- The other limits through the real surfaces where that is cheap: body size (413),
  batch size, `max_tx_bytes`, `max_block_txs`, mempool count and bytes (`mempool_full`),
  P2P frame size and handshake timeout. Idle P2P connections and the event stream cap
  are tested in test_p2p_framing_handshake.py and test_events_metrics_openapi.py.
- Replay and key safety: another chain's tx is `wrong_chain`; a signature under another
  domain tag fails; a committed tx replayed is `duplicate`, re-signed `bad_nonce`;
  validator and node seeds never reach node.log or the API; the API has no write
  operation besides POST /txs and /txs/batch. (Keystore encryption: test_keystore.py.)
"""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from consensus.commit import sign_commit, verify_commit
from consensus.proposal import Proposal
from consensus.vote import Vote
from marketplace_tx.chain.block import Commit, CommitSignature
from marketplace_tx.chain.params import Params
from marketplace_tx.chain.transaction import Transaction, sign_transaction
from marketplace_tx.primitives import codec
from marketplace_tx.primitives.crypto import (
    SIGNATURE_KINDS,
    KeyPair,
    signing_bytes,
    verify_signature,
)
from marketplace_tx.primitives.errors import InvalidBlock
from node.block_sync import WINDOW, BlockSync
from node.config import ConfigError, HttpConfig, apply_environment, load_config
from node.http.limits import ClientRateLimiter, ConnectionCap, client_key
from node.http.openapi import ROUTES
from p2p.handshake import HANDSHAKE_TIMEOUT_S, handshake
from tests.e2e.node_process import NodeProcess, is_error_body, wait_until
from tests.paths import REPO_ROOT

CHAIN = "marketchain-abuse"
MIN_FEE = 10


def key(name: str) -> KeyPair:
    return KeyPair.from_seed(hashlib.sha256(b"test_abuse_limits/" + name.encode()).digest())


RECIPIENT = key("recipient")


def transfer(sender: KeyPair, nonce: int, chain_id: str = CHAIN, fee: int = MIN_FEE, **payload: Any) -> Transaction:
    return sign_transaction(sender, chain_id, "transfer", {"to": RECIPIENT.address, "amount": 1, **payload}, nonce, fee)


# --- a client with a chosen source address -------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: Any


def call(node: NodeProcess, method: str, path: str, source: str, body: bytes | None = None,
         content_type: str | None = None, connection: http.client.HTTPConnection | None = None) -> Answer:
    """One request from `source` (a loopback address); the connection is closed unless given."""
    own = connection is None
    connection = connection or http.client.HTTPConnection(
        "127.0.0.1", node.http_port, timeout=30, source_address=(source, 0))
    try:
        headers = {"Content-Type": content_type} if content_type else {}
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        raw = response.read()
        answer_headers = {name.lower(): value for name, value in response.getheaders()}
    finally:
        if own:
            connection.close()
    parsed: Any = raw
    if answer_headers.get("content-type", "").startswith("application/json") and raw:
        parsed = json.loads(raw)
    return Answer(response.status, answer_headers, parsed)


def assert_error(answer: Answer, status: int, code: str) -> None:
    assert answer.status == status, answer
    assert is_error_body(answer.body) and answer.body["error"]["code"] == code, answer


def post_tx(node: NodeProcess, tx: Transaction | bytes, source: str) -> Answer:
    raw = tx.raw if isinstance(tx, Transaction) else tx
    return call(node, "POST", "/txs", source, raw, "application/msgpack")


def wait_committed(node: NodeProcess, tx_hash: str, source: str) -> dict[str, Any]:
    def committed() -> dict[str, Any] | None:
        answer = call(node, "GET", f"/txs/{tx_hash}", source)
        return answer.body if answer.status == 200 and answer.body["status"] == "committed" else None

    return wait_until(committed, node.timeout, f"tx {tx_hash} committed")


# --- unit: the HTTP limiter -------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_client_keys_group_ipv6_by_64_and_unmap_ipv4() -> None:
    assert client_key("192.0.2.7") == "192.0.2.7"
    assert client_key("2001:db8:1:2:3:4:5:6") == client_key("2001:db8:1:2:ffff::1") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert client_key("fe80::1%eth0") == "fe80::/64"
    assert client_key(None) == client_key("") == "unknown"
    assert client_key("not an address") == "not an address"


def test_token_bucket_per_client_with_retry_after() -> None:
    clock = FakeClock()
    limiter = ClientRateLimiter(rate_per_s=2, burst=4, clock=clock)
    assert [limiter.retry_after("a") for _ in range(4)] == [None] * 4
    assert limiter.retry_after("a") == 1  # one token comes back after 0.5 s: rounded up to 1 s
    assert limiter.retry_after("b") is None  # another client is not affected
    clock.now += 0.5
    assert limiter.retry_after("a") is None
    assert limiter.retry_after("a") == 1
    slow = ClientRateLimiter(rate_per_s=0.25, burst=1, clock=clock)
    assert slow.retry_after("a") is None
    assert slow.retry_after("a") == 4
    assert limiter.refused == 2 and slow.refused == 1


def test_rate_zero_turns_the_limit_off_and_buckets_are_bounded() -> None:
    clock = FakeClock()
    off = ClientRateLimiter(rate_per_s=0, burst=1, clock=clock)
    assert all(off.retry_after("a") is None for _ in range(100)) and len(off) == 0
    limiter = ClientRateLimiter(rate_per_s=1, burst=1, max_clients=3, clock=clock)
    for name in ("a", "b", "c"):
        assert limiter.retry_after(name) is None
    assert limiter.retry_after("a") == 1  # "a" is now the most recently seen
    assert limiter.retry_after("d") is None
    assert len(limiter) == 3
    assert limiter.retry_after("a") == 1  # kept: "b", the least recently seen, was dropped
    assert limiter.retry_after("b") is None  # forgotten: a full bucket again


class FakeTransport:
    def __init__(self) -> None:
        self.closing = False

    def is_closing(self) -> bool:
        return self.closing


class FakeProtocol:
    def __init__(self) -> None:
        self.transport: FakeTransport | None = FakeTransport()


def test_connection_cap_counts_open_connections() -> None:
    cap = ConnectionCap(2)
    first, second, third = FakeProtocol(), FakeProtocol(), FakeProtocol()
    assert cap.admit(first) and cap.admit(second)
    assert cap.admit(first)  # a second request on an admitted connection
    assert not cap.admit(third) and cap.refused == 1
    first.transport = None  # closed
    assert cap.admit(third)
    assert second.transport is not None
    second.transport.closing = True
    assert cap.admit(FakeProtocol())
    assert cap.open_connections() == 2


def test_http_limit_options(tmp_path: Path) -> None:
    defaults = HttpConfig()
    assert (defaults.rate_per_ip, defaults.burst_per_ip, defaults.max_connections) == (200, 1000, 512)
    (tmp_path / "config.toml").write_text("[http]\nrate_per_ip = 0\nburst_per_ip = 5\nmax_connections = 3\n")
    config = load_config(tmp_path)
    assert (config.http.rate_per_ip, config.http.burst_per_ip, config.http.max_connections) == (0, 5, 3)
    assert apply_environment(config, {"MARKETCHAIN_HTTP_RATE_PER_IP": "7"}).http.rate_per_ip == 7
    for bad in ("rate_per_ip = -1", "burst_per_ip = 0", "max_connections = 0", 'rate_per_ip = "fast"'):
        (tmp_path / "config.toml").write_text(f"[http]\n{bad}\n")
        with pytest.raises(ConfigError, match=bad.split(" ")[0]):
            load_config(tmp_path)


# --- a real node with low HTTP limits ------------------------------------------------------

RATE, BURST, MAX_CONNECTIONS, MAX_BODY, MAX_BATCH = 5, 20, 8, 4096, 3


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Any:
    config = {"http": {"rate_per_ip": RATE, "burst_per_ip": BURST, "max_connections": MAX_CONNECTIONS,
                       "max_body_bytes": MAX_BODY, "max_batch_txs": MAX_BATCH}}
    with NodeProcess(tmp_path_factory.mktemp("limited") / "node", config=config, chain_id=CHAIN) as node:
        yield node


@pytest.mark.integration
def test_a_flood_from_one_address_is_limited_while_another_is_served(limited: NodeProcess) -> None:
    flood: list[Answer] = []
    stop = threading.Event()

    def flooder() -> None:
        while not stop.is_set() and len(flood) < 400:
            flood.append(call(limited, "GET", "/status", "127.0.0.2"))

    thread = threading.Thread(target=flooder)
    thread.start()
    try:
        wait_until(lambda: any(answer.status == 429 for answer in flood), 30, "a 429 for the flooder")
        others = []
        for _ in range(RATE):  # well within the other client's own budget
            others.append(call(limited, "GET", "/status", "127.0.0.3"))
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join()
    assert [answer.status for answer in others] == [200] * RATE, others
    statuses = [answer.status for answer in flood]
    assert set(statuses) == {200, 429}, statuses
    assert statuses.count(200) >= BURST  # the burst, then about RATE per second
    refused = [answer for answer in flood if answer.status == 429]
    for answer in refused:
        assert_error(answer, 429, "rate_limited")
        assert answer.headers["retry-after"].isdigit() and int(answer.headers["retry-after"]) >= 1
    time.sleep(int(refused[-1].headers["retry-after"]))
    assert call(limited, "GET", "/status", "127.0.0.2").status == 200  # served again once it slows down
    assert limited.running


@pytest.mark.integration
def test_connections_beyond_the_cap_are_refused_and_closed(limited: NodeProcess) -> None:
    open_connections = []
    try:
        for index in range(MAX_CONNECTIONS):
            connection = http.client.HTTPConnection("127.0.0.1", limited.http_port, timeout=30,
                                                    source_address=(f"127.0.1.{index + 1}", 0))
            open_connections.append(connection)
            # connections of earlier tests may take a moment to be seen closed
            wait_until(lambda c=connection: call(limited, "GET", "/status", "", connection=c).status == 200,
                       30, f"connection {index} served")
        with socket.create_connection(("127.0.0.1", limited.http_port), timeout=30,
                                      source_address=("127.0.2.1", 0)) as raw:
            raw.sendall(b"GET /status HTTP/1.1\r\nHost: node\r\n\r\n")
            received = b""
            while chunk := raw.recv(65536):  # until the node closes the connection
                received += chunk
        head, _, body = received.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 429 "), received
        assert b"\r\nretry-after: 1" in head.lower() and b"\r\nconnection: close" in head.lower(), head
        error = json.loads(body)
        assert is_error_body(error) and error["error"]["code"] == "rate_limited", error
        open_connections.pop().close()
        wait_until(lambda: call(limited, "GET", "/status", "127.0.2.2").status == 200, 30,
                   "a new connection served once one closed")
    finally:
        for connection in open_connections:
            connection.close()


@pytest.mark.integration
def test_body_and_batch_limits(limited: NodeProcess) -> None:
    source = "127.0.0.4"
    assert_error(post_tx(limited, b"\x00" * (MAX_BODY + 1), source), 413, "body_too_large")
    txs = [transfer(key("batch"), nonce).raw.hex() for nonce in range(MAX_BATCH + 1)]
    answer = call(limited, "POST", "/txs/batch", source, json.dumps({"txs": txs}).encode(), "application/json")
    assert_error(answer, 400, "malformed")
    assert str(MAX_BATCH) in answer.body["error"]["message"]


@pytest.mark.integration
def test_malformed_http_is_refused_and_the_node_goes_on(limited: NodeProcess) -> None:
    """aiohttp's own limits: a request line or header over 8190 bytes, or no HTTP at all, is 400.

    These answers come from aiohttp's parser before any handler, as text/plain (docs/security.md)."""
    for index, request in enumerate((b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
                                     b"GET /status HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n",
                                     b"\x16\x03\x01 not http\r\n\r\n")):
        with socket.create_connection(("127.0.0.1", limited.http_port), timeout=30,
                                      source_address=(f"127.0.3.{index + 1}", 0)) as raw:
            raw.sendall(request)
            assert raw.recv(4096).startswith(b"HTTP/1.0 400 "), request[:40]
    assert call(limited, "GET", "/status", "127.0.3.9").status == 200


@pytest.mark.integration
def test_p2p_oversized_frames_and_silent_peers_are_closed(limited: NodeProcess) -> None:
    status = call(limited, "GET", "/status", "127.0.0.6").body
    genesis_hash = bytes.fromhex(status["genesis_hash"])
    assert limited.p2p_port is not None
    port = limited.p2p_port

    async def scenario() -> tuple[float, bytes, bytes]:
        # 1. a hello frame announcing 4 GiB (hellos are at most 1024 bytes): closed at once
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"\xff\xff\xff\xff")
        await writer.drain()
        oversized_hello = await asyncio.wait_for(reader.read(), 30)
        writer.close()
        # 2. after a good handshake, a frame announcing more than 8 MiB: closed
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await handshake(reader, writer, node_key=KeyPair.generate(), chain_id=CHAIN,
                        genesis_hash=genesis_hash, initiator=True)
        writer.write((8 * 1024 * 1024 + 1).to_bytes(4, "big"))
        await writer.drain()
        oversized_frame = b""
        while True:  # the node's status and consensus messages, then EOF
            chunk = await asyncio.wait_for(reader.read(65536), 30)
            if not chunk:
                break
            oversized_frame += chunk
        writer.close()
        # 3. a peer that never sends its hello: closed after the handshake timeout
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        started = time.monotonic()
        while await asyncio.wait_for(reader.read(65536), 30):
            pass  # the node's own hello
        writer.close()
        return time.monotonic() - started, oversized_hello, oversized_frame

    silent_for, oversized_hello, _ = asyncio.run(scenario())
    assert oversized_hello == b"" or len(oversized_hello) < 1024  # at most the node's hello, then EOF
    assert HANDSHAKE_TIMEOUT_S - 1 <= silent_for <= HANDSHAKE_TIMEOUT_S + 10
    assert call(limited, "GET", "/status", "127.0.0.6").status == 200


# --- a real node with low chain and mempool limits -----------------------------------------

MAX_TX_BYTES, MAX_BLOCK_TXS, MEMPOOL_TXS, MEMPOOL_BYTES = 1024, 2, 3, 700
CHAIN_SENDERS = ("blocks", "replay", "mempool", "tag")


@pytest.fixture(scope="module")
def chain_node(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with NodeProcess(tmp_path_factory.mktemp("chain-limits") / "node", chain_id=CHAIN,
                     params={"max_tx_bytes": MAX_TX_BYTES, "max_block_txs": MAX_BLOCK_TXS},
                     fund={key(name).address: 10_000_000 for name in CHAIN_SENDERS},
                     config={"mempool": {"max_transactions": MEMPOOL_TXS, "max_bytes": MEMPOOL_BYTES}}) as node:
        yield node


@pytest.mark.integration
def test_tx_size_limit(chain_node: NodeProcess) -> None:
    assert_error(post_tx(chain_node, b"\x80" * (MAX_TX_BYTES + 1), "127.0.0.1"), 400, "tx_too_large")
    big = transfer(key("tag"), 0, memo="x" * 256)
    assert len(big.raw) < MAX_TX_BYTES


@pytest.mark.integration
def test_blocks_hold_at_most_max_block_txs(chain_node: NodeProcess) -> None:
    sender = key("blocks")
    txs = [transfer(sender, nonce) for nonce in range(3)]
    answer = call(chain_node, "POST", "/txs/batch", "127.0.0.1",
                  json.dumps({"txs": [tx.raw.hex() for tx in txs]}).encode(), "application/json")
    assert answer.status == 200 and all(set(result) == {"hash"} for result in answer.body["results"]), answer
    views = [wait_committed(chain_node, tx.hash.hex(), "127.0.0.1") for tx in txs]
    heights = {view["height"] for view in views}
    assert len(heights) >= 2
    for height in heights:
        assert call(chain_node, "GET", f"/blocks/{height}", "127.0.0.1").body["tx_count"] <= MAX_BLOCK_TXS


@pytest.mark.integration
def test_replayed_and_foreign_transactions_are_refused(chain_node: NodeProcess) -> None:
    """R9, R10: a committed tx sent again is `duplicate`, re-signed with its nonce `bad_nonce`;
    another chain's tx is `wrong_chain`; a chain id changed after signing is `bad_signature`."""
    sender = key("replay")
    tx = transfer(sender, 0)
    assert post_tx(chain_node, tx, "127.0.0.1").status == 202
    assert_error(post_tx(chain_node, tx, "127.0.0.1"), 400, "duplicate")  # while pending
    wait_committed(chain_node, tx.hash.hex(), "127.0.0.1")
    assert_error(post_tx(chain_node, tx, "127.0.0.1"), 400, "duplicate")  # once committed
    assert_error(post_tx(chain_node, transfer(sender, 0, fee=MIN_FEE + 1), "127.0.0.1"), 400, "bad_nonce")
    assert_error(post_tx(chain_node, transfer(sender, 1, chain_id=CHAIN + "-other"), "127.0.0.1"), 400, "wrong_chain")
    forged = codec.encode({**transfer(sender, 1, chain_id=CHAIN + "-other").to_map(), "chain_id": CHAIN})
    assert_error(post_tx(chain_node, forged, "127.0.0.1"), 400, "bad_signature")


@pytest.mark.integration
def test_a_signature_under_another_domain_tag_is_refused(chain_node: NodeProcess) -> None:
    """R4: the same key signing the same tx map under the `vote` (or any other) tag is `bad_signature`."""
    sender = key("tag")
    good = transfer(sender, 0)
    for kind in SIGNATURE_KINDS:
        if kind == "tx":
            continue
        signature = sender.sign(signing_bytes(kind, good.unsigned_map()))
        raw = codec.encode({**good.unsigned_map(), "sig": signature})
        assert_error(post_tx(chain_node, raw, "127.0.0.1"), 400, "bad_signature")
    assert post_tx(chain_node, good, "127.0.0.1").status == 202
    wait_committed(chain_node, good.hash.hex(), "127.0.0.1")


@pytest.mark.integration
def test_mempool_count_and_bytes_limits(chain_node: NodeProcess) -> None:
    """`[mempool] max_transactions` and `max_bytes`: beyond them admission says `mempool_full`.

    Future nonces (no nonce 0) stay pending, so this test runs last on this node."""
    sender = key("mempool")
    small = [transfer(sender, nonce) for nonce in (1, 2, 3, 4)]
    big = transfer(sender, 3, memo="x" * 256)
    assert 2 * len(small[0].raw) + len(big.raw) > MEMPOOL_BYTES >= 3 * len(small[0].raw)
    for tx in small[:2]:
        assert post_tx(chain_node, tx, "127.0.0.1").status == 202
    assert_error(post_tx(chain_node, big, "127.0.0.1"), 400, "mempool_full")  # bytes
    assert post_tx(chain_node, small[2], "127.0.0.1").status == 202
    assert_error(post_tx(chain_node, small[3], "127.0.0.1"), 400, "mempool_full")  # count
    assert call(chain_node, "GET", "/status", "127.0.0.1").body["mempool_size"] == MEMPOOL_TXS


# --- signatures: domain separation of votes, proposals and commits (R4, R26) ------------------


def test_signatures_do_not_cross_domains() -> None:
    signer = key("validator")
    vote = Vote(CHAIN, 5, 0, "precommit", b"\x01" * 32)
    proposal = Proposal(CHAIN, 5, 0, -1, b"\x01" * 32)
    for kind in SIGNATURE_KINDS:
        for value, own_kind, verify in ((vote.to_map(), "vote", vote.verify), (proposal.to_map(), "proposal", proposal.verify)):
            signature = signer.sign(signing_bytes(kind, value))
            assert verify(signer.address, signature) is (kind == own_kind), (kind, own_kind)
            for other in SIGNATURE_KINDS:
                assert verify_signature(signer.address, signing_bytes(other, value), signature) is (other == kind)
    commit = sign_commit([signer], CHAIN, 5, 0, b"\x01" * 32)
    verify_commit(commit, CHAIN, b"\x01" * 32, 5, [signer.address])
    wrong_tag = tuple(CommitSignature(entry.validator, signer.sign(signing_bytes("tx", vote.to_map())))
                      for entry in commit.signatures)
    with pytest.raises(InvalidBlock, match="invalid"):
        verify_commit(Commit(commit.block_hash, 5, 0, wrong_tag), CHAIN, b"\x01" * 32, 5, [signer.address])
    with pytest.raises(InvalidBlock):  # a commit signed for another chain
        verify_commit(sign_commit([signer], CHAIN + "-other", 5, 0, b"\x01" * 32), CHAIN, b"\x01" * 32, 5,
                      [signer.address])


# --- peers: unsolicited block sync responses ------------------------------------------------


class FakeSyncNode:
    """What BlockSync needs: a store at height 0, a job queue, penalties."""

    def __init__(self) -> None:
        self.penalties: list[str] = []

    def head(self) -> Any:
        return type("Tip", (), {"height": 0})()

    def submit(self, job: Any) -> None:
        pass

    def penalize(self, peer: bytes, amount: int, reason: str) -> None:
        self.penalties.append(reason)


def test_unsolicited_block_responses_are_not_hoarded() -> None:
    node = FakeSyncNode()
    sync = BlockSync(
        store=node, chain_id="test", params=Params(), send=lambda peer, kind, body: True,  # type: ignore[arg-type]
        peers=node, run_in_order=node.submit, on_block=lambda result: None, on_head_moved=lambda: None,
        signature_known_valid=lambda tx_hash: False,
    )
    for height in range(10, 10 + 1000):
        sync.receive(b"\x01" * 32, {"height": height * 1000, "block": b"\x00" * 1024, "commit": b""})
    assert len(sync._received) <= WINDOW


# --- the API surface ------------------------------------------------------------------------

WRITE_ROUTES = {("POST", "/txs"), ("POST", "/txs/batch")}


def test_the_api_documents_no_write_operation_but_tx_submission() -> None:
    assert {route for route in ROUTES if route[0] != "GET"} == WRITE_ROUTES


@pytest.mark.integration
def test_the_served_api_has_no_write_operation_but_tx_submission(limited: NodeProcess) -> None:
    document = call(limited, "GET", "/openapi.json", "127.0.0.7").body
    operations = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    assert {route for route in operations if route[0] != "GET"} == WRITE_ROUTES
    values = {"hash": "00" * 32, "height": "1", "address": "00" * 32, "id": "00" * 32, "name": "app.js", "index": "0"}
    for index, (_, path) in enumerate(sorted(operations)):
        target = path.format(**values)
        for other in ("PUT", "DELETE", "PATCH", "POST"):
            if (other, path) in operations:
                continue
            answer = call(limited, other, target, f"127.0.4.{index + 1}", b"{}", "application/json")
            assert answer.status in (404, 405), (other, target, answer)
            assert is_error_body(answer.body), answer


def test_keystore_safety_is_covered_in_test_keystore() -> None:
    """Wrong passphrases and tampered files: tests/test_keystore.py (named in docs/security.md)."""
    text = (REPO_ROOT / "tests" / "unit" / "client" / "test_keystore.py").read_text()
    for name in ("test_wrong_passphrase_fails_with_message", "test_tampered_ciphertext_fails_cleanly",
                 "test_tampered_salt_or_limits_fail_cleanly", "test_encrypted_file_does_not_contain_the_seed"):
        assert f"def {name}(" in text, name


@pytest.mark.integration
def test_secret_seeds_never_reach_the_log_or_the_api(tmp_path: Path) -> None:
    """Run a node at debug level through blocks, a restart and a stop: its node.log and its API
    never show the validator's or the node key's secret seed."""
    sender = key("logs")
    with NodeProcess(tmp_path / "node", chain_id=CHAIN, fund={sender.address: 10_000_000},
                     config={"log": {"level": "debug"}}) as node:
        for nonce in range(2):
            tx = transfer(sender, nonce)
            node.wait_for_tx(node.submit(tx.raw))
        node.restart()
        node.wait_for_tx(node.submit(transfer(sender, 2).raw))
        api = "".join(repr(call(node, "GET", path, "127.0.0.1").body)
                      for path in ("/status", "/validators", "/metrics", f"/accounts/{node.validator_address.hex()}",
                                   "/blocks/1", "/openapi.json")).lower()
        seeds = [node.validator_seed.hex(), json.loads((node.home / "node_key.json").read_text())["secret_seed"]]
    log = node.log_path.read_text(errors="replace")
    assert "DEBUG" in log or "debug" in log
    for seed in seeds:
        assert seed.lower() not in log.lower()
        assert seed.lower() not in api

"""Issue 13, HTTP: a client pays for the work it causes, before it is done, and cannot hold
connections (docs/api.md "Rate limits", docs/security.md; node/http/costs.py, limits.py,
connections.py, events.py).

Real nodes on loopback; each test uses its own 127.0.x.y source addresses (Linux routes all
of 127/8 to lo), so that one test's budget or connections never touch another's.

- `POST /txs/batch` is charged from its count before any transaction is checked: a batch
  the client's bucket cannot pay is 429 `rate_limited` with `Retry-After` and admits
  nothing, while another address is served.
- A list is charged its `limit` in rows before it is read: two pages of 100 blocks in a
  row spend the budget, plain requests still fit.
- Event streams are capped per address; connections per address from the moment they are
  accepted; a connection that dribbles its headers, or a body that never ends, is closed
  with 408 `request_timeout` within its deadline; a client that stops reading a large
  answer is dropped at the write deadline.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import pytest

from marketplace_tx.chain.transaction import Transaction, sign_transaction
from marketplace_tx.primitives.crypto import KeyPair
from tests.e2e.node_process import NodeProcess, is_error_body, wait_until

pytestmark = pytest.mark.integration

CHAIN = "marketchain-http-work"
RATE, BURST = 5, 20
"""The work node's budget per address: 5 request units per second, bursts of 20."""
JUNK_ITEMS = 3000
"""Transactions in a batch costing 30 units (+1 for the request), above the burst: paid from a
full bucket, it leaves the bucket 11 units in debt, so the next batch waits about 6 s."""
STREAMS_PER_IP, CONNECTIONS_PER_IP, HEADER_TIMEOUT_S, BODY_TIMEOUT_S, WRITE_TIMEOUT_S = 2, 4, 2, 2, 2
"""The guarded node's per-address caps and deadlines."""
BIG_BATCH = 100_000
"""Junk items whose answer (~7.5 MB) is more than the kernel's socket buffers hold (≤ 4 MiB)."""
DEADLINE_S = 60.0
"""Generous: the machine is loaded."""


def key(name: str) -> KeyPair:
    return KeyPair.from_seed(hashlib.sha256(b"test_http_work_limits/" + name.encode()).digest())


SENDER = key("sender")


def transfer(nonce: int) -> Transaction:
    return sign_transaction(SENDER, CHAIN, "transfer", {"to": key("recipient").address, "amount": 1}, nonce, 10)


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: Any


def call(node: NodeProcess, method: str, path: str, source: str, body: bytes | None = None,
         content_type: str | None = None) -> Answer:
    """One request from the loopback address `source` on a fresh connection."""
    connection = http.client.HTTPConnection("127.0.0.1", node.http_port, timeout=DEADLINE_S,
                                            source_address=(source, 0))
    try:
        connection.request(method, path, body=body, headers={"Content-Type": content_type} if content_type else {})
        response = connection.getresponse()
        raw = response.read()
        headers = {name.lower(): value for name, value in response.getheaders()}
    finally:
        connection.close()
    parsed: Any = json.loads(raw) if headers.get("content-type", "").startswith("application/json") else raw
    return Answer(response.status, headers, parsed)


def assert_error(answer: Answer, status: int, code: str) -> None:
    assert answer.status == status, answer
    assert is_error_body(answer.body) and answer.body["error"]["code"] == code, answer


def batch_body(raws: list[bytes]) -> bytes:
    return json.dumps({"txs": [raw.hex() for raw in raws]}).encode()


def read_until_closed(sock: socket.socket) -> bytes:
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


# --- charged by work ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def work_node(tmp_path_factory: pytest.TempPathFactory) -> Any:
    config = {"http": {"rate_per_ip": RATE, "burst_per_ip": BURST}}
    with NodeProcess(tmp_path_factory.mktemp("work") / "node", config=config, chain_id=CHAIN,
                     fund={SENDER.address: 10_000_000}) as node:
        yield node


def test_a_batch_is_charged_by_its_count_before_anything_is_checked(work_node: NodeProcess) -> None:
    source = "127.0.5.1"
    junk = [b"\x01"] * JUNK_ITEMS
    first = call(work_node, "POST", "/txs/batch", source, batch_body(junk), "application/json")
    assert first.status == 200 and len(first.body["results"]) == JUNK_ITEMS, first.status
    valid = [transfer(nonce) for nonce in range(3)]
    second = call(work_node, "POST", "/txs/batch", source, batch_body([tx.raw for tx in valid] + junk),
                  "application/json")
    assert_error(second, 429, "rate_limited")
    retry_after = int(second.headers["retry-after"])
    assert 1 <= retry_after <= 2 * BURST // RATE + 2, second.headers
    # (refused at its base cost while the bucket is in debt, or at its count: either way before any check)
    # nothing of the refused batch was admitted, and another address is served meanwhile
    assert_error(call(work_node, "GET", f"/txs/{valid[0].hash.hex()}", "127.0.5.2"), 404, "not_found")
    assert call(work_node, "GET", "/status", "127.0.5.2").status == 200

    again = second
    deadline = time.monotonic() + DEADLINE_S
    while again.status == 429 and time.monotonic() < deadline:  # a good client: it waits as asked
        time.sleep(int(again.headers["retry-after"]))
        again = call(work_node, "POST", "/txs/batch", source, batch_body([tx.raw for tx in valid] + junk),
                     "application/json")
    assert again.status == 200, again
    assert [set(result) for result in again.body["results"][:3]] == [{"hash"}] * 3, again.body["results"][:3]
    work_node.wait_for_tx(valid[2].hash.hex())


def test_a_list_is_charged_its_rows_before_it_is_read(work_node: NodeProcess) -> None:
    source = "127.0.5.3"
    assert call(work_node, "GET", "/blocks?limit=100", source).status == 200  # 1 + 100 rows × 0.1
    pages = [call(work_node, "GET", path, source) for path in ("/listings?limit=100", "/orders?limit=100",
                                                               "/shops?limit=100", "/blocks?limit=100")]
    refused = [answer for answer in pages if answer.status == 429]
    assert refused, [answer.status for answer in pages]  # 55 units asked of 20 and 5 per second
    for answer in refused:
        assert_error(answer, 429, "rate_limited")
        assert int(answer.headers["retry-after"]) >= 1
    time.sleep(1 / RATE)  # one unit back, by the rate: a refused page charged only its base cost
    assert call(work_node, "GET", "/status", source).status == 200  # so a plain request still fits


def test_http_work_options(tmp_path: Any) -> None:
    from node.config import ConfigError, HttpConfig, load_config

    defaults = HttpConfig()
    assert (defaults.max_connections_per_ip, defaults.max_event_streams_per_ip,
            defaults.header_timeout_s, defaults.body_timeout_s, defaults.write_timeout_s) == (64, 8, 20, 60, 60)
    for bad in ("max_connections_per_ip = 0", "max_event_streams_per_ip = 0", "header_timeout_s = 0",
                "body_timeout_s = 0", "write_timeout_s = 0"):
        (tmp_path / "config.toml").write_text(f"[http]\n{bad}\n")
        with pytest.raises(ConfigError, match=bad.split(" ")[0]):
            load_config(tmp_path)


# --- connections, streams, slow clients ---------------------------------------------------------


@pytest.fixture(scope="module")
def guarded_node(tmp_path_factory: pytest.TempPathFactory) -> Any:
    config = {"http": {"max_connections_per_ip": CONNECTIONS_PER_IP, "max_event_streams_per_ip": STREAMS_PER_IP,
                       "header_timeout_s": HEADER_TIMEOUT_S, "body_timeout_s": BODY_TIMEOUT_S,
                       "write_timeout_s": WRITE_TIMEOUT_S, "max_batch_txs": BIG_BATCH}}
    with NodeProcess(tmp_path_factory.mktemp("guarded") / "node", config=config, chain_id=CHAIN) as node:
        yield node


def open_stream(node: NodeProcess, source: str) -> tuple[socket.socket, bytes]:
    sock = socket.create_connection(("127.0.0.1", node.http_port), timeout=DEADLINE_S, source_address=(source, 0))
    sock.sendall(b"GET /events HTTP/1.1\r\nHost: node\r\n\r\n")
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(4096)
        if not chunk:
            break
        received += chunk
    return sock, received


def test_event_streams_are_capped_per_address(guarded_node: NodeProcess) -> None:
    streams = []
    try:
        for _ in range(STREAMS_PER_IP):
            sock, head = open_stream(guarded_node, "127.0.6.1")
            streams.append(sock)
            assert head.startswith(b"HTTP/1.1 200"), head
        assert_error(call(guarded_node, "GET", "/events", "127.0.6.1"), 429, "rate_limited")
        sock, head = open_stream(guarded_node, "127.0.6.2")  # another address
        streams.append(sock)
        assert head.startswith(b"HTTP/1.1 200"), head
    finally:
        for sock in streams:
            sock.close()

    def reopened() -> bool:
        sock, head = open_stream(guarded_node, "127.0.6.1")
        sock.close()
        return head.startswith(b"HTTP/1.1 200")

    wait_until(reopened, DEADLINE_S, "a stream again once the address's streams closed")


def test_connections_are_capped_per_address_from_accept(guarded_node: NodeProcess) -> None:
    source = "127.0.6.3"
    kept = []
    try:
        for _ in range(CONNECTIONS_PER_IP):  # kept alive after one request each
            connection = http.client.HTTPConnection("127.0.0.1", guarded_node.http_port, timeout=DEADLINE_S,
                                                    source_address=(source, 0))
            connection.request("GET", "/status")
            assert connection.getresponse().read() and True
            kept.append(connection)
        with socket.create_connection(("127.0.0.1", guarded_node.http_port), timeout=DEADLINE_S,
                                      source_address=(source, 0)) as extra:
            received = read_until_closed(extra)  # answered before it sends anything
        head, _, body = received.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 429 "), received
        assert b"retry-after: 1" in head.lower() and json.loads(body)["error"]["code"] == "rate_limited"
        assert call(guarded_node, "GET", "/status", "127.0.6.4").status == 200  # another address
    finally:
        for connection in kept:
            connection.close()
    wait_until(lambda: call(guarded_node, "GET", "/status", source).status == 200, DEADLINE_S,
               "served again once its connections closed")


def test_headers_sent_a_byte_at_a_time_are_cut_at_the_deadline(guarded_node: NodeProcess) -> None:
    with socket.create_connection(("127.0.0.1", guarded_node.http_port), timeout=DEADLINE_S,
                                  source_address=("127.0.6.5", 0)) as slow:
        started = time.monotonic()
        closed = threading.Event()

        def dribble() -> None:
            for byte in b"GET /status HTTP/1.1\r\nHost: node\r\nX-Slow: " + b"a" * 1000:
                if closed.wait(0.2):
                    return
                try:
                    slow.send(bytes([byte]))
                except OSError:
                    return

        writer = threading.Thread(target=dribble)
        writer.start()
        try:
            received = read_until_closed(slow)
        finally:
            closed.set()
            writer.join()
        held_s = time.monotonic() - started
    assert received.startswith(b"HTTP/1.1 408 "), received
    assert json.loads(received.partition(b"\r\n\r\n")[2])["error"]["code"] == "request_timeout"
    assert HEADER_TIMEOUT_S - 0.5 <= held_s <= HEADER_TIMEOUT_S + 20, held_s
    with socket.create_connection(("127.0.0.1", guarded_node.http_port), timeout=DEADLINE_S,
                                  source_address=("127.0.6.6", 0)) as silent:
        assert read_until_closed(silent).startswith(b"HTTP/1.1 408 ")  # never sent a byte: the same


def test_a_body_that_never_ends_is_cut_at_the_deadline(guarded_node: NodeProcess) -> None:
    with socket.create_connection(("127.0.0.1", guarded_node.http_port), timeout=DEADLINE_S,
                                  source_address=("127.0.6.7", 0)) as slow:
        slow.sendall(b"POST /txs HTTP/1.1\r\nHost: node\r\nContent-Type: application/msgpack\r\n"
                     b"Content-Length: 1000\r\n\r\n" + b"\x00" * 10)
        started = time.monotonic()
        received = read_until_closed(slow)
        held_s = time.monotonic() - started
    assert received.startswith(b"HTTP/1.1 408 "), received
    assert json.loads(received.partition(b"\r\n\r\n")[2])["error"]["code"] == "request_timeout"
    assert BODY_TIMEOUT_S - 0.5 <= held_s <= BODY_TIMEOUT_S + 20, held_s
    assert call(guarded_node, "GET", "/status", "127.0.6.7").status == 200


def test_a_client_that_stops_reading_is_dropped_at_the_write_deadline(guarded_node: NodeProcess) -> None:
    """A batch of `BIG_BATCH` junk items answers ~7.5 MB; a client with a tiny receive window
    that never reads leaves most of it in the node's buffers until the write deadline drops it."""
    body = batch_body([b"\x01"] * BIG_BATCH)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as slow:
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.bind(("127.0.6.8", 0))
        slow.settimeout(DEADLINE_S)
        slow.connect(("127.0.0.1", guarded_node.http_port))
        slow.sendall(b"POST /txs/batch HTTP/1.1\r\nHost: node\r\nContent-Type: application/json\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        time.sleep(WRITE_TIMEOUT_S + 8)  # not reading is the attack; the node's deadline passes meanwhile
        received = b""
        try:
            while chunk := slow.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass  # aborted: what was in flight, then a reset
    head, _, answer = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), received[:200]
    declared = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
    assert declared > 5_000_000 and len(answer) < declared, (declared, len(answer))  # cut off, not delivered
    assert call(guarded_node, "GET", "/status", "127.0.6.8").status == 200

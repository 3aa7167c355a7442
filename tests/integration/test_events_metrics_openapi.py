"""The operator's and explorer's surfaces on a real node process (PROTOCOL §10):
`GET /events` (server-sent events), `GET /metrics` (Prometheus), `GET /openapi.json` and
`GET /shops/{id}/stats`.

One node serves the module. Event streams are read by a background thread per stream
(http.client, which undoes the chunked encoding); every wait is a condition polled
until a generous deadline.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import socket
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from prometheus_client.parser import text_string_to_metric_families

from marketplace_tx.chain.transaction import Transaction
from marketplace_tx.primitives.crypto import KeyPair
from marketplace_tx.primitives.errors import ADMISSION_CODES, RULE_CODES
from node.events import (
    MAX_SUBSCRIBERS,
    ChainEvent,
    EventFilter,
    EventHub,
    SubscriberLimit,
    parse_event_id,
)
from node.http.openapi import API_ERROR_CODES, ROUTES, check_routes
from tests.e2e.node_process import NodeProcess, http_post, http_request, is_error_body, wait_until
from tests.integration.signing_client import SigningClient as Signer

pytestmark = pytest.mark.integration

FEE = 10
FUNDED = 10_000_000
DEADLINE = 60.0
PRICE = 2_500
EVIDENCE = hashlib.sha256(b"kyc").digest()


def key(name: str) -> KeyPair:
    return KeyPair.from_seed(hashlib.sha256(b"test_events_metrics_openapi/" + name.encode()).digest())


ALICE, CAROL, MERCHANT, BUYER, BUYER2, CARRIER, SELLER = (
    key(name) for name in ("alice", "carol", "merchant", "buyer", "buyer2", "carrier", "seller")
)
PEOPLE = (ALICE, CAROL, MERCHANT, BUYER, BUYER2, CARRIER, SELLER)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory):
    fund = {person.address: FUNDED for person in PEOPLE}
    with NodeProcess(tmp_path_factory.mktemp("observe") / "node", fund=fund) as node:
        yield node


@pytest.fixture(scope="module")
def signer(node: NodeProcess) -> Signer:
    return Signer(node)


# --- reading an event stream ----------------------------------------------------------


@dataclass(frozen=True)
class Event:
    id: str | None
    kind: str
    data: dict[str, Any]


class EventStream:
    """`GET /events` read line by line by a background thread.

    A line that is not UTF-8, or a `data` field that is not JSON, is a failure of the node:
    the reader records it (`bad_data`) and every later look at the stream raises it."""

    def __init__(self, node: NodeProcess, query: str = "", last_event_id: str | None = None) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", node.http_port, timeout=DEADLINE)
        headers = {"Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        self.connection.request("GET", "/events" + query, headers=headers)
        self.response = self.connection.getresponse()
        self.status = self.response.status
        self.content_type = self.response.getheader("Content-Type", "")
        self.events: list[Event] = []
        self.comments: list[str] = []
        self.bad_data: str | None = None
        self.ended = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        if self.status == 200:
            self.thread.start()
        else:
            self.body = json.loads(self.response.read())

    def _read(self) -> None:
        fields: dict[str, str] = {}
        try:
            while line := self.response.readline():
                text = line.decode().rstrip("\r\n")
                if text == "":
                    if "data" in fields:
                        self.events.append(Event(fields.get("id"), fields.get("event", "message"),
                                                 self._json(fields["data"])))
                    fields = {}
                elif text.startswith(":"):
                    self.comments.append(text)
                else:
                    name, _, value = text.partition(":")
                    fields[name] = value.removeprefix(" ")
        except UnicodeDecodeError as error:
            self.bad_data = f"a line of the stream is not UTF-8: {error}"
        except (OSError, ValueError, http.client.HTTPException):
            pass  # the stream was closed, or `_json` recorded bad data and stopped the reader
        finally:
            self.ended.set()

    def _json(self, data: str) -> dict[str, Any]:
        try:
            return json.loads(data)
        except ValueError:
            self.bad_data = f"an event's data is not JSON: {data[:200]!r}"
            raise

    def check(self) -> None:
        """Fail if the stream carried anything that is not a well-formed event."""
        assert self.bad_data is None, self.bad_data

    def wait_for(self, what: str, predicate: Any) -> Event:
        def found() -> Event | None:
            self.check()
            return next((event for event in list(self.events) if predicate(event)), None)

        return wait_until(found, DEADLINE, lambda: f"{what}; got {[(e.kind, e.data) for e in self.events]}")

    def close(self) -> None:
        sock = self.connection.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self.thread.is_alive():
            self.thread.join(DEADLINE)
        self.connection.close()

    def __enter__(self) -> EventStream:
        assert self.status == 200, getattr(self, "body", None)
        assert self.content_type.startswith("text/event-stream")
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
        self.check()


def txs_of(stream: EventStream) -> list[str]:
    return [event.data["hash"] for event in list(stream.events) if event.kind == "tx"]


# --- metrics ------------------------------------------------------------------------------


def scrape(node: NodeProcess) -> dict[str, float]:
    """Every sample of `/metrics` as `name{label=value,…}` → value."""
    response = http_request(node.url + "/metrics")
    assert response.status == 200 and response.content_type == "text/plain"
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(response.raw.decode()):
        for sample in family.samples:
            labels = ",".join(f"{name}={value}" for name, value in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def subscribers(node: NodeProcess) -> float:
    return scrape(node)["marketchain_events_subscribers"]


# --- OpenAPI ---------------------------------------------------------------------------------


SAMPLES = {"hash": "00" * 32, "id": "00" * 32, "address": "00" * 32, "height": "1", "name": "missing.js", "index": "0"}


def schema_validator(document: dict[str, Any], name: str) -> Draft202012Validator:
    """A validator of one component schema of the served document."""
    return Draft202012Validator({**document, "$ref": f"#/components/schemas/{name}"})


def test_openapi_document_validates_and_covers_every_route(node: NodeProcess) -> None:
    document = node.get_ok("/openapi.json")
    validate(document)
    documented = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    # build_app refuses to start unless it serves exactly ROUTES (check_routes), so the
    # running node proves app routes == ROUTES; here ROUTES == the served document.
    assert documented == set(ROUTES)
    codes = document["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]["enum"]
    assert set(ADMISSION_CODES) | set(RULE_CODES) | set(API_ERROR_CODES) <= set(codes)
    for operation in (op for item in document["paths"].values() for op in item.values()):
        assert {"405", "429", "500"} <= set(operation["responses"]), operation["operationId"]

    async def handler(request: web.Request) -> web.Response:
        return web.Response()

    def app_with(*extra: tuple[str, str]) -> web.Application:
        app = web.Application()
        for method, path in [*ROUTES, *extra]:
            app.router.add_route(method, path, handler)
        return app

    check_routes(app_with())
    with pytest.raises(RuntimeError, match="undocumented GET /secret"):
        check_routes(app_with(("GET", "/secret")))
    partial = web.Application()
    partial.router.add_get("/status", handler)
    with pytest.raises(RuntimeError, match="documented but not served GET /metrics"):
        check_routes(partial)


def test_every_documented_path_is_served(node: NodeProcess) -> None:
    for method, path in ROUTES:
        url = node.url + path.format(**SAMPLES)
        if path == "/events":
            with EventStream(node) as stream:
                assert stream.status == 200
            continue
        if method == "POST":
            response = http_request(url, "POST", b"{}", "application/json")
        else:
            response = http_request(url)
        assert response.status != 405, (method, path)
        if response.status >= 400:
            assert is_error_body(response.body), (method, path, response.raw[:200])
            assert not response.body["error"]["message"].startswith("no route"), (method, path)


# --- metrics ------------------------------------------------------------------------------------


def test_metrics_move_when_a_transaction_is_final(node: NodeProcess, signer: Signer) -> None:
    before = scrape(node)
    for name in (
        "marketchain_height", "marketchain_mempool_transactions", "marketchain_mempool_bytes",
        "marketchain_peers", "marketchain_leveldb_bytes", "marketchain_sync_target_height",
        "marketchain_sync_height", "marketchain_events_subscribers", "marketchain_p2p_delivered_total",
    ):
        assert name in before, name
    assert before["marketchain_height"] == node.height()
    tx = signer.tx(ALICE, "transfer", to=CAROL.address, amount=1)
    [view] = signer.ok(tx)

    def moved() -> dict[str, float] | None:
        after = scrape(node)
        return after if after["marketchain_height"] >= view["height"] else None

    after = wait_until(moved, DEADLINE, "marketchain_height reaches the tx's height")
    ok = "marketchain_txs_committed_total{result=ok}"
    assert after[ok] >= before.get(ok, 0) + 1
    assert after["marketchain_block_txs_count"] >= before.get("marketchain_block_txs_count", 0) + 1
    assert after["marketchain_blocks_total"] >= before.get("marketchain_blocks_total", 0) + 1
    assert after["marketchain_consensus_rounds_count"] >= 1
    assert after["marketchain_finality_seconds_count"] >= 1
    assert after["marketchain_block_apply_seconds_count{stage=commit}"] >= 1
    assert after["marketchain_signature_checks_total{kind=tx_admission}"] >= 1
    assert after["marketchain_txs_admitted_total{source=http}"] >= 1
    assert after["marketchain_leveldb_bytes"] > 0
    assert after["marketchain_http_request_duration_seconds_count{method=POST,route=/txs,status=202}"] >= 1
    assert after["marketchain_http_request_duration_seconds_count{method=GET,route=/txs/{hash},status=200}"] >= 1
    status, _ = http_post(node.url + "/txs", {"tx": "00"})
    assert status == 400
    assert scrape(node)["marketchain_txs_rejected_total{code=malformed}"] >= 1


# --- events ---------------------------------------------------------------------------------------


def test_events_stream_blocks_and_transactions_with_account_filter(node: NodeProcess, signer: Signer) -> None:
    with EventStream(node) as everything, EventStream(node, f"?account={ALICE.address.hex()}") as alices:
        carol_tx = signer.tx(CAROL, "transfer", to=BUYER.address, amount=5)
        [carol_view] = signer.ok(carol_tx)
        alice_tx = signer.tx(ALICE, "transfer", to=BUYER.address, amount=5)
        [alice_view] = signer.ok(alice_tx)
        height = alice_view["height"]
        block = everything.wait_for("block event", lambda e: e.kind == "block" and e.data["height"] == height)
        assert block.id == f"{height}:0"
        assert block.data["hash"] == alice_view["block_hash"] and block.data["tx_count"] >= 1
        assert block.data["proposer"] == node.validator_address.hex()
        tx_event = everything.wait_for("alice's tx", lambda e: e.kind == "tx" and e.data["hash"] == alice_tx.hash.hex())
        assert tx_event.data == {"hash": alice_tx.hash.hex(), "height": height, "index": alice_view["index"],
                                 "type": "transfer", "sender": ALICE.address.hex(), "ok": True}
        everything.wait_for("carol's tx", lambda e: e.kind == "tx" and e.data["hash"] == carol_tx.hash.hex())
        alices.wait_for("alice's tx", lambda e: e.kind == "tx" and e.data["hash"] == alice_tx.hash.hex())
        assert carol_view["height"] <= height
        assert carol_tx.hash.hex() not in txs_of(alices)  # final before alice's: it would have come first
        assert all(event.kind != "block" for event in alices.events)
        positions = [tuple(map(int, event.id.split(":"))) for event in everything.events]
        assert positions == sorted(positions) and len(set(positions)) == len(positions)
        previous = everything.events[everything.events.index(tx_event) - 1]
    with EventStream(node, last_event_id=previous.id) as resumed:
        first = resumed.wait_for("replay", lambda e: True)
        assert (first.id, first.kind, first.data) == (tx_event.id, "tx", tx_event.data)
    with EventStream(node, f"?account={ALICE.address.hex()}", last_event_id="0:0") as replayed:
        replayed.wait_for("alice's tx replayed", lambda e: e.kind == "tx" and e.data["hash"] == alice_tx.hash.hex())
    status, body = node.get("/events?account=xyz")
    assert status == 400 and body["error"]["code"] == "invalid_query"


def test_order_events_and_shop_stats(node: NodeProcess, signer: Signer) -> None:
    validator = node.validator_key
    signer.ok(*[signer.tx(validator, "role_grant", account=account.address, role=role, evidence_hash=EVIDENCE)
                for account, role in ((MERCHANT, "merchant"), (CARRIER, "carrier"))])
    shop_tx = signer.tx(MERCHANT, "shop_create", name="Event Teas", points_bps=100, max_redeem_bps=0)
    signer.ok(shop_tx)
    listing_tx = signer.tx(MERCHANT, "listing_create", shop_id=shop_tx.hash, title="Pu-erh", price=PRICE, stock=10)
    signer.ok(listing_tx)

    def place(buyer: KeyPair, quantity: int) -> Transaction:
        return signer.tx(buyer, "order_place", listing_id=listing_tx.hash, quantity=quantity, max_unit_price=PRICE,
                         shipping=b"sealed")

    order, other = place(BUYER, 2), place(BUYER2, 1)
    order_id, other_id = order.hash, other.hash
    with EventStream(node, f"?order={order_id.hex()}") as stream, \
            EventStream(node, f"?account={BUYER2.address.hex()}") as buyer2:
        signer.ok(order, other)
        accept, ship = (signer.tx(MERCHANT, "order_accept", order_id=order_id),
                        signer.tx(MERCHANT, "order_ship", order_id=order_id, carrier=CARRIER.address, tracking="T1"))
        signer.ok(accept, ship, signer.tx(MERCHANT, "order_accept", order_id=other_id))
        confirm = signer.tx(BUYER, "order_confirm", order_id=order_id)
        signer.ok(confirm, signer.tx(MERCHANT, "order_refund", order_id=other_id, amount=PRICE))
        stream.wait_for("completed", lambda e: e.kind == "order" and e.data["to"] == "completed")
        moves = [(e.data["from"], e.data["to"], e.data["by"]) for e in stream.events if e.kind == "order"]
        assert moves == [(None, "placed", "order_place"), ("placed", "accepted", "order_accept"),
                         ("accepted", "shipped", "order_ship"), ("shipped", "completed", "order_confirm")]
        completed = [e for e in stream.events if e.kind == "order"][-1].data
        assert completed["order_id"] == order_id.hex() and completed["tx"] == confirm.hash.hex()
        assert completed["buyer"] == BUYER.address.hex() and completed["merchant"] == MERCHANT.address.hex()
        assert txs_of(stream) == [tx.hash.hex() for tx in (order, accept, ship, confirm)]
        buyer2.wait_for("refunded", lambda e: e.kind == "order" and e.data["to"] == "refunded")
        assert {e.data["order_id"] for e in buyer2.events if e.kind == "order"} == {other_id.hex()}
    ended_at = node.get_ok(f"/orders/{order_id.hex()}")["ended_at"]
    day = datetime.fromtimestamp(ended_at / 1000, UTC).date().isoformat()

    stats = node.get_ok(f"/shops/{shop_tx.hash.hex()}/stats")
    document = node.get_ok("/openapi.json")
    schema_validator(document, "ShopAnalytics").validate(stats)
    schema_validator(document, "Order").validate(node.get_ok(f"/orders/{order_id.hex()}"))
    schema_validator(document, "Status").validate(node.status())
    assert stats["days"] == 30 and len(stats["daily"]) == 30 and stats["daily"][-1]["day"] == stats["to"]
    assert stats["complete"] is True
    assert stats["stats"] == node.get_ok(f"/shops/{shop_tx.hash.hex()}")["stats"]
    assert stats["stats"]["refund_rate_bps"] == 5000 and stats["stats"]["revenue"] == 2 * PRICE
    assert stats["window"] == {"orders_placed": 2, "orders_completed": 1, "revenue": 2 * PRICE,
                               "refunds": PRICE, "orders_refunded": 1}
    [that_day] = [entry for entry in stats["daily"] if entry["day"] == day]
    assert that_day["revenue"] == 2 * PRICE and that_day["orders_completed"] == 1
    assert len(node.get_ok(f"/shops/{shop_tx.hash.hex()}/stats?days=1")["daily"]) == 1
    for bad in ("0", "366", "x"):
        status, body = node.get(f"/shops/{shop_tx.hash.hex()}/stats?days={bad}")
        assert status == 400 and body["error"]["code"] == "invalid_query", bad
    status, body = node.get(f"/shops/{'11' * 32}/stats")
    assert status == 404 and body["error"]["code"] == "not_found"


def test_digital_listing_order_and_delivery_match_the_document(node: NodeProcess, signer: Signer) -> None:
    """R41 in the document: `digital` is a boolean on listings and orders, `delivery` the
    sealed content as hex or null, and `order_deliver` one of the transaction types."""
    document = node.get_ok("/openapi.json")
    schemas = document["components"]["schemas"]
    assert schemas["Listing"]["properties"]["digital"]["type"] == "boolean"
    assert schemas["Order"]["properties"]["digital"]["type"] == "boolean"
    assert "order_deliver" in schemas["Tx"]["properties"]["type"]["enum"]
    assert "order_deliver" in schemas["TxEvent"]["properties"]["type"]["enum"]
    assert {"order_deliver", "deadline"} <= set(schemas["OrderEvent"]["properties"]["by"]["enum"])
    validator = node.validator_key
    signer.ok(signer.tx(validator, "role_grant", account=SELLER.address, role="merchant", evidence_hash=EVIDENCE))
    shop_tx = signer.tx(SELLER, "shop_create", name="Code Shop", points_bps=0, max_redeem_bps=0)
    signer.ok(shop_tx)
    listing_tx = signer.tx(SELLER, "listing_create", shop_id=shop_tx.hash, title="Gift card", price=PRICE, stock=5,
                           digital=True)
    signer.ok(listing_tx)
    order = signer.tx(BUYER2, "order_place", listing_id=listing_tx.hash, quantity=1, max_unit_price=PRICE,
                      shipping=b"")
    signer.ok(order)
    placed = node.get_ok(f"/orders/{order.hash.hex()}")
    assert placed["digital"] is True and placed["delivery"] is None
    sealed = bytes(range(64))
    [deliver] = signer.ok(signer.tx(SELLER, "order_deliver", order_id=order.hash, content=sealed))
    schema_validator(document, "Tx").validate(deliver)
    delivered = node.get_ok(f"/orders/{order.hash.hex()}")
    assert delivered["state"] == "delivered" and delivered["delivery"] == sealed.hex()
    schema_validator(document, "Order").validate(delivered)
    schema_validator(document, "Listing").validate(node.get_ok(f"/listings/{listing_tx.hash.hex()}"))
    schema_validator(document, "OrderList").validate(node.get_ok(f"/orders?shop={shop_tx.hash.hex()}"))
    schema_validator(document, "ListingList").validate(node.get_ok(f"/listings?shop={shop_tx.hash.hex()}"))
    for bad in ({**delivered, "digital": None}, {**delivered, "delivery": "zz"}):
        assert not schema_validator(document, "Order").is_valid(bad), bad


def test_subscriber_cap_answers_429(node: NodeProcess) -> None:
    wait_until(lambda: subscribers(node) == 0, DEADLINE, "earlier streams closed")
    sockets: list[socket.socket] = []

    def open_stream(index: int) -> tuple[socket.socket, bytes]:
        # one stream per loopback address: an address may hold only [http] max_event_streams_per_ip
        sock = socket.create_connection(("127.0.0.1", node.http_port), timeout=DEADLINE,
                                        source_address=(f"127.0.{20 + index // 200}.{1 + index % 200}", 0))
        sock.sendall(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(4096)
            assert chunk, "the node closed the connection"
            received += chunk
        return sock, received

    try:
        for index in range(MAX_SUBSCRIBERS):
            sock, head = open_stream(index)
            sockets.append(sock)
            assert head.startswith(b"HTTP/1.1 200"), head
        assert subscribers(node) == MAX_SUBSCRIBERS
        refused = EventStream(node)
        refused.close()
    finally:
        for sock in sockets:
            sock.close()
    assert refused.status == 429 and is_error_body(refused.body)
    assert refused.body["error"]["code"] == "rate_limited"
    wait_until(lambda: subscribers(node) == 0, DEADLINE, "closed streams are forgotten")
    with EventStream(node) as again:
        assert again.status == 200


# --- the event hub alone (node/events.py) ------------------------------------------------------


def hub_event(height: int, sequence: int, kind: str = "tx", account: bytes = b"a" * 32) -> ChainEvent:
    return ChainEvent(height, sequence, kind, {"n": sequence}, frozenset({account}), None)


def test_hub_drops_a_subscriber_that_falls_behind_and_keeps_the_others() -> None:
    hub = EventHub(history_size=10, max_subscribers=2, queue_size=3)
    slow, _, _ = hub.subscribe(EventFilter())
    keeping_up, _, _ = hub.subscribe(EventFilter())
    with pytest.raises(SubscriberLimit):
        hub.subscribe(EventFilter())
    for sequence in range(3):
        hub.publish([hub_event(1, sequence)])
        assert [event.sequence for event in keeping_up.take()] == [sequence]
    assert not slow.dropped
    hub.publish([hub_event(1, 3)])
    assert slow.dropped and slow.take() == [] and not keeping_up.dropped and hub.dropped == 1
    hub.publish([hub_event(1, 4)])
    assert slow.take() == []


def test_hub_resume_replays_what_it_holds_and_reports_a_gap() -> None:
    hub = EventHub(history_size=3)
    hub.publish([hub_event(1, 0, "block"), hub_event(1, 1), hub_event(2, 0, "block"), hub_event(2, 1)])
    _, replay, gap = hub.subscribe(EventFilter(), parse_event_id("1:1"))
    assert [event.id for event in replay] == ["2:0", "2:1"] and not gap
    _, replay, gap = hub.subscribe(EventFilter(account=b"a" * 32), parse_event_id("0:0"))
    assert [event.id for event in replay] == ["1:1", "2:1"] and gap  # 1:0 is forgotten
    restarted = EventHub()
    restarted.start_after(5)
    assert restarted.subscribe(EventFilter(), (4, 3))[2] and not restarted.subscribe(EventFilter(), (6, 0))[2]
    assert parse_event_id("12:x") is None and parse_event_id("7") is None


def test_shutdown_ends_streams_and_a_restarted_node_resumes(tmp_path) -> None:
    with NodeProcess(tmp_path / "node", fund={ALICE.address: FUNDED}) as other:
        signer = Signer(other)
        stream = EventStream(other)
        [view] = signer.ok(signer.tx(ALICE, "transfer", to=CAROL.address, amount=1))
        stream.wait_for("the tx", lambda e: e.kind == "tx" and e.data["hash"] == view["hash"])
        started = time.monotonic()
        other.stop()  # asserts a clean exit
        assert time.monotonic() - started < 15, "an open stream held the node's shutdown"
        assert stream.ended.wait(DEADLINE)
        stream.close()
        other.start()
        with EventStream(other, last_event_id="0:0") as resumed:
            resumed.wait_for("the tx, rebuilt from storage", lambda e: e.kind == "tx" and e.data["hash"] == view["hash"])
            assert [event.kind for event in resumed.events][:2] == ["block", "tx"]

"""The merchant agent's webhooks end to end (issue 16): a real node, the agent as a real process,
and a real receiver in this process that checks every signature, answers 500 to some POSTs
and drops others. Every order event of the test's orders reaches it exactly once by
idempotency id (duplicates on the wire are deduped by id), also across a kill -9 of the
agent while events wait in its outbox and orders change while it is down.

The expected events are derived here from the orders' histories (R18) with the id formula
of docs/webhooks.md, independently of the agent's code.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from client import payloads
from client.merchant.cursor import Cursor
from client.transactions import send_and_wait
from marketplace_tx.primitives.crypto import KeyPair
from tests.e2e.harness.waiting import wait_until
from tests.e2e.merchant_network import AGENT_DEADLINE_S, AgentProcess, MerchantNetwork
from tests.e2e.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.integration

SECRET = "whsec_e2e_flaky_receiver"
"""The webhook secret (given to the agent through `secret_env`)."""

SECRET_VARIABLE = "E2E_MERCHANT_HOOK_SECRET"
"""The environment variable holding it."""


def flaky(number: int, event_id: str, attempt: int) -> str:
    """The first POST of two events in three fails (500) or is dropped; retries get through."""
    if attempt > 1:
        return "ok"
    return ("drop", "fail", "ok")[int(event_id[-2:], 16) % 3]


def failing(number: int, event_id: str, attempt: int) -> str:
    """A receiver that is down (500 to everything)."""
    return "fail"


def expected_events(order: dict[str, Any]) -> dict[str, str]:
    """{event id: type} of every state change in the order's history, by the documented formula."""
    order_id, events, previous = bytes.fromhex(order["id"]), {}, None
    for entry in order["history"]:
        if entry["state"] != previous:
            origin = b"deadline" if entry["tx"] == "deadline" else bytes.fromhex(entry["tx"])
            digest = hashlib.sha256(order_id + entry["height"].to_bytes(8, "big") + origin
                                    + entry["state"].encode()).digest()
            events["evt_" + digest[:16].hex()] = "order." + entry["state"]
        previous = entry["state"]
    return events


def warning_id(order: dict[str, Any]) -> str:
    """The id of the deadline warning of an accepted order."""
    digest = hashlib.sha256(bytes.fromhex(order["id"]) + b"deadline_warning"
                            + order["deadline"].to_bytes(8, "big")).digest()
    return "evt_" + digest[:16].hex()


class Market:
    """The module's node, merchant agent config and receiver."""

    def __init__(self, network: MerchantNetwork, receiver: WebhookReceiver, directory: Path) -> None:
        self.network, self.receiver = network, receiver
        self.state_dir = directory / "hooked-agent"
        webhook = {"url": receiver.url, "secret_env": SECRET_VARIABLE, "first_backoff_s": 0.2,
                   "max_backoff_s": 1.0, "timeout_s": 5.0}
        self.config = network.write_config(self.state_dir, accept={"auto": True}, webhook=webhook,
                                           warn_before_ms=10**12)
        network.import_codes(self.state_dir, [f"HOOK-{number}" for number in range(4)])
        # The agent's first run anchors its cursor at the node's height when it starts; orders
        # placed before that are not webhooks. Start it from the market's current height, so
        # that every event of this test's orders (placed before the agent runs) is in its stream.
        Cursor(self.state_dir).advance(f"{network.client.status()['height']}:0")

    def agent(self) -> AgentProcess:
        return AgentProcess(self.config, self.network.merchant_key_file, {SECRET_VARIABLE: SECRET},
                            self.state_dir.parent / "hooked-agent.log")

    def order(self, buyer: KeyPair, listing: bytes) -> bytes:
        return self.network.place_order(buyer, listing)

    def confirm(self, buyer: KeyPair, order_id: bytes) -> None:
        send_and_wait(self.network.client, buyer, "order_confirm", payloads.order_only(order_id))

    def wait_delivered(self, ids: set[str], agent: AgentProcess) -> None:
        wait_until(lambda: ids <= set(self.receiver.snapshot()[1]), AGENT_DEADLINE_S,
                   lambda: f"webhooks {sorted(ids - set(self.receiver.snapshot()[1]))}\n{agent.log_tail()}")


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Market]:
    directory = tmp_path_factory.mktemp("webhooks")
    receiver = WebhookReceiver(SECRET.encode(), flaky)
    receiver.start_in_thread()
    network = MerchantNetwork.start(directory)
    try:
        yield Market(network, receiver, directory)
    finally:
        network.node.kill()
        receiver.stop_thread()


def test_every_order_event_reaches_a_flaky_receiver_once_by_id_across_a_kill_9(market: Market) -> None:
    network, receiver = market.network, market.receiver
    first_buyer, second_buyer, third_buyer = network.buyers
    agent = market.agent().start()
    try:
        digital = market.order(first_buyer, network.digital_listing)
        parcel = market.order(second_buyer, network.parcel_listing)
        network.wait_for_state(digital, "delivered", agent)
        market.confirm(first_buyer, digital)
        network.wait_for_state(parcel, "accepted", agent)
        before_kill = {**expected_events(network.order(digital)), **expected_events(network.order(parcel))}
        assert set(before_kill.values()) == {"order.placed", "order.delivered", "order.completed",
                                             "order.accepted"}
        market.wait_delivered(set(before_kill), agent)

        receiver.policy = failing
        waiting = market.order(third_buyer, network.digital_listing)
        network.wait_for_state(waiting, "delivered", agent)
        waiting_events = expected_events(network.order(waiting))
        wait_until(lambda: all(receiver.attempts_of(event_id) for event_id in waiting_events),
                   AGENT_DEADLINE_S, lambda: f"attempts of {waiting_events}\n{agent.log_tail()}")
    finally:
        agent.kill()

    late_parcel = market.order(first_buyer, network.parcel_listing)
    market.confirm(third_buyer, waiting)
    receiver.policy = flaky
    with market.agent() as restarted:
        network.wait_for_state(late_parcel, "accepted", restarted)
        orders = [network.order(order_id) for order_id in (digital, parcel, waiting, late_parcel)]
        expected = {event_id: kind for order in orders for event_id, kind in expected_events(order).items()}
        expected[warning_id(orders[1])] = "order.deadline_warning"
        market.wait_delivered(set(expected), restarted)

    requests, delivered = receiver.snapshot()
    assert all(request.signature_ok for request in requests), "every POST carries a valid signature"
    late_warning = warning_id(orders[3])
    assert set(delivered) - {late_warning} == set(expected), "exactly the orders' events, each once by id"
    for event_id, raw in delivered.items():
        body = json.loads(raw)
        assert body["id"] == event_id
        kind = expected.get(event_id, "order.deadline_warning")
        assert body["type"] == kind
        assert "delivery" not in body["data"]["order"], "the sealed content is never in a webhook"
        if kind != "order.deadline_warning":
            assert "order." + body["data"]["to"] == kind
    assert {request.outcome for request in requests} >= {"drop", "fail", "ok"}
    assert any(len(receiver.attempts_of(event_id)) > 1 for event_id in delivered), "retries were needed"
    assert all(receiver.attempts_of(event_id)[-1].outcome == "ok" for event_id in waiting_events), \
        "the events waiting in the outbox at the kill were delivered by the restarted agent"

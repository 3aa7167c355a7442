"""The merchant agent as a real process against a real node (issue 16): a digital order is
delivered unattended and opened by its buyer, parcel orders are accepted per `[accept]`,
running out of codes rejects with the reason (escrow back at once), kill -9 at each crash
point never repeats or loses a code, and a node restart under the agent misses nothing.

One module-scoped market and one state directory serve the tests; each test starts the
agent if none runs, so that any subset runs alone (pytest-xdist may split the module between
workers, each with its own market); the last checks hold over everything delivered there.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from client.delivery import open_delivery
from client.merchant.crash_points import CRASH_POINTS, CRASH_VARIABLE
from client.merchant.decisions import OUT_OF_STOCK_REASON
from tests.e2e.cli_testnet import cli
from tests.e2e.merchant_network import INVENTORY_PASSPHRASE, PRICE, AgentProcess, MerchantNetwork

pytestmark = pytest.mark.integration

CODES = [f"GIFT-{number:04d}-{'X' * 8}" for number in range(8)]
"""The codes imported for the digital listing."""

MAX_AMOUNT = 2 * PRICE
"""`[accept] max_amount` of the agent: one or two units are accepted, three are not."""


WARN_BEFORE_MS = 6 * 86_400_000
"""`[agent] warn_before_ms`: longer than the default ship window (5 days), so that an accepted
parcel order is warned about at once."""


class Shop:
    """The module's market, the agent's config and the agent running now."""

    def __init__(self, network: MerchantNetwork, directory: Path) -> None:
        self.network = network
        self.state_dir = directory / "agent"
        self.config = network.write_config(self.state_dir, accept={"auto": True, "max_amount": MAX_AMOUNT},
                                           warn_before_ms=WARN_BEFORE_MS)
        self.agent: AgentProcess | None = None
        self.delivered: dict[bytes, int] = {}
        """Digital orders delivered so far → their buyer's index."""

    def start_agent(self, environment: dict[str, str] | None = None) -> AgentProcess:
        """Start an agent (the previous one must have ended)."""
        self.agent = AgentProcess(self.config, self.network.merchant_key_file, environment,
                                  self.state_dir.parent / "agent.log").start()
        return self.agent

    def running_agent(self) -> AgentProcess:
        """The agent running now, started if none is."""
        if self.agent is None or not self.agent.running:
            return self.start_agent()
        return self.agent

    def codes_list(self) -> tuple[int, int, int]:
        """(free, reserved, used) of the digital listing, from `marketchain merchant codes list`."""
        output = cli("merchant", "codes", "list", "--config", str(self.config)).stdout
        match = re.search(rf"{self.network.digital_listing.hex()}\s+(\d+)\s+(\d+)\s+(\d+)", output)
        assert match, output
        free, reserved, used = (int(value) for value in match.groups())
        return free, reserved, used


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    directory = tmp_path_factory.mktemp("merchant")
    network = MerchantNetwork.start(directory)
    patch = pytest.MonkeyPatch()
    patch.setenv("MARKETCHAIN_INVENTORY_PASSPHRASE", INVENTORY_PASSPHRASE)  # for `merchant codes add`
    try:
        running = Shop(network, directory)
        MerchantNetwork.create_inventory(running.state_dir)  # weak Argon2id limits, stored in the file
        codes_file = directory / "codes.txt"
        codes_file.write_text("\n".join(CODES) + "\n\n")
        completed = cli("merchant", "codes", "add", "--config", str(running.config), "--listing",
                        network.digital_listing.hex(), "--file", str(codes_file))
        assert f"imported {len(CODES)} code(s)" in completed.stdout
        yield running
        if running.agent is not None:
            running.agent.stop()
    finally:
        patch.undo()
        network.node.kill()


def test_a_digital_order_is_delivered_unattended_and_the_buyer_opens_it(shop: Shop) -> None:
    free, reserved, used = shop.codes_list()
    agent = shop.running_agent()
    buyer = shop.network.buyers[0]
    order_id = shop.network.place_order(buyer, shop.network.digital_listing)
    shop.network.wait_for_state(order_id, "delivered", agent)
    opened = open_delivery(shop.network.client, buyer, order_id).decode()
    assert opened in CODES
    shop.delivered[order_id] = 0
    agent.wait_for_log(f"order {order_id.hex()}: delivered 1 code(s)")
    assert shop.codes_list() == (free - 1, reserved, used + 1)


def test_parcel_orders_are_accepted_up_to_max_amount_and_left_placed_above_it(shop: Shop) -> None:
    agent = shop.running_agent()
    network = shop.network
    small = network.place_order(network.buyers[1], network.parcel_listing, quantity=2)
    large = network.place_order(network.buyers[1], network.parcel_listing, quantity=3)
    network.wait_for_state(small, "accepted", agent)
    agent.wait_for_log(f"order {small.hex()}: accepted and not shipped")
    agent.wait_for_log(f"order {large.hex()}: left for a person (escrow {3 * PRICE} µMKT is above [accept] max_amount")
    assert network.order(large)["state"] == "placed"


def test_out_of_codes_rejects_with_the_reason_and_the_escrow_comes_back(shop: Shop) -> None:
    agent, network = shop.running_agent(), shop.network
    free, _, _ = shop.codes_list()
    buyer = network.buyers[2]
    balance = network.client.account(buyer.address)["balance"]
    order_id = network.place_order(buyer, network.digital_listing, quantity=free + 1)
    order = network.wait_for_state(order_id, "rejected", agent)
    assert order["history"][-1]["reason"] == OUT_OF_STOCK_REASON
    fee = network.client.status()["min_fee"]
    assert network.client.account(buyer.address)["balance"] == balance - fee  # only the order_place fee
    assert shop.codes_list()[0] == free  # no code was taken


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_kill_9_in_a_delivery_neither_repeats_nor_loses_a_code(shop: Shop, point: str) -> None:
    network = shop.network
    if shop.agent is not None and shop.agent.running:
        shop.agent.stop()
    crashing = shop.start_agent({CRASH_VARIABLE: point})
    buyer_index = CRASH_POINTS.index(point)
    order_id = network.place_order(network.buyers[buyer_index], network.digital_listing)
    assert crashing.wait_exit() == -9, crashing.log_tail()
    assert (shop.state_dir / f"crashed-{point}").exists()
    agent = shop.start_agent()
    network.wait_for_state(order_id, "delivered", agent)
    shop.delivered[order_id] = buyer_index
    agent.wait_for_log(f"order {order_id.hex()}: delivered")  # by this run, or seen on the chain after a crash
    assert shop.codes_list()[1:] == (0, len(shop.delivered))


def test_every_delivered_order_carries_its_own_codes_and_none_is_lost(shop: Shop) -> None:
    network = shop.network
    if not shop.delivered:  # the module was split between workers: deliver something here first
        order_id = network.place_order(network.buyers[0], network.digital_listing)
        network.wait_for_state(order_id, "delivered", shop.running_agent())
        shop.delivered[order_id] = 0
    opened = [open_delivery(network.client, network.buyers[index], order_id).decode()
              for order_id, index in shop.delivered.items()]
    codes = [code for text in opened for code in text.split("\n")]
    assert len(codes) == len(set(codes)) == len(shop.delivered)  # one unit each, never a code twice
    assert set(codes) <= set(CODES)
    free, reserved, used = shop.codes_list()
    assert (free, reserved, used) == (len(CODES) - len(codes), 0, len(codes))


def test_a_node_restart_under_the_agent_misses_no_order(shop: Shop) -> None:
    network, agent = shop.network, shop.running_agent()
    network.node.restart()
    order_id = network.place_order(network.buyers[0], network.parcel_listing)
    network.wait_for_state(order_id, "accepted", agent)

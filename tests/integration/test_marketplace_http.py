"""The marketplace read model over HTTP on a real node process (PROTOCOL §5, §6, §10, R12–R22).

One node serves the module. The `market` fixture plays a whole market through it:
a registrar grants roles, a merchant opens a shop with an arbiter, registers items
and lists goods, buyers order, the merchant accepts and ships, the carrier delivers,
buyers confirm and review, the merchant replies; it also sends transactions that
fail a rule (tests/integration/marketplace_play.py). The tests then read every
endpoint. Bad requests are in test_marketplace_bad_requests.py, deadlines in
test_marketplace_deadlines.py.
"""

from __future__ import annotations

import nacl.public
import pytest

from marketplace_tx.rules.reputation import Reputation, trust_score
from tests.e2e.node_process import NodeProcess
from tests.integration.marketplace_play import (
    ARBITER,
    BUYER,
    BUYER2,
    CARRIER,
    CUP_PRICE,
    FUNDED,
    MERCHANT,
    PEOPLE,
    POINTS_BPS,
    POT_PRICE,
    TEA_PRICE,
    Market,
    get,
    paged,
    play_market,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory):
    fund = {person.address: FUNDED for person in PEOPLE}
    with NodeProcess(tmp_path_factory.mktemp("market") / "node", fund=fund) as node:
        yield play_market(node)


# --- orders ---------------------------------------------------------------------------------


def test_order_history_escrow_and_shipping(market: Market) -> None:
    order = get(market, f"/orders/{market.tea_order}")
    assert order["id"] == market.tea_order
    assert (order["state"], order["escrow"], order["merchant_paid"]) == (
        "completed",
        0,
        3 * TEA_PRICE,
    )
    assert order["buyer"] == BUYER.address.hex() and order["merchant"] == MERCHANT.address.hex()
    assert order["shop_id"] == market.shop and order["carrier"] == CARRIER.address.hex()
    assert order["deadline"] is None and order["ended_at"] == order["history"][-1]["time"]
    for stamp in ("placed_at", "accepted_at", "shipped_at", "delivered_at"):
        assert isinstance(order[stamp], int), stamp
    assert order["review_deadline"] == order["ended_at"] + 2592000000
    secret = nacl.public.PrivateKey(MERCHANT.x25519_secret_key())
    assert nacl.public.SealedBox(secret).decrypt(bytes.fromhex(order["shipping"])) == b"address"
    history = order["history"]
    assert [(entry["event"], entry["state"]) for entry in history] == [
        ("order_place", "placed"),
        ("order_accept", "accepted"),
        ("order_ship", "shipped"),
        ("shipment_update", "shipped"),
        ("shipment_update", "shipped"),
        ("shipment_update", "delivered"),
        ("order_confirm", "completed"),
    ]
    names = [
        "tea_order",
        "accept_0",
        "ship_0",
        "picked_up_0",
        "in_transit_0",
        "delivered_0",
        "confirm_0",
    ]
    assert [entry["tx"] for entry in history] == [market.hash(name) for name in names]
    assert [entry.get("status") for entry in history[3:6]] == [
        "picked_up",
        "in_transit",
        "delivered",
    ]
    assert history[2]["tracking"] == "SF0" and history[2]["carrier"] == CARRIER.address.hex()
    for entry in history:
        assert entry["height"] == market.node.get_ok(f"/txs/{entry['tx']}")["height"]
    assert order["review"]["rating"] == 4 and order["review"]["reply"]["text"] == "thank you"


def test_money_is_conserved(market: Market) -> None:
    """R17: balances plus open escrows equal the genesis supply."""
    genesis = market.node.genesis()
    supply = sum(account["balance"] for account in genesis["accounts"])
    addresses = {account["address"] for account in genesis["accounts"]} | set(genesis["validators"])
    balances = sum(market.node.account(address)["balance"] for address in addresses)
    orders = paged(market, "/orders", "orders", 100)
    assert len(orders) == 4
    escrow = sum(order["escrow"] for order in orders)
    assert escrow == 2 * CUP_PRICE
    assert balances + escrow == supply


def test_order_lists_filter_and_page(market: Market) -> None:
    def ids(query: str) -> list[str]:
        return [order["id"] for order in paged(market, f"/orders?{query}", "orders", 1)]

    buyer = BUYER.address.hex()
    assert ids(f"buyer={buyer}") == [market.rejected_order, market.pot_order, market.tea_order]
    assert ids(f"buyer={buyer}&state=completed") == [market.pot_order, market.tea_order]
    assert ids("state=placed") == [market.open_order]
    assert ids(f"merchant={MERCHANT.address.hex()}&state=rejected") == [market.rejected_order]
    assert ids(f"shop={market.shop}") == [
        market.open_order,
        market.rejected_order,
        market.pot_order,
        market.tea_order,
    ]
    assert ids(f"buyer={BUYER2.address.hex()}&state=completed") == []
    page = get(market, f"/orders?buyer={buyer}&limit=2")
    assert len(page["orders"]) == 2 and page["next"] is not None
    assert page["orders"][0]["history"][-1]["event"] == "order_reject"


def test_rule_failures_show_their_code(market: Market) -> None:
    for code, view in market.failures.items():
        result = view["result"]
        assert (result["ok"], result["code"]) == (False, code), view
        assert result["message"], view
    cup = get(market, f"/listings/{market.cup}")
    assert cup["stock"] == 98, "a failed order took stock"
    assert get(market, f"/orders/{market.open_order}")["state"] == "placed"


# --- shops, reviews, listings, items ------------------------------------------------------


def test_shop_reputation_and_stats(market: Market) -> None:
    shop = get(market, f"/shops/{market.shop}")
    assert shop["id"] == market.shop and shop["owner"] == MERCHANT.address.hex()
    assert shop["name"] == "Lotus Tea House" and shop["arbiters"] == [ARBITER.address.hex()]
    reputation = shop["reputation"]
    assert (
        reputation["rating_count"],
        reputation["rating_sum"],
        reputation["avg_rating_x100"],
    ) == (2, 9, 450)
    assert reputation["orders_completed"] == 2 and reputation["orders_expired"] == 0
    assert reputation["trust_score"] == trust_score(Reputation(**reputation))
    assert shop["stats"] == {
        "orders_placed": 4,
        "orders_completed": 2,
        "units_sold": 4,
        "revenue": 3 * TEA_PRICE + POT_PRICE,
        "orders_refunded": 0,
        "refund_rate_bps": 0,
        "dispute_rate_bps": 0,
    }
    assert (shop["listing_count"], shop["active_listing_count"]) == (4, 3)
    assert [
        item["id"] for item in get(market, f"/shops?owner={MERCHANT.address.hex()}")["shops"]
    ] == [market.shop]
    assert get(market, f"/shops?owner={BUYER.address.hex()}") == {"shops": [], "next": None}
    assert market.shop in [item["id"] for item in paged(market, "/shops", "shops", 1)]


def test_reviews_with_replies(market: Market) -> None:
    reviews = paged(market, f"/shops/{market.shop}/reviews", "reviews", 1)
    buyer = BUYER.address.hex()
    pot_review, tea_review = reviews
    assert pot_review == {
        "order_id": market.pot_order,
        "buyer": buyer,
        "rating": 5,
        "time": pot_review["time"],
        "height": pot_review["height"],
    }
    assert tea_review["order_id"] == market.tea_order and tea_review["text"] == "fresh"
    assert tea_review["reply"]["text"] == "thank you"
    assert (
        tea_review["reply"]["height"]
        == market.node.get_ok(f"/txs/{market.hash('reply_0')}")["height"]
    )


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("q=yunnan", ["tea"]),
        ("q=TEA", ["cup", "tea"]),
        ("q=green%20tea", ["tea"]),
        ("q=tea&max_price=1000", ["cup"]),
        ("tag=teaware", ["cup", "pot"]),
        ("tag=TeaWare&min_price=1000", ["pot"]),
        ("min_price=1000&max_price=100000", ["tea"]),
        ("active=false", ["old_stock"]),
        ("active=true&q=tea", ["cup", "tea"]),
        ("shop={shop}", ["old_stock", "cup", "pot", "tea"]),
        ("shop={shop}&tag=organic", ["tea"]),
        ("q=nothing", []),
    ],
)
def test_listing_search(market: Market, query: str, expected: list[str]) -> None:
    found = paged(market, f"/listings?{query.format(shop=market.shop)}", "listings", 1)
    assert [item["id"] for item in found] == [getattr(market, name) for name in expected]
    for item in found:
        assert item["shop_name"] == "Lotus Tea House"


def test_listing_view(market: Market) -> None:
    tea = get(market, f"/listings/{market.tea}")
    assert (
        tea["id"] == market.tea
        and tea["shop_id"] == market.shop
        and tea["shop_name"] == "Lotus Tea House"
    )
    assert (tea["price"], tea["stock"], tea["sold"], tea["active"]) == (TEA_PRICE, 47, 3, True)
    assert tea["tags"] == ["Tea", "organic"]
    pot = get(market, f"/listings/{market.pot}")
    assert pot["item_ids"] == ["TEA-POT:002"] and pot["stock"] == 1 and pot["item_listing"] is True


def test_items_carry_their_provenance(market: Market) -> None:
    buyer = BUYER.address.hex()
    sold = get(market, "/items/TEA-POT:001")
    assert sold["id"] == "TEA-POT:001"
    assert (sold["owner"], sold["custodian"], sold["listing_id"]) == (buyer, buyer, None)
    assert sold["producer"] == MERCHANT.address.hex()
    assert [entry["kind"] for entry in sold["history"]] == ["registered", "listed", "sold"]
    sale = sold["history"][-1]
    assert (sale["order_id"], sale["to"], sale["tx"]) == (
        market.pot_order,
        buyer,
        market.hash("confirm_1"),
    )
    unsold = get(market, "/items/TEA-POT:002")
    assert unsold["owner"] == MERCHANT.address.hex() and unsold["listing_id"] == market.pot


# --- accounts -------------------------------------------------------------------------------


def test_account_points_and_reputation(market: Market) -> None:
    buyer = market.node.account(BUYER.address)
    earned = (3 * TEA_PRICE + POT_PRICE) * POINTS_BPS // 10000
    assert buyer["points"] == {market.shop: earned}, "redeemed points of a rejected order come back"
    assert buyer["reputation"] is None
    merchant = market.node.account(MERCHANT.address)
    assert merchant["points"] == {}
    assert merchant["reputation"]["orders_completed"] == 2
    assert merchant["reputation"]["revenue"] == 3 * TEA_PRICE + POT_PRICE
    assert market.node.account(CARRIER.address)["reputation"] is None


def test_account_transactions_page_newest_first(market: Market) -> None:
    txs = paged(market, f"/accounts/{BUYER.address.hex()}/txs", "txs", 3)
    own = [tx for tx in market.txs.values() if tx.sender == BUYER.address]
    on_orders = [
        market.txs[name]
        for name in market.txs
        if name.split("_")[0] in ("accept", "ship", "picked", "in", "delivered", "reply", "reject")
    ]
    expected = {tx.hash.hex() for tx in own + on_orders} | {market.hash("bad_sender")}
    assert {tx["hash"] for tx in txs} == expected and len(txs) == len(expected)
    positions = [(tx["height"], tx["index"]) for tx in txs]
    assert positions == sorted(positions, reverse=True)
    for tx in txs[:5]:
        view = market.node.get_ok(f"/txs/{tx['hash']}")
        assert (tx["height"], tx["index"], tx["type"], tx["sender"]) == (
            view["height"],
            view["index"],
            view["type"],
            view["sender"],
        )
        assert tx["ok"] == view["result"]["ok"]
    failed = next(tx for tx in txs if tx["hash"] == market.hash("bad_sender"))
    assert (failed["ok"], failed["code"], failed["sender"]) == (
        False,
        "forbidden",
        BUYER2.address.hex(),
    )
    carrier = paged(market, f"/accounts/{CARRIER.address.hex()}/txs", "txs", 100)
    assert [tx["type"] for tx in carrier].count("shipment_update") == 6
    assert carrier[-1]["type"] == "role_grant"

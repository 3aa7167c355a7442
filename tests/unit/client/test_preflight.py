"""Check before signing (issue 12): against a fake node's committed state, each doomed
transaction is refused naming the rule and the code the chain would commit, and a good one
says what it would do."""

from __future__ import annotations

from typing import Any

import pytest

from client.node_client import ClientError
from client.preflight import Refused, check_before_signing

BUYER, MERCHANT, CARRIER, ARBITER, STRANGER = (bytes([n]) * 32 for n in range(1, 6))
ORDER_ID, LISTING_ID, SHOP_ID = b"\xaa" * 32, b"\xbb" * 32, b"\xcc" * 32
NOW = 1_000_000


class FakeNode:
    """Committed state as the node's JSON views."""

    def __init__(self, **order: Any) -> None:
        self.accounts = {address.hex(): {"balance": 50_000_000, "roles": [], "points": {}}
                         for address in (BUYER, MERCHANT, CARRIER, ARBITER, STRANGER)}
        self.accounts[ARBITER.hex()]["roles"] = ["arbiter"]
        self.shops = {SHOP_ID.hex(): {"id": SHOP_ID.hex(), "owner": MERCHANT.hex(), "open": True,
                                      "max_redeem_bps": 1000, "arbiters": [ARBITER.hex()]}}
        self.listings = {LISTING_ID.hex(): {"id": LISTING_ID.hex(), "shop_id": SHOP_ID.hex(), "price": 2_000_000,
                                            "stock": 3, "active": True}}
        self.orders = {ORDER_ID.hex(): {"id": ORDER_ID.hex(), "state": "shipped", "buyer": BUYER.hex(),
                                        "merchant": MERCHANT.hex(), "carrier": CARRIER.hex(),
                                        "arbiter": ARBITER.hex(), "escrow": 4_000_000, "deadline": NOW + 10,
                                        **order}}

    def status(self) -> dict[str, Any]:
        return {"min_fee": 10, "latest_block_time": NOW}

    def _get(self, table: dict[str, Any], key: bytes) -> dict[str, Any]:
        if key.hex() not in table:
            raise ClientError("not_found", f"no such {key.hex()}")
        return table[key.hex()]

    def account(self, address: bytes) -> dict[str, Any]:
        return self._get(self.accounts, address)

    def shop(self, shop_id: bytes) -> dict[str, Any]:
        return self._get(self.shops, shop_id)

    def listing(self, listing_id: bytes) -> dict[str, Any]:
        return self._get(self.listings, listing_id)

    def order(self, order_id: bytes) -> dict[str, Any]:
        return self._get(self.orders, order_id)


def refusal(node: FakeNode, sender: bytes, tx_type: str, payload: dict[str, Any]) -> tuple[str, str]:
    with pytest.raises(Refused) as raised:
        check_before_signing(node, sender, tx_type, payload, None)  # type: ignore[arg-type]
    return raised.value.rule, raised.value.code


PLACE = {"listing_id": LISTING_ID, "quantity": 1, "max_unit_price": 2_000_000, "shipping": b"x", "arbiter": ARBITER}


@pytest.mark.parametrize(("sender", "tx_type", "payload", "order", "expected"), [
    (STRANGER, "order_confirm", {"order_id": ORDER_ID}, {}, ("§4", "forbidden")),
    (BUYER, "order_accept", {"order_id": ORDER_ID}, {}, ("§4", "forbidden")),
    (BUYER, "order_cancel", {"order_id": ORDER_ID}, {}, ("§5", "invalid_state")),
    (MERCHANT, "order_refund", {"order_id": ORDER_ID, "amount": 5_000_000}, {}, ("R14", "invalid_field")),
    (ARBITER, "dispute_resolve", {"order_id": ORDER_ID, "buyer_amount": 1, "ruling": "r"}, {}, ("§5", "invalid_state")),
    (BUYER, "dispute_open", {"order_id": ORDER_ID, "reason": "r"}, {"arbiter": None}, ("§4", "invalid_state")),
    (BUYER, "order_confirm", {"order_id": ORDER_ID}, {"deadline": NOW - 1}, ("R15", "invalid_state")),
    (BUYER, "review_submit", {"order_id": ORDER_ID, "rating": 5}, {"state": "completed", "deadline": None,
                                                                   "review_deadline": NOW}, ("R19", "deadline_passed")),
    (BUYER, "review_submit", {"order_id": ORDER_ID, "rating": 5}, {"state": "completed", "deadline": None,
                                                                   "review": {"rating": 4}}, ("R19", "already_reviewed")),
    (MERCHANT, "review_reply", {"order_id": ORDER_ID, "text": "t"}, {"state": "completed", "deadline": None},
     ("R19", "not_found")),
    (CARRIER, "shipment_update", {"order_id": ORDER_ID, "status": "delivered", "location": "l"},
     {"state": "accepted"}, ("§5", "invalid_state")),
    (BUYER, "order_place", {**PLACE, "quantity": 4}, {}, ("R13", "out_of_stock")),
    (BUYER, "order_place", {**PLACE, "max_unit_price": 1}, {}, ("R13", "price_changed")),
    (BUYER, "order_place", {**PLACE, "redeem_points": 10}, {}, ("R21", "insufficient_funds")),
    (BUYER, "order_place", {**PLACE, "redeem_points": 300_000}, {}, ("R21", "invalid_field")),
    (BUYER, "order_place", {**PLACE, "arbiter": STRANGER}, {}, ("§4", "invalid_field")),
    (MERCHANT, "order_place", PLACE, {}, ("§4", "forbidden")),
    (BUYER, "order_place", {**PLACE, "quantity": 3, "max_unit_price": 20_000_000}, {}, ("R11", "insufficient_funds")),
    (BUYER, "transfer", {"to": MERCHANT, "amount": 50_000_000}, {}, ("R11", "insufficient_funds")),
    (BUYER, "role_grant", {"account": MERCHANT, "role": "merchant", "evidence_hash": bytes(32)}, {},
     ("§4", "forbidden")),
    (BUYER, "listing_create", {"shop_id": SHOP_ID, "title": "t", "price": 1, "stock": 1}, {}, ("§4", "forbidden")),
    (MERCHANT, "listing_update", {"listing_id": LISTING_ID, "stock_delta": -4}, {}, ("§4", "invalid_field")),
    (BUYER, "order_confirm", {"order_id": b"\x01" * 32}, {}, ("R11", "not_found")),
])
def test_doomed_transactions_are_refused_with_rule_and_code(sender: bytes, tx_type: str, payload: dict[str, Any],
                                                             order: dict[str, Any], expected: tuple[str, str]) -> None:
    node = FakeNode(**order)
    if tx_type == "order_place" and expected == ("R11", "insufficient_funds"):
        node.listings[LISTING_ID.hex()]["price"] = 20_000_000
    assert refusal(node, sender, tx_type, payload) == expected


def test_a_good_transaction_says_what_it_would_do() -> None:
    node = FakeNode()
    lines = check_before_signing(node, BUYER, "order_confirm", {"order_id": ORDER_ID}, None)  # type: ignore[arg-type]
    assert lines[0] == f"order {ORDER_ID.hex()}: shipped → completed; escrow to the merchant"
    assert lines[1].startswith("fee 0.00001 MKT (10 µMKT) to the block's proposer; balance after: 49.99999 MKT")
    placed = check_before_signing(node, BUYER, "order_place", PLACE, 1)  # type: ignore[arg-type]
    assert placed[0] == "pays 2 MKT (2000000 µMKT) into the escrow of a new order (placed)"
    merchant_dispute = check_before_signing(FakeNode(state="return_requested"), MERCHANT, "dispute_open",  # type: ignore[arg-type]
                                            {"order_id": ORDER_ID, "reason": "r"}, None)
    assert "return_requested → disputed" in merchant_dispute[0]


class ItemsAndValidatorsNode(FakeNode):
    """FakeNode with items and a validator set (two members, one pending vote)."""

    def __init__(self) -> None:
        super().__init__()
        self.items = {"tea-0001": {"id": "tea-0001", "owner": MERCHANT.hex(), "custodian": MERCHANT.hex()}}
        self.validators = {"validators": [{"address": MERCHANT.hex()}, {"address": CARRIER.hex()}],
                           "scheduled": [],
                           "pending_votes": [{"action": "add", "validator": ARBITER.hex(),
                                              "voters": [MERCHANT.hex()]}]}

    def item(self, item_id: str) -> dict[str, Any]:
        if item_id not in self.items:
            raise ClientError("not_found", f"no item {item_id}")
        return self.items[item_id]

    def get(self, path: str) -> dict[str, Any]:
        assert path == "/validators"
        return self.validators


def test_registering_an_item_needs_the_producer_or_merchant_role_and_a_free_id() -> None:
    node = ItemsAndValidatorsNode()
    payload = {"item_id": "tea-0002"}
    assert refusal(node, STRANGER, "item_register", payload) == ("R22", "forbidden")
    node.accounts[STRANGER.hex()]["roles"] = ["producer"]
    lines = check_before_signing(node, STRANGER, "item_register", payload, None)  # type: ignore[arg-type]
    assert "registers item tea-0002" in lines[0]
    node.accounts[MERCHANT.hex()]["roles"] = ["merchant"]
    assert refusal(node, MERCHANT, "item_register", {"item_id": "tea-0001"}) == ("R22", "already_exists")


def test_a_validator_vote_is_checked_against_the_set_and_earlier_votes() -> None:
    node = ItemsAndValidatorsNode()
    add_arbiter = {"action": "add", "validator": ARBITER}
    assert refusal(node, STRANGER, "validator_vote", add_arbiter) == ("R34", "forbidden")
    assert refusal(node, MERCHANT, "validator_vote", add_arbiter) == ("R34", "already_exists")
    assert refusal(node, CARRIER, "validator_vote", {"action": "add", "validator": MERCHANT}) == \
        ("R34", "invalid_state")
    assert refusal(node, CARRIER, "validator_vote", {"action": "remove", "validator": STRANGER}) == \
        ("R34", "invalid_state")
    lines = check_before_signing(node, CARRIER, "validator_vote", add_arbiter, None)  # type: ignore[arg-type]
    assert lines[0].startswith(f"votes to add validator {ARBITER.hex()}")
    node.validators["scheduled"] = [{"height": 9, "validators": [CARRIER.hex()]}]
    assert refusal(node, CARRIER, "validator_vote", {"action": "remove", "validator": CARRIER}) == \
        ("R34", "invalid_state")


def test_a_ruling_leaves_the_arbiter_fee_and_a_shop_needs_the_merchant_role_where_the_chain_says_so() -> None:
    node = FakeNode(state="disputed")
    node.status = lambda: {"min_fee": 10, "latest_block_time": NOW,  # type: ignore[method-assign]
                           "params": {"arbiter_fee_bps": 200, "open_merchants": False}}
    # escrow 4 MKT, fee 2 % = 0.08 MKT: the buyer may get 3.92 MKT at most
    assert refusal(node, ARBITER, "dispute_resolve", {"order_id": ORDER_ID, "buyer_amount": 3_920_001,
                                                      "ruling": "split"}) == ("R14", "invalid_field")
    lines = check_before_signing(node, ARBITER, "dispute_resolve",  # type: ignore[arg-type]
                                 {"order_id": ORDER_ID, "buyer_amount": 3_920_000, "ruling": "split"}, None)
    assert "resolved" in lines[0]
    assert refusal(node, STRANGER, "shop_create", {"name": "Tea"}) == ("§4", "forbidden")
    node.accounts[STRANGER.hex()]["roles"] = ["merchant"]
    assert "opens shop 'Tea'" in check_before_signing(node, STRANGER, "shop_create", {"name": "Tea"}, None)[0]  # type: ignore[arg-type]

"""Check before signing: read the state a transaction needs and refuse, with the rule and
what to do, what the chain would reject (issue 12), so that a doomed transaction costs
nothing. Also says what a transaction would do (`--dry-run`).

The chain stays the judge (R11): this is advice read from the latest committed state,
and `--force` sends anyway. Checked here: balance including the fee (R10, R11), the
sender's authority and role in the order (PROTOCOL §4), the order's state (§5) and
deadline (R15), refund and ruling amounts (R14), stock, price, arbiter and points limits
of `order_place` (R13, R21), reviews and their window (R19), shop and listing ownership,
item ownership and custody (R22), and digital goods (R41): `order_deliver` only on a
digital order and with content that fits, `order_ship` and `return_request` never on one,
a digital listing without unique items.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from client.formatting import format_amount, format_time
from client.node_client import ClientError, NodeClient
from marketplace_tx.rules.after_sales import REFUNDABLE_STATES
from marketplace_tx.rules.reviews import REVIEWABLE_STATES
from marketplace_tx.rules.schema import MAX_DELIVERY_BYTES, MIN_DELIVERY_BYTES


class Refused(Exception):
    """A transaction the chain would refuse: the rule, the error code it would commit, and advice."""

    def __init__(self, rule: str, code: str, message: str, advice: str) -> None:
        super().__init__(f"{code}: {message}")
        self.rule = rule
        """The PROTOCOL rule or section that refuses it, e.g. `R13` or `§5`."""
        self.code = code
        """The error code the chain would commit (R12)."""
        self.message = message
        """What is wrong, naming the field or the party."""
        self.advice = advice
        """What to do instead."""

    def text(self) -> str:
        """One line for the CLI: code, message, rule, advice, and that nothing was sent."""
        return (f"{self.code}: {self.message} ({self.rule}); {self.advice}. Nothing was signed or sent "
                "(--force sends it anyway: the chain would refuse it and keep the fee)")


@dataclass(frozen=True)
class OrderStep:
    """Who may send an order transaction, from which states, and where it leads (PROTOCOL §4, §5)."""

    states: tuple[str, ...]
    """States the order must be in."""
    party: str
    """The order's party who may send it: `buyer`, `merchant`, `carrier` or `arbiter`."""
    to: str | None
    """The state it leads to (None: unchanged)."""
    money: str = ""
    """Where the money goes, for `--dry-run`."""


ORDER_STEPS = {
    "order_accept": OrderStep(("placed",), "merchant", "accepted"),
    "order_reject": OrderStep(("placed", "accepted"), "merchant", "rejected", "escrow back to the buyer"),
    "order_cancel": OrderStep(("placed",), "buyer", "cancelled", "escrow back to the buyer"),
    "order_ship": OrderStep(("placed", "accepted"), "merchant", "shipped"),
    "order_deliver": OrderStep(("placed", "accepted"), "merchant", "delivered",
                               "escrow to the merchant when the buyer confirms or the confirm window ends"),
    "shipment_update": OrderStep(("shipped",), "carrier", None),
    "order_confirm": OrderStep(("shipped", "delivered", "return_requested"), "buyer", "completed",
                               "escrow to the merchant"),
    "return_request": OrderStep(("shipped", "delivered"), "buyer", "return_requested"),
    "order_refund": OrderStep(REFUNDABLE_STATES, "merchant", None, "the amount back to the buyer"),
    "dispute_open": OrderStep(("shipped", "delivered", "return_requested"), "buyer", "disputed"),
    "dispute_resolve": OrderStep(("disputed",), "arbiter", "resolved",
                                 "arbiter fee to the arbiter, buyer_amount to the buyer, the rest to the merchant"),
    "review_submit": OrderStep(REVIEWABLE_STATES, "buyer", None),
    "review_reply": OrderStep(REVIEWABLE_STATES, "merchant", None),
}
"""The order transactions of §4 with their sender and states (§5)."""


class Reader:
    """The committed state a check reads, fetched once per object."""

    def __init__(self, client: NodeClient) -> None:
        self.client = client
        """The node read from."""
        self._cache: dict[tuple[str, Any], Any] = {}

    def status(self) -> dict[str, Any]:
        """`GET /status` (the tip's time, the minimum fee, the chain parameters), read once."""
        if ("status", None) not in self._cache:
            self._cache[("status", None)] = self.client.status()
        return self._cache[("status", None)]

    def read(self, kind: str, key: Any) -> dict[str, Any]:
        """`client.KIND(key)`, once; a missing object is `Refused(not_found)`."""
        if (kind, key) not in self._cache:
            try:
                self._cache[(kind, key)] = getattr(self.client, kind)(key)
            except ClientError as error:
                if error.code != "not_found":
                    raise
                shown = key.hex() if isinstance(key, bytes) else key
                raise Refused("R11", "not_found", f"no {kind} {shown} on chain (yet)",
                              "check the id, or wait until the transaction that creates it is final") from None
        return self._cache[(kind, key)]


def check_before_signing(client: NodeClient, sender: bytes, tx_type: str, payload: dict[str, Any],
                         fee: int | None) -> list[str]:
    """What the transaction would do, as lines for `--dry-run`; raises `Refused` when the chain would refuse it."""
    reader = Reader(client)
    paid_fee = fee if fee is not None else reader.status()["min_fee"]
    spent, effects = _rule_checks(reader, sender, tx_type, payload)
    balance = reader.read("account", sender)["balance"]
    if balance < spent + paid_fee:
        needed = f"{format_amount(spent)} + the fee {format_amount(paid_fee)}" if spent else \
            f"the fee {format_amount(paid_fee)}"
        raise Refused("R11", "insufficient_funds",
                      f"balance {format_amount(balance)} is below {needed}",
                      "fund this account first (marketchain tx transfer --to it), or send less")
    return [*effects, f"fee {format_amount(paid_fee)} to the block's proposer; balance after: "
                      f"{format_amount(balance - spent - paid_fee)}"]


def _rule_checks(reader: Reader, sender: bytes, tx_type: str, payload: dict[str, Any]) -> tuple[int, list[str]]:
    """µMKT the rule takes from the sender, and the effect lines; `Refused` on a rule the chain would fail."""
    if tx_type == "transfer":
        return payload["amount"], [f"moves {format_amount(payload['amount'])} to {payload['to'].hex()}"]
    if tx_type in ("role_grant", "role_revoke"):
        if "registrar" not in reader.read("account", sender)["roles"]:
            raise Refused("§4", "forbidden", f"{sender.hex()} is not a registrar",
                          "sign with a registrar's key (init says which key holds registrar)")
        verb = "grants" if tx_type == "role_grant" else "revokes"
        return 0, [f"{verb} role {payload['role']} of {payload['account'].hex()}"]
    if tx_type == "shop_create":
        open_merchants = reader.status().get("params", {}).get("open_merchants", True)
        if not open_merchants and "merchant" not in reader.read("account", sender)["roles"]:
            raise Refused("§4", "forbidden", f"{sender.hex()} does not hold the merchant role, which this chain "
                          "needs to open a shop", "ask a registrar for the merchant role (tx role-grant)")
        return 0, [f"opens shop {payload['name']!r} owned by {sender.hex()}"]
    if tx_type in ("shop_update", "listing_create"):
        if payload.get("digital") and payload.get("item_ids"):
            raise Refused("R41", "invalid_field", "payload.digital: a digital listing cannot sell unique items "
                          "(item_ids)", "drop --item-id, or list the items without --digital")
        _require_shop_owner(reader, sender, payload["shop_id"])
        digital = " (digital: delivered on chain with order_deliver)" if payload.get("digital") else ""
        return 0, [f"{tx_type.replace('_', ' ')} in shop {payload['shop_id'].hex()}{digital}"]
    if tx_type == "listing_update":
        return 0, _listing_update(reader, sender, payload)
    if tx_type == "order_place":
        return _order_place(reader, sender, payload)
    if tx_type in ORDER_STEPS:
        return 0, _order_step(reader, sender, tx_type, payload)
    if tx_type in ("item_event", "item_transfer"):
        return 0, _item(reader, sender, tx_type, payload)
    if tx_type == "item_register":
        return 0, _item_register(reader, sender, payload)
    if tx_type == "validator_vote":
        return 0, _validator_vote(reader, sender, payload)
    return 0, [f"{tx_type} {', '.join(sorted(payload))}"]


def _require_shop_owner(reader: Reader, sender: bytes, shop_id: bytes) -> dict[str, Any]:
    shop = reader.read("shop", shop_id)
    if shop["owner"] != sender.hex():
        raise Refused("§4", "forbidden", f"shop {shop_id.hex()} is owned by {shop['owner']}, not {sender.hex()}",
                      "sign with the shop owner's key")
    return shop


def _listing_update(reader: Reader, sender: bytes, payload: dict[str, Any]) -> list[str]:
    listing = reader.read("listing", payload["listing_id"])
    _require_shop_owner(reader, sender, bytes.fromhex(listing["shop_id"]))
    delta = payload.get("stock_delta")
    if delta is not None and listing["stock"] + delta < 0:
        raise Refused("§4", "invalid_field", f"payload.stock_delta: the stock is {listing['stock']}, "
                      f"{delta} would make it negative", f"remove at most {listing['stock']}")
    return [f"updates listing {listing['id']} ({', '.join(sorted(set(payload) - {'listing_id'}))})"]


def _order_place(reader: Reader, sender: bytes, payload: dict[str, Any]) -> tuple[int, list[str]]:
    listing = reader.read("listing", payload["listing_id"])
    shop = reader.read("shop", bytes.fromhex(listing["shop_id"]))
    quantity, price = payload["quantity"], listing["price"]
    if shop["owner"] == sender.hex():
        raise Refused("§4", "forbidden", "a shop's owner cannot order from it", "order with another account")
    if not listing.get("active") or not shop.get("open"):
        raise Refused("R13", "invalid_state", "the listing is inactive" if not listing.get("active")
                      else "the shop is closed", "choose another listing")
    if quantity > listing["stock"]:
        raise Refused("R13", "out_of_stock", f"payload.quantity: {quantity} asked, {listing['stock']} in stock",
                      f"order at most {listing['stock']}")
    if price > payload["max_unit_price"]:
        raise Refused("R13", "price_changed", f"payload.max_unit_price: the price is now {format_amount(price)}",
                      "raise --max-unit-price if you accept the new price")
    _check_arbiter(reader, sender, shop, payload.get("arbiter"))
    points = payload.get("redeem_points", 0)
    total = price * quantity
    if points:
        limit = total * shop.get("max_redeem_bps", 0) // 10000
        held = reader.read("account", sender).get("points", {}).get(shop["id"], 0)
        if points > limit:
            raise Refused("R21", "invalid_field", f"payload.redeem_points: {points} asked, the shop allows at most "
                          f"{limit} on this order", f"redeem at most {limit} points")
        if points > held:
            raise Refused("R21", "insufficient_funds", f"payload.redeem_points: {points} asked, {held} held",
                          f"redeem at most {held} points")
    paid = total - points
    return paid, [f"pays {format_amount(paid)} into the escrow of a new order (placed)"
                  + (f", {points} points redeemed" if points else ""),
                  f"stock of listing {listing['id']}: {listing['stock']} → {listing['stock'] - quantity}"]


def _check_arbiter(reader: Reader, sender: bytes, shop: dict[str, Any], arbiter: bytes | None) -> None:
    """The arbiter `order_place` names: one of the shop's, holding the role, neither buyer nor owner (§4, R13)."""
    arbiters = shop.get("arbiters") or []
    if arbiter is None:
        if arbiters:
            raise Refused("§4", "invalid_field", "payload.arbiter: the shop lists arbiters: name one of them",
                          "pass --arbiter with one of " + ", ".join(arbiters))
        return
    if not arbiters:
        raise Refused("§4", "invalid_field", "payload.arbiter: this shop has no arbiters", "omit --arbiter")
    if arbiter in (sender, bytes.fromhex(shop["owner"])):
        raise Refused("§4", "forbidden", "payload.arbiter: may be neither the buyer nor the shop's owner",
                      "name another of the shop's arbiters")
    if arbiter.hex() not in arbiters:
        raise Refused("§4", "invalid_field", "payload.arbiter: not one of the shop's arbiters",
                      "name one of " + ", ".join(arbiters))
    if "arbiter" not in reader.read("account", arbiter)["roles"]:
        raise Refused("R13", "forbidden", "payload.arbiter: does not hold the arbiter role (any more)",
                      "name another of the shop's arbiters")


def _check_deadlines(reader: Reader, tx_type: str, order: dict[str, Any]) -> None:
    """An order whose deadline has passed moves at the start of the next block, before any
    transaction (R15); a review after its window is `deadline_passed` (R19)."""
    now = reader.status().get("latest_block_time")
    if now is None:
        return
    deadline = order.get("deadline")
    if deadline is not None and deadline <= now:
        raise Refused("R15", "invalid_state", f"the order's deadline passed at {format_time(deadline)}: the next "
                      f"block moves it out of {order['state']} before this transaction",
                      "look at the order with `marketchain query order ID` after the next block")
    review_deadline = order.get("review_deadline")
    if tx_type == "review_submit" and review_deadline is not None and review_deadline <= now:
        raise Refused("R19", "deadline_passed", f"the review window closed at {format_time(review_deadline)}",
                      "reviews are taken only within review_window_ms of the order's end")


def _check_delivery_size(payload: dict[str, Any]) -> None:
    """R41: `order_deliver.content` is a sealed box of 48..4096 bytes (the schema step, checked first, R12)."""
    size = len(payload["content"])
    if not MIN_DELIVERY_BYTES <= size <= MAX_DELIVERY_BYTES:
        raise Refused("R41", "invalid_field", f"payload.content: {size} bytes; a sealed delivery is "
                      f"{MIN_DELIVERY_BYTES} to {MAX_DELIVERY_BYTES} bytes",
                      "seal 1 to 4048 bytes of content to the buyer (client.sealing.seal_content)")


def _check_digital(tx_type: str, order: dict[str, Any]) -> None:
    """R41, after the state check: `order_deliver` needs a digital order; `order_ship` and
    `return_request` refuse one."""
    digital = bool(order.get("digital"))
    if tx_type == "order_deliver" and not digital:
        raise Refused("R41", "invalid_state", "the order is not digital: only the goods of a digital listing are "
                      "delivered on chain", "ship it instead (tx order-ship)")
    if tx_type == "order_ship" and digital:
        raise Refused("R41", "invalid_state", "the order is digital: it is delivered on chain, not shipped",
                      "deliver it with tx order-deliver --content-file")
    if tx_type == "return_request" and digital:
        raise Refused("R41", "invalid_state", "digital goods cannot be returned",
                      "ask the merchant for a refund, or open a dispute if the order names an arbiter")


def _order_step(reader: Reader, sender: bytes, tx_type: str, payload: dict[str, Any]) -> list[str]:
    step = ORDER_STEPS[tx_type]
    if tx_type == "order_deliver":
        _check_delivery_size(payload)
    order = reader.read("order", payload["order_id"])
    party = step.party
    if tx_type == "dispute_open" and order["state"] == "return_requested" and sender.hex() == order["merchant"]:
        party = "merchant"
    if order.get(party) != sender.hex():
        raise Refused("§4", "forbidden", f"{sender.hex()} is not this order's {party} ({order.get(party) or 'none'})",
                      f"sign with the {party}'s key")
    if order["state"] not in step.states:
        raise Refused("§5", "invalid_state", f"the order is {order['state']}; {tx_type} needs "
                      f"{' or '.join(step.states)}", "look at the order with `marketchain query order ID`")
    _check_digital(tx_type, order)
    _check_deadlines(reader, tx_type, order)
    escrow = order.get("escrow", 0)
    to = step.to
    if tx_type == "order_refund":
        if payload["amount"] > escrow:
            raise Refused("R14", "invalid_field", f"payload.amount: the escrow holds only {format_amount(escrow)}",
                          "refund at most the escrow (--all)")
        to = "refunded" if payload["amount"] == escrow else None
    if tx_type == "dispute_resolve":
        fee_bps = reader.status().get("params", {}).get("arbiter_fee_bps", 0)
        most = escrow - escrow * fee_bps // 10000
        if payload["buyer_amount"] > most:
            raise Refused("R14", "invalid_field",
                          f"payload.buyer_amount: at most {format_amount(most)}: the escrow "
                          f"{format_amount(escrow)} less the arbiter fee ({fee_bps / 100:g} %)",
                          "give the buyer at most the escrow less the arbiter fee")
    if tx_type == "dispute_open" and not order.get("arbiter"):
        raise Refused("§4", "invalid_state", "the order has no arbiter: its shop takes unconditional returns",
                      "ask for a return instead (tx return-request)")
    if tx_type == "shipment_update" and payload["status"] == "delivered":
        to = "delivered"
    review = order.get("review") or {}
    if tx_type == "review_submit" and review:
        raise Refused("R19", "already_reviewed", "this order is already reviewed", "a buyer reviews an order once")
    if tx_type == "review_reply" and (not review or "reply" in review):
        raise Refused("R19", "not_found" if not review else "already_exists",
                      "the order has no review yet" if not review else "the review already has a reply",
                      "reply once, after the buyer's review")
    if tx_type == "order_deliver":
        to = f"delivered; the goods sealed to the buyer ({len(payload['content'])} bytes)"
    change = f"{order['state']} → {to}" if to else f"stays {order['state']}"
    return [f"order {order['id']}: {change}" + (f"; {step.money}" if step.money else "")
            + (f" ({format_amount(payload['amount'])})" if tx_type == "order_refund" else "")]


def _item(reader: Reader, sender: bytes, tx_type: str, payload: dict[str, Any]) -> list[str]:
    item = reader.read("item", payload["item_id"])
    me = sender.hex()
    if tx_type == "item_transfer":
        allowed = (item.get("owner"), item.get("custodian")) if payload.get("custody_only") else (item.get("owner"),)
        if me not in allowed:
            raise Refused("R22", "forbidden", f"{me} is not the item's owner"
                          + (" or custodian" if payload.get("custody_only") else ""), "sign with the owner's key")
        return [f"item {payload['item_id']}: {'custody' if payload.get('custody_only') else 'ownership and custody'}"
                f" → {payload['to'].hex()}"]
    if me not in (item.get("owner"), item.get("custodian")) and \
            "inspector" not in reader.read("account", sender)["roles"]:
        raise Refused("R22", "forbidden", f"{me} is neither the item's owner, its custodian nor an inspector",
                      "sign with the owner's, the custodian's or an inspector's key")
    return [f"item {payload['item_id']}: event {payload['kind']} at {payload['location']}"]


def _item_register(reader: Reader, sender: bytes, payload: dict[str, Any]) -> list[str]:
    """R22: a producer or a merchant registers an item id that is not taken yet."""
    roles = reader.read("account", sender)["roles"]
    if "producer" not in roles and "merchant" not in roles:
        raise Refused("R22", "forbidden", f"{sender.hex()} has neither the producer nor the merchant role",
                      "ask a registrar for the producer role, or sign with a producer's or merchant's key")
    try:
        reader.read("item", payload["item_id"])
    except Refused:
        return [f"registers item {payload['item_id']}, owned and held by {sender.hex()}"]
    raise Refused("R22", "already_exists", f"item {payload['item_id']} is already registered",
                  "choose another item id")


def _validator_vote(reader: Reader, sender: bytes, payload: dict[str, Any]) -> list[str]:
    """R34: a current validator votes once to add a non-member or remove a member."""
    answer = reader.client.get("/validators")
    members = {entry["address"] for entry in answer["validators"]}
    scheduled = answer.get("scheduled") or []
    projected = set(scheduled[-1]["validators"]) if scheduled else members  # the set as it will be (R34)
    validator, action = payload["validator"].hex(), payload["action"]
    if sender.hex() not in members:
        raise Refused("R34", "forbidden", f"{sender.hex()} is not a current validator",
                      "sign with a validator's key (HOME/validator_key.json)")
    if action == "add" and validator in projected:
        raise Refused("R34", "invalid_state", f"{validator} is already a validator", "nothing to add")
    if action == "remove" and validator not in projected:
        raise Refused("R34", "invalid_state", f"{validator} is not a validator", "nothing to remove")
    if action == "remove" and projected == {validator}:
        raise Refused("R34", "invalid_state", "the validator set cannot become empty", "add another validator first")
    for pending in answer.get("pending_votes", []):
        if pending["action"] == action and pending["validator"] == validator and sender.hex() in pending["voters"]:
            raise Refused("R34", "already_exists", f"you already voted to {action} {validator}",
                          "wait for the other validators' votes")
    return [f"votes to {action} validator {validator} ({len(members)} validators now)"]

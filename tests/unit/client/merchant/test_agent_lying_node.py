"""A node that lies about a digital order (client/merchant/agent.py `_deliver`): the agent
reserves and seals per the buyer-signed `order_place` (its quantity, listing and sender), so an
inflated quantity gets no extra codes and a swapped listing gets none; the node's transaction
plumbing is stubbed, the inventory and the sealing are real."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import nacl.pwhash
import pytest

from client.merchant import agent as agent_module
from client.merchant.agent import MerchantAgent
from client.merchant.config import MerchantConfig
from client.merchant.inventory import Inventory
from client.merchant.inventory_crypto import create_inventory_key
from client.sealing import open_sealed
from client.verification import VerificationFailed
from marketplace_tx.primitives.crypto import KeyPair

MERCHANT, BUYER = KeyPair.from_seed(bytes([4]) * 32), KeyPair.from_seed(bytes([5]) * 32)
LISTING, ORDER = bytes([6]) * 32, bytes([7]) * 32


def lying_order(quantity: int, listing: bytes = LISTING) -> dict[str, Any]:
    return {"id": ORDER.hex(), "state": "placed", "digital": True, "listing_id": listing.hex(), "quantity": quantity,
            "buyer": KeyPair.from_seed(bytes([9]) * 32).address.hex(), "merchant": MERCHANT.address.hex(),
            "shop_id": "dd" * 32, "escrow": 1}


@pytest.fixture
def shop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    key = create_inventory_key(tmp_path / "inventory", "passphrase 123", nacl.pwhash.argon2id.OPSLIMIT_MIN,
                               nacl.pwhash.argon2id.MEMLIMIT_MIN)
    inventory = Inventory(tmp_path / "inventory", key)
    inventory.add_codes(LISTING, ["C1", "C2", "C3"])
    config = MerchantConfig(path=tmp_path / "m.toml", state_dir=tmp_path, digital_listings=frozenset({LISTING}))
    sent: list[dict[str, Any]] = []
    signed = SimpleNamespace(type="order_place", sender=BUYER.address, payload={"listing_id": LISTING, "quantity": 1})
    monkeypatch.setattr(agent_module, "verify_order_placement", lambda client, order_id, order: signed)

    def submit(client: Any, key: Any, tx_type: str, payload: dict[str, Any], lock: Any) -> SimpleNamespace:
        sent.append({"type": tx_type, **payload})
        return SimpleNamespace(hash=bytes([len(sent)]) * 32, raw=b"")

    monkeypatch.setattr(agent_module.chain, "submit", submit)
    monkeypatch.setattr(agent_module.chain, "wait_final", lambda client, tx: {"hash": tx.hash.hex(), "result": {"ok": True}})
    return SimpleNamespace(agent=MerchantAgent(config, MERCHANT, inventory), inventory=inventory, sent=sent, signed=signed)


async def test_an_inflated_quantity_gets_only_the_codes_bought(shop: SimpleNamespace) -> None:
    await shop.agent._deliver(ORDER, lying_order(quantity=3))
    (delivery,) = shop.sent
    assert delivery["type"] == "order_deliver" and open_sealed(BUYER, delivery["content"]) == b"C1"
    assert len(shop.inventory.reservation(ORDER).codes) == 1 and shop.inventory.reservation(ORDER).status == "used"


async def test_a_swapped_listing_or_a_failed_proof_gets_nothing(shop: SimpleNamespace,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    await shop.agent._deliver(ORDER, lying_order(quantity=1, listing=bytes([8]) * 32))
    assert shop.sent == [] and shop.inventory.reservation(ORDER) is None

    def refuse(client: Any, order_id: bytes, order: Any) -> None:
        raise VerificationFailed("the proof does not verify")

    monkeypatch.setattr(agent_module, "verify_order_placement", refuse)
    await shop.agent._deliver(ORDER, lying_order(quantity=1))
    assert shop.sent == [] and shop.inventory.reservation(ORDER) is None

"""The devnet's merchant home (client/devnet_merchant.py): a config the agent accepts, the demo codes
imported encrypted, and a stopped agent that really stops. The devnet itself runs in
tests/e2e/test_cli.py::test_devnet_seeds_demo_data_and_stops_on_interrupt."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from client.devnet import GIFT_CARD_STOCK, GIFT_CARD_TITLE, DemoData, describe
from client.devnet_merchant import (
    DEVNET_INVENTORY_PASSPHRASE,
    GIFT_CARD_CODES,
    config_path,
    demo_codes,
    stop_agent,
    write_merchant_home,
)
from client.merchant.config import load_config
from client.merchant.inventory import Inventory
from client.merchant.inventory_crypto import open_inventory_key

SHOP = "ab" * 32
LISTING = "cd" * 32


def test_merchant_home_is_a_valid_config_with_the_codes_encrypted(tmp_path: Path) -> None:
    path = write_merchant_home(tmp_path, "http://127.0.0.1:26657", SHOP, LISTING)
    assert path == config_path(tmp_path)
    config = load_config(path, {})
    assert config.shops == {bytes.fromhex(SHOP)} and config.digital_listings == {bytes.fromhex(LISTING)}
    assert config.accept.auto is False, "parcel orders of the demo stay as the seeder left them"
    assert config.node_url == "http://127.0.0.1:26657" and config.state_dir.is_relative_to(tmp_path)
    inventory_files = b"".join(item.read_bytes() for item in config.inventory_dir.rglob("*") if item.is_file())
    assert b"GIFT-25-" not in inventory_files, "codes are encrypted at rest"
    key = open_inventory_key(config.inventory_dir, DEVNET_INVENTORY_PASSPHRASE)
    (counts,) = Inventory(config.inventory_dir, key).counts()
    assert (counts.listing, counts.free, counts.reserved, counts.used) == (LISTING, GIFT_CARD_CODES, 0, 0)
    assert GIFT_CARD_CODES == GIFT_CARD_STOCK, "one code per unit of the listing's stock"


def test_demo_codes_are_distinct() -> None:
    codes = demo_codes(500)
    assert len(set(codes)) == 500 and all(code.startswith("GIFT-25-") and len(code) == 22 for code in codes)


def test_stop_agent_terminates_a_running_process() -> None:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    assert stop_agent(process) is not None and process.poll() is not None
    assert stop_agent(None) is None


def test_describe_names_the_digital_listing_and_order() -> None:
    demo = DemoData(listings={GIFT_CARD_TITLE: LISTING}, orders={"digital": "ef" * 32}, digital_listing=LISTING,
                    digital_order="ef" * 32)
    text = describe(demo, "http://127.0.0.1:26657")
    assert f"  listing  {LISTING}  Gift card 25 MKT" in text and f"  order    {'ef' * 32}  digital" in text

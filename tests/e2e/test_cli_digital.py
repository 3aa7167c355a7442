"""Digital goods through the CLI and a real one-validator testnet process (R41): a merchant
lists a gift card with `--digital`, a buyer orders it (no address needed), the merchant
delivers a code with `tx order-deliver --content-file`, and only the buyer's key opens it
with `query order --decrypt`. The code never appears in the node's JSON, in the raw block
or in any view without the buyer's key; `order-ship` on a digital order is `invalid_state`
(before signing, and on chain with --force); a lying node can neither get the code sealed
to another key nor slip a fake code to the buyer.

One module-scoped testnet; everything runs as `python -m cli …` processes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from client.sealing import seal_content
from tests.e2e.cli_testnet import account_keys, cli, cli_json, http, one_validator_testnet
from tests.e2e.lying_node import lying_node

CODE = "GIFT-7Q2X-94KD-PL0M"
"""The gift card code the merchant delivers."""


def address_of(key_file: str) -> str:
    """The address in a testnet account's key file."""
    return json.loads(Path(key_file).read_text())["address"]


@pytest.fixture(scope="module")
def digital_order(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A running testnet with alice's shop, a digital listing and erin's placed order of it."""
    with one_validator_testnet(tmp_path_factory.mktemp("digital") / "net") as (net, url):
        key = account_keys(net)
        node = ("--node", url)
        kyc = net / "kyc.pdf"
        kyc.write_bytes(b"passport scan")
        cli("tx", "role-grant", "--key", key["faucet"], "--account", key["dave"], "--role", "carrier",
            "--evidence-file", str(kyc), "--no-wait", *node)
        cli("tx", "role-grant", "--key", key["faucet"], "--account", key["alice"], "--role", "merchant",
            "--evidence-file", str(kyc), *node)
        shop_id = cli_json("tx", "shop-create", "--key", key["alice"], "--name", "Alice's Gift Cards", *node)["shop_id"]
        listing = cli_json("tx", "listing-create", "--key", key["alice"], "--shop", shop_id, "--title",
                           "Gift card 5 MKT", "--price", "5MKT", "--stock", "10", "--digital", *node)
        assert listing["result"]["ok"] and listing["payload"]["digital"] is True
        placed = cli_json("tx", "order-place", "--key", key["erin"], "--listing", listing["listing_id"], *node)
        assert placed["result"]["ok"], placed
        yield {"net": net, "url": url, "node": node, "key": key, "listing_id": listing["listing_id"],
               "order_id": placed["order_id"]}


@pytest.mark.integration
def test_a_digital_order_is_delivered_sealed_and_opened_only_by_its_buyer(digital_order: dict[str, Any],
                                                                         tmp_path: Path) -> None:
    key, node, url, order_id = digital_order["key"], digital_order["node"], digital_order["url"], \
        digital_order["order_id"]
    shown = cli("query", "listing", digital_order["listing_id"], *node).stdout
    assert "yes: delivered on chain" in shown
    order = cli_json("query", "order", order_id, *node)
    assert order["digital"] is True and order["state"] == "placed" and order["delivery"] is None
    early = cli("query", "order", order_id, "--decrypt", "--key", key["erin"], *node, check=False)
    assert early.returncode == 1 and "nothing was delivered yet: the order is placed" in early.stderr

    # order_ship on a digital order: refused before signing, and invalid_state on chain with --force (R41).
    refused = cli("tx", "order-ship", "--key", key["alice"], "--order", order_id, "--carrier", key["dave"],
                  "--tracking", "SF1", *node, check=False)
    assert refused.returncode == 1 and "invalid_state: the order is digital" in refused.stderr
    assert "Nothing was signed or sent" in refused.stderr
    forced = cli("tx", "order-ship", "--key", key["alice"], "--order", order_id, "--carrier", key["dave"],
                 "--tracking", "SF1", "--no-reseal", "--force", *node, check=False)
    assert forced.returncode == 1 and "invalid_state" in forced.stderr and "is final but its rule failed" in \
        forced.stderr, forced.stderr

    code_file = tmp_path / "code.txt"
    code_file.write_text(CODE)
    not_merchant = cli("tx", "order-deliver", "--key", key["erin"], "--order", order_id, "--content-file",
                       str(code_file), *node, check=False)
    assert not_merchant.returncode == 1 and "forbidden" in not_merchant.stderr
    # A node that names another buyer does not get the code sealed to that key (R13's check, issue 13).
    with lying_node(url, lambda order: {**order, "buyer": address_of(key["dave"])}) as liar:
        lied = cli("tx", "order-deliver", "--key", key["alice"], "--order", order_id, "--content-file",
                   str(code_file), "--node", liar, check=False)
    assert lied.returncode == 1 and "refusing to seal the goods" in lied.stderr and "Traceback" not in lied.stderr

    delivered = cli_json("tx", "order-deliver", "--key", key["alice"], "--order", order_id, "--content-file",
                         str(code_file), *node)
    assert delivered["result"]["ok"], delivered
    order = cli_json("query", "order", order_id, *node)
    assert order["state"] == "delivered" and len(order["delivery"]) // 2 == len(CODE) + 48
    assert [entry["event"] for entry in order["history"]] == ["order_place", "order_deliver"]
    readable = cli("query", "order", order_id, *node).stdout
    assert f"delivered (sealed to the buyer, {len(CODE) + 48} bytes)" in readable and CODE not in readable
    assert CODE not in http(f"{url}/orders/{order_id}").decode()
    assert CODE.encode() not in http(f"{url}/blocks/{delivered['height']}/raw")

    opened = cli("query", "order", order_id, "--decrypt", "--key", key["erin"], *node)
    assert CODE in opened.stdout and "opened locally with the buyer's key" in opened.stdout
    output = tmp_path / "opened.txt"
    cli("query", "order", order_id, "--decrypt", "--key", key["erin"], "--output", str(output), *node)
    assert output.read_text() == CODE
    for wrong in (key["dave"], key["carol"]):
        refused = cli("query", "order", order_id, "--decrypt", "--key", wrong, *node, check=False)
        assert refused.returncode == 1 and "is not this order's buyer" in refused.stderr
        assert CODE not in refused.stdout + refused.stderr and "Traceback" not in refused.stderr

    # A node that swaps in a box of its own sealed to the buyer (a fake code) is caught; with the
    # genesis the box is the proven order's (R36), whatever the node's JSON says.
    fake = seal_content(bytes.fromhex(address_of(key["erin"])), b"FAKE-CODE").hex()
    genesis = json.loads((digital_order["net"] / "testnet.json").read_text())["nodes"][0]["home"] + "/genesis.json"
    with lying_node(url, lambda order: {**order, "delivery": fake}) as liar:
        lied = cli("query", "order", order_id, "--decrypt", "--key", key["erin"], "--node", liar, check=False)
        proven = cli("query", "order", order_id, "--decrypt", "--key", key["erin"], "--genesis", genesis,
                     "--node", liar)
    assert lied.returncode == 1 and "refusing to open the delivery" in lied.stderr and "FAKE" not in lied.stdout
    assert CODE in proven.stdout and "FAKE" not in proven.stdout

    no_return = cli("tx", "return-request", "--key", key["erin"], "--order", order_id, "--reason", "changed mind",
                    *node, check=False)
    assert no_return.returncode == 1 and "digital goods cannot be returned" in no_return.stderr

"""The block explorer (`GET /`, node/static/) in headless Chromium against a real devnet.

One `marketchain devnet --nodes 1` process seeds the demo marketplace through real
transactions (node/devnet.py); one browser visits the explorer's pages and checks that
they show that chain's data, search it, verify a Merkle proof in the browser, update
live when a new block is made, escape what users wrote, fit a phone's width, and log no
console errors. Skipped when selenium, chromium or chromedriver are missing (.ci/run
installs them).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.browser import missing_browser, severe_console_errors, start_chromium
from tests.e2e.devnet_process import running_devnet
from tests.e2e.node_process import http_get, http_post, wait_until

pytestmark = pytest.mark.integration

WAIT_SECONDS = 30
"""Generous deadline of every condition waited for in the browser."""
STARTUP_DELIVERY_SECONDS = 120
"""How long the devnet's merchant agent may take to deliver the demo digital order (R41)."""


# --- the devnet ---------------------------------------------------------------------


@dataclass
class Devnet:
    """A running `marketchain devnet` and the demo objects it printed."""

    url: str
    home: Path
    process: subprocess.Popen[str]
    shops: dict[str, str] = field(default_factory=dict)
    """shop name → id."""
    listings: dict[str, str] = field(default_factory=dict)
    """listing title → id."""
    orders: dict[str, str] = field(default_factory=dict)
    """demo state → order id."""

    def get(self, path: str) -> Any:
        status, body = http_get(self.url + path)
        assert status == 200, f"GET {path}: {status} {body!r}"
        return body




@pytest.fixture(scope="module")
def devnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devnet]:
    reason = missing_browser()
    if reason:
        pytest.skip(reason)
    home = tmp_path_factory.mktemp("explorer") / "devnet"
    with running_devnet(home) as started:
        running = Devnet(started.url, home, started.process)
        for kind, name, identifier in started.demo_objects():
            {"shop": running.shops, "listing": running.listings, "order": running.orders}[kind][name] = identifier
        assert running.shops and running.listings and running.orders, started.output
        yield running


# --- the browser --------------------------------------------------------------------


@dataclass
class Explorer:
    """A headless Chromium on the devnet's explorer."""

    driver: Any
    url: str
    screenshots: Path

    def open(self, route: str) -> None:
        """Show an explorer page (`#/…`); the page itself is loaded only once."""
        if not self.driver.current_url.startswith(self.url):
            self.driver.get(self.url + "/" + route)
        else:
            self.driver.execute_script("location.hash = arguments[0]", route)
        self.wait_for(lambda: self.driver.execute_script(
            "const view = document.getElementById('view');"
            "return location.hash === arguments[0] && view.getAttribute('aria-busy') === 'false'"
            " && !view.querySelector('.loading')", route or "", ), f"page {route} to render")

    def wait_for(self, condition: Callable[[], Any], what: str, timeout: float = WAIT_SECONDS) -> Any:
        from selenium.webdriver.support.ui import WebDriverWait

        return WebDriverWait(self.driver, timeout, poll_frequency=0.1).until(
            lambda _: condition(), message=f"waited {timeout} s for {what}")

    def text(self, css: str = "#view") -> str:
        from selenium.webdriver.common.by import By

        return " ".join(element.text for element in self.driver.find_elements(By.CSS_SELECTOR, css))

    def wait_for_text(self, fragment: str, css: str = "#view") -> None:
        self.wait_for(lambda: fragment in self.text(css), f"{fragment!r} in {css}")

    def count(self, css: str) -> int:
        from selenium.webdriver.common.by import By

        return len(self.driver.find_elements(By.CSS_SELECTOR, css))

    def screenshot(self, name: str) -> Path:
        path = self.screenshots / f"{name}.png"
        height = self.driver.execute_script("return document.documentElement.scrollHeight")
        width = self.driver.execute_script("return window.outerWidth")
        self.driver.set_window_size(width, min(max(height + 120, 700), 4000))
        assert self.driver.save_screenshot(str(path)), path
        self.driver.set_window_size(width, 1000)
        return path

    def assert_no_console_errors(self, allowed: str | None = None) -> None:
        """No SEVERE entry in the browser console; fails if the driver cannot read the console."""
        errors = severe_console_errors(self.driver)
        if allowed:
            errors = [message for message in errors if allowed not in message]
        assert errors == [], "\n".join(errors)


@pytest.fixture(scope="module")
def explorer(devnet: Devnet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Explorer]:
    profile = tmp_path_factory.mktemp("chromium-profile")
    screenshots = Path(os.environ.get("EXPLORER_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    screenshots.mkdir(parents=True, exist_ok=True)
    driver = start_chromium(profile, window=(1280, 1000))
    try:
        yield Explorer(driver, devnet.url, screenshots)
    finally:
        driver.quit()


def _submit(devnet: Devnet, signer: str, tx_type: str, payload: dict[str, Any]) -> str:
    """Sign a transaction with a dev account's key (DIR/accounts/NAME.json), submit it over
    HTTP and return its hash."""
    from marketplace_tx.chain.transaction import sign_transaction
    from marketplace_tx.primitives.crypto import KeyPair

    account_file = json.loads((devnet.home / "accounts" / f"{signer}.json").read_text())
    key = KeyPair.from_seed(bytes.fromhex(account_file["secret_seed"]))
    assert key.address.hex() == account_file["address"]
    status = devnet.get("/status")
    nonce = devnet.get(f"/accounts/{account_file['address']}")["pending_nonce"]
    tx = sign_transaction(key, status["chain_id"], tx_type, payload, nonce, status["min_fee"])
    code, body = http_post(devnet.url + "/txs", tx.raw)
    assert code == 202, body
    return body["hash"]


def _faucet_transfer(devnet: Devnet, memo: str) -> str:
    """A transfer from the dev faucet to erin."""
    erin = json.loads((devnet.home / "accounts" / "erin.json").read_text())["address"]
    return _submit(devnet, "faucet", "transfer", {"to": bytes.fromhex(erin), "amount": 1_000_000, "memo": memo})


# --- the pages ----------------------------------------------------------------------


def test_home_shows_the_chain_and_a_new_block_arrives_live(devnet: Devnet, explorer: Explorer) -> None:
    explorer.open("")
    explorer.wait_for(lambda: explorer.text("#card-height b") == str(devnet.get("/status")["height"]),
                      "the height of /status on the home page")
    explorer.wait_for(lambda: explorer.count("table.blocks tbody tr[data-height]") >= 5, "the latest blocks")
    explorer.wait_for(lambda: explorer.count("table.txs tbody tr a[href^='#/tx/']") >= 5, "the latest transactions")
    assert explorer.count("svg.chart") == 2, "charts of transactions per block and block intervals"
    explorer.wait_for(lambda: explorer.text("#live") == "live", "server-sent events from /events")
    print("home page screenshot:", explorer.screenshot("home"))

    explorer.driver.execute_script("window.explorerMarker = 'same page'")
    tx_hash = _faucet_transfer(devnet, "<b id='injected'>not markup</b>")
    height = wait_until(lambda: (http_get(f"{devnet.url}/txs/{tx_hash}")[1] or {}).get("height"),
                        timeout=WAIT_SECONDS, message="the transfer to be committed")
    explorer.wait_for(lambda: explorer.count(f"table.blocks tr[data-height='{height}']") == 1,
                      f"block {height} in the latest blocks without a reload")
    explorer.wait_for(lambda: explorer.count(f"table.txs a[href='#/tx/{tx_hash}']") == 1,
                      "the transfer in the latest transactions")
    assert explorer.driver.execute_script("return window.explorerMarker") == "same page", "the page reloaded"
    assert explorer.text("#card-height b") == str(height)

    explorer.open(f"#/tx/{tx_hash}")
    explorer.wait_for_text("<b id='injected'>not markup</b>")
    assert explorer.count("#injected") == 0, "a memo was rendered as markup"
    explorer.assert_no_console_errors()


def test_transaction_proof_is_verified_in_the_browser(devnet: Devnet, explorer: Explorer) -> None:
    block = max((devnet.get(f"/blocks/{height}") for height in range(1, 6)), key=lambda item: item["tx_count"])
    tx_hash = block["txs"][block["tx_count"] // 2 + 1]  # an inner leaf: the path has several siblings
    explorer.open(f"#/tx/{tx_hash}")
    explorer.wait_for(lambda: explorer.text("#proof-status .mark") == "verified", "the inclusion proof verified")
    assert f"leaf {block['txs'].index(tx_hash)} of {block['tx_count']}" in explorer.text("#proof-status")
    assert "Receipt" in explorer.text() and explorer.count("#view .ok") >= 1

    explorer.open(f"#/block/{block['height']}")
    explorer.wait_for(lambda: explorer.count("#block-checks .mark.verified") == 4,
                      "header hash, tx_root, validators_hash and commit signatures verified")
    assert block["hash"] in explorer.text()
    explorer.assert_no_console_errors()


def test_shops_and_a_shop_page(devnet: Devnet, explorer: Explorer) -> None:
    explorer.open("#/shops")
    for name in devnet.shops:
        explorer.wait_for_text(name, "table.shops")
    tea = devnet.shops["Alice's Tea House"]
    explorer.open(f"#/shop/{tea}")
    explorer.wait_for_text("Longjing green tea, 250 g")
    text = explorer.text()
    assert "Fragrant, fresh, and fast delivery." in text, "a review"
    assert "The autumn harvest arrives in October." in text, "the merchant's reply"
    assert "trust score" in text
    shop = devnet.get(f"/shops/{tea}")
    assert explorer.text(".facts .gauge b") == str(shop["reputation"]["trust_score"])
    assert explorer.count("#shop-charts svg.chart") == 2, "daily charts from /shops/{id}/stats"
    explorer.assert_no_console_errors()


def test_listing_search(devnet: Devnet, explorer: Explorer) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    explorer.open("#/listings")
    explorer.driver.find_element(By.ID, "search-q").send_keys("lamp")
    explorer.driver.find_element(By.CSS_SELECTOR, "#listing-search button").click()
    explorer.wait_for(lambda: "LED bike lamp" in explorer.text("table.listings")
                      and explorer.count("table.listings tbody tr") == 1, "the lamp, alone")

    explorer.open("#/listings?min=4&max=9")
    explorer.wait_for(lambda: explorer.text("#search-count") == "2 found", "a price range")
    assert "LED bike lamp" in explorer.text("table.listings") and "Pu'er tuocha, 100 g" in explorer.text("table.listings")

    box = explorer.driver.find_element(By.ID, "query")  # the header's search box
    box.send_keys("Longjing", Keys.ENTER)
    explorer.wait_for(lambda: "Longjing green tea, 250 g" in explorer.text("table.listings"), "search from the header")
    explorer.driver.find_element(By.LINK_TEXT, "Longjing green tea, 250 g").click()
    explorer.wait_for_text("12.5 MKT")
    assert "Alice's Tea House" in explorer.text()
    explorer.assert_no_console_errors()


def test_order_timeline(devnet: Devnet, explorer: Explorer) -> None:
    shipped = devnet.orders["shipped"]
    explorer.open(f"#/order/{shipped}")
    explorer.wait_for(lambda: explorer.count("#timeline li.step") >= 4, "the timeline")
    events = [item.get_attribute("data-event") for item in
              explorer.driver.find_elements("css selector", "#timeline li.step")]
    assert events[:4] == ["order_place", "order_ship", "shipment_update", "shipment_update"], events
    assert events[-1] == "deadline", "the pending deadline closes the timeline"
    text = explorer.text("#timeline")
    assert "picked up" in text and "in transit" in text and "Shanghai sorting centre" in text
    order = devnet.get(f"/orders/{shipped}")
    for entry in order["history"]:
        assert explorer.count(f"#timeline a[href='#/tx/{entry['tx']}']") == 1, entry
    assert explorer.text("#escrow") == "24 MKT"
    print("order page screenshot:", explorer.screenshot("order"))

    steps = explorer.count("#timeline li.step")
    _submit(devnet, "dave", "shipment_update", {"order_id": bytes.fromhex(shipped), "status": "out_for_delivery",
                                                "location": "Qingdao depot"})
    explorer.wait_for(lambda: explorer.count("#timeline li.step") == steps + 1
                      and "Qingdao depot" in explorer.text("#timeline"), "the carrier's update, live")

    resolved = devnet.orders["resolved"]
    explorer.open(f"#/order/{resolved}")
    explorer.wait_for_text("dispute_resolve", "#timeline")
    assert "partly refunded: one of two tuocha missing" in explorer.text("#timeline")
    explorer.assert_no_console_errors()


def test_digital_order_shows_its_delivery_sealed_never_its_content(devnet: Devnet, explorer: Explorer) -> None:
    """R41 in the explorer: the demo's digital order, delivered by the devnet's merchant
    agent, shows a "digital" badge and "delivered (sealed to the buyer, N bytes)" in its
    timeline, and no page shows the sealed bytes, not even as hex."""
    order_id = devnet.orders["digital"]
    [listing_id] = [identifier for title, identifier in devnet.listings.items() if title.startswith("Gift card")]
    order = wait_until(lambda: (lambda order: order if order["delivery"] else None)(devnet.get(f"/orders/{order_id}")),
                       timeout=STARTUP_DELIVERY_SECONDS, message="the devnet's agent to deliver the digital order")
    content, size = order["delivery"], len(order["delivery"]) // 2
    assert order["digital"] is True and order["listing_id"] == listing_id
    deliver = next(entry for entry in order["history"] if entry["event"] == "order_deliver")

    def no_content_shown(page: str) -> None:
        html = explorer.driver.execute_script("return document.documentElement.outerHTML")
        for start in range(0, len(content) - 32, 32):  # any 16 bytes of it, anywhere in the document
            assert content[start:start + 32] not in html, f"{page} shows the sealed content"

    explorer.open(f"#/order/{order_id}")
    explorer.wait_for(lambda: explorer.count("#timeline li[data-event='order_deliver']") == 1, "the delivery step")
    assert explorer.count("#view h1 .badge.digital") == 1, "a digital badge beside the state"
    events = [item.get_attribute("data-event") for item in
              explorer.driver.find_elements("css selector", "#timeline li.step")]
    assert events[0] == "order_place" and "order_deliver" in events, events
    assert f"delivered (sealed to the buyer, {size} bytes)" in explorer.text("#timeline li[data-event='order_deliver']")
    assert explorer.count(f"#timeline li[data-event='order_deliver'] a[href='#/tx/{deliver['tx']}']") == 1
    assert explorer.count(f"#timeline li[data-event='order_deliver'] a[href='#/block/{deliver['height']}']") == 1
    explorer.wait_for(lambda: explorer.count("#state-check.checking") == 0, "the verified state section")
    no_content_shown("the order page")
    print("digital order page screenshot:", explorer.screenshot("digital-order"))

    explorer.open(f"#/tx/{deliver['tx']}")
    explorer.wait_for_text(f"sealed to the buyer ({size} bytes)")
    assert "order_deliver" in explorer.text("#view h1")
    no_content_shown("the order_deliver transaction page")

    explorer.open(f"#/listing/{listing_id}")
    explorer.wait_for_text("digital: each order is delivered on chain")
    assert explorer.count("#view h1 .badge.digital") == 1
    explorer.open(f"#/orders?state={order['state']}")
    explorer.wait_for(lambda: explorer.count(f"#view tr:has(a[href='#/order/{order_id}']) .badge.digital") == 1,
                      "the digital badge in the list of orders")
    no_content_shown("the list of orders")
    explorer.assert_no_console_errors()


def test_item_provenance(devnet: Devnet, explorer: Explorer) -> None:
    explorer.open("#/item/PUER-2019-0001")
    explorer.wait_for(lambda: explorer.count("#provenance li.step") >= 5, "the provenance chain")
    kinds = [item.get_attribute("data-kind") for item in
             explorer.driver.find_elements("css selector", "#provenance li.step")]
    assert kinds[0] == "registered" and kinds[-1] == "sold", kinds
    assert {"harvested", "inspected", "transfer", "listed"} <= set(kinds), kinds
    assert "Kunming lab" in explorer.text("#provenance")
    explorer.assert_no_console_errors()


def test_validators_and_account_pages(devnet: Devnet, explorer: Explorer) -> None:
    validators = devnet.get("/validators")
    explorer.open("#/validators")
    for validator in validators["validators"]:
        explorer.wait_for(lambda address=validator["address"]: explorer.count(
            f"table.validators a[href='#/account/{address}']") == 1, "the validator")
    explorer.wait_for(lambda: explorer.count("svg.signing rect.sig.yes") >= 5, "the signing record")
    assert explorer.count("svg.signing rect.sig.no") == 0, "a single validator signs every block"

    alice = json.loads((devnet.home / "accounts" / "alice.json").read_text())["address"]
    explorer.open(f"#/account/{alice}")
    explorer.wait_for_text("Merchant reputation")
    text = explorer.text()
    assert "merchant" in text and "Alice's Tea House" in text
    assert explorer.count("table.history tbody tr") == 20
    explorer.driver.find_element("id", "history-next").click()
    explorer.wait_for(lambda: "cursor=" in explorer.driver.current_url
                      and explorer.count("table.history tbody tr a[href^='#/tx/']") >= 1, "the next page of history")
    explorer.assert_no_console_errors()


def test_without_events_the_home_page_polls(devnet: Devnet, explorer: Explorer) -> None:
    driver = explorer.driver
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["*/events*"]})
    try:
        driver.get(f"{devnet.url}/?without-events#/")  # a new document: no EventSource open yet
        explorer.wait_for(lambda: explorer.text("#live") == "polling", "the fallback to polling /status")
        explorer.wait_for(lambda: explorer.count("table.blocks tbody tr[data-height]") >= 5, "the latest blocks")
        tx_hash = _faucet_transfer(devnet, "polled")
        height = wait_until(lambda: (http_get(f"{devnet.url}/txs/{tx_hash}")[1] or {}).get("height"),
                            timeout=WAIT_SECONDS, message="the transfer to be committed")
        explorer.wait_for(lambda: explorer.count(f"table.blocks tr[data-height='{height}']") == 1,
                          f"block {height} found by polling")
        explorer.wait_for(lambda: explorer.count(f"table.txs a[href='#/tx/{tx_hash}']") == 1, "the polled transfer")
        explorer.assert_no_console_errors(allowed="/events")
    finally:
        driver.execute_cdp_cmd("Network.setBlockedURLs", {"urls": []})
        driver.get(f"{devnet.url}/")
        severe_console_errors(driver)  # drop what the blocked stream logged meanwhile


def test_block_and_order_lists(devnet: Devnet, explorer: Explorer) -> None:
    explorer.open("#/blocks")
    explorer.wait_for(lambda: explorer.count("#view a[href='#/block/1']") == 1, "block 1 in the list of blocks")
    explorer.open("#/orders?state=disputed")
    disputed = devnet.orders["disputed"]
    explorer.wait_for(lambda: explorer.count(f"#view a[href='#/order/{disputed}']") == 1, "the disputed order")
    assert explorer.count("#view tbody tr") == 1
    explorer.assert_no_console_errors()


def test_errors_are_shown_and_a_phone_gets_no_sideways_scroll(devnet: Devnet, explorer: Explorer) -> None:
    explorer.open(f"#/order/{'0' * 64}")
    explorer.wait_for_text(f"not_found: no order {'0' * 64}", ".error")
    explorer.assert_no_console_errors(allowed="404")  # the browser logs the API's 404 itself

    explorer.driver.set_window_size(400, 900)
    try:
        for route in (f"#/order/{devnet.orders['return_requested']}", f"#/order/{devnet.orders['digital']}", "",
                      "#/shops"):
            explorer.open(route)
            explorer.wait_for(lambda: explorer.count("#view .page table, #view .page .timeline") >= 1, f"{route} on a phone")
            overflow = explorer.driver.execute_script(
                "return document.documentElement.scrollWidth - document.documentElement.clientWidth")
            assert overflow <= 0, f"{route or 'home'} scrolls sideways by {overflow} px on a phone"
    finally:
        explorer.driver.set_window_size(1280, 1000)
    explorer.assert_no_console_errors()

"""The explorer verifies state in the browser (issue 14, R36-R38): on a real devnet, the
account, order, shop, listing and item pages each fetch the object's state proof, the
genesis and the validator-set change points, verify the header of the proof's height by
R37 (Ed25519 commit signatures in WebCrypto) and fold the proof to that header's
state_root (R36), and say "verified against block H (hash…), signed by k of n
validators". On a devnet whose node lies (the test-only `MARKETCHAIN_TEST_CORRUPT_PROOFS=1`
switch corrupts every proof it serves) the same pages show the red failure naming the
check that failed. A pinned genesis hash (`?genesis=HASH`) is used and said so; a wrong
one fails at the genesis. Skipped without selenium, chromium or chromedriver.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import devnet_process
from tests.e2e.browser import missing_browser, severe_console_errors, start_chromium
from tests.e2e.node_process import http_get

pytestmark = pytest.mark.integration

WAIT_SECONDS = 45
"""Generous deadline of every condition waited for in the browser."""
CORRUPT_PROOFS_VARIABLE = "MARKETCHAIN_TEST_CORRUPT_PROOFS"
"""H2's test-only lying switch (node/http/state_proofs.py)."""
ITEM_ID = "PUER-2019-0001"
"""A unique item of the demo marketplace."""


@dataclass
class Devnet:
    """A running `marketchain devnet --nodes 1` and the demo objects it printed."""

    url: str
    home: Path
    objects: dict[str, str]
    """"shop NAME" / "listing TITLE" / "order STATE" → id."""

    def get(self, path: str) -> Any:
        status, body = http_get(self.url + path)
        assert status == 200, f"GET {path}: {status} {body!r}"
        return body

    def address(self, name: str) -> str:
        return json.loads((self.home / "accounts" / f"{name}.json").read_text())["address"]

    def first(self, kind: str) -> str:
        return next(identifier for label, identifier in self.objects.items() if label.startswith(kind + " "))


@contextmanager
def running_devnet(home: Path, environment: dict[str, str]) -> Iterator[Devnet]:
    """`marketchain devnet --nodes 1` in `home` with `environment`; stopped with SIGINT."""
    with devnet_process.running_devnet(home, environment) as started:
        objects = {f"{kind} {name}": identifier for kind, name, identifier in started.demo_objects()}
        assert objects, started.output
        yield Devnet(started.url, home, objects)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    reason = missing_browser()
    if reason:
        pytest.skip(reason)
    driver = start_chromium(tmp_path_factory.mktemp("chromium-profile"), window=(1280, 1000))
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def honest(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devnet]:
    with running_devnet(tmp_path_factory.mktemp("honest") / "devnet", {CORRUPT_PROOFS_VARIABLE: "0"}) as devnet:
        yield devnet


@pytest.fixture(scope="module")
def lying(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Devnet]:
    with running_devnet(tmp_path_factory.mktemp("lying") / "devnet", {CORRUPT_PROOFS_VARIABLE: "1"}) as devnet:
        yield devnet


def _routes(devnet: Devnet) -> dict[str, str]:
    """One page of each kind that verifies its state (R38)."""
    return {
        "account": f"#/account/{devnet.address('alice')}",
        "order": f"#/order/{devnet.first('order')}",
        "shop": f"#/shop/{devnet.first('shop')}",
        "listing": f"#/listing/{devnet.first('listing')}",
        "item": f"#/item/{ITEM_ID}",
    }


def _status_after_check(driver: Any, devnet: Devnet, route: str) -> tuple[str, str]:
    """Open `route` on `devnet`'s explorer and wait for the state check to end: (mark, text)."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(f"{devnet.url}/{route}")
    script = ("const status = document.querySelector('#state-proof-status');"
              "const mark = status && status.querySelector('.mark');"
              "return mark && mark.textContent !== 'checking' ? [mark.textContent, status.textContent] : null")
    return WebDriverWait(driver, WAIT_SECONDS, poll_frequency=0.2).until(
        lambda _: driver.execute_script(script), message=f"the state check of {route} to end")


def test_each_object_page_says_verified_against_a_header_it_checked(browser: Any, honest: Devnet) -> None:
    validators = honest.get("/validators")["validators"]
    for kind, route in _routes(honest).items():
        mark, text = _status_after_check(browser, honest, route)
        assert mark == "verified", (kind, text)
        found = re.search(r"verified against block (\d+) \(([0-9a-f]{16})…\), signed by (\d+) of (\d+) validators", text)
        assert found, (kind, text)
        height, hash_prefix, signers, total = found.groups()
        assert honest.get(f"/blocks/{height}")["hash"].startswith(hash_prefix), (kind, text)
        assert int(signers) == int(total) == len(validators), (kind, text)
        facts = browser.find_element("css selector", "#state-check").text
        assert "present:" in facts and "the genesis hash this node reports" in facts, (kind, facts)
    order_facts = browser.find_element("css selector", "#state-check").text  # the item page: last one
    assert "proven owner" in order_facts
    assert severe_console_errors(browser) == []


def test_the_proven_values_are_the_objects(browser: Any, honest: Devnet) -> None:
    routes = _routes(honest)
    _status_after_check(browser, honest, routes["order"])
    order = honest.get(f"/orders/{honest.first('order')}")
    facts = browser.find_element("css selector", "#state-check").text
    assert f"proven state\n{order['state']}" in facts or f"proven state {order['state']}" in facts, facts
    _status_after_check(browser, honest, routes["account"])
    facts = browser.find_element("css selector", "#state-check").text
    assert "proven balance" in facts and "proven nonce" in facts, facts


def test_a_pinned_genesis_is_used_and_a_wrong_one_fails(browser: Any, honest: Devnet) -> None:
    genesis_hash = honest.get("/status")["genesis_hash"]
    account = _routes(honest)["account"]
    mark, text = _status_after_check(browser, honest, f"{account}?genesis={genesis_hash}")
    assert mark == "verified", text
    assert "the pinned hash" in browser.find_element("css selector", "#state-check").text
    mark, text = _status_after_check(browser, honest, f"?genesis={genesis_hash}{account}")  # pinned in the URL
    assert mark == "verified", text
    assert "the pinned hash" in browser.find_element("css selector", "#state-check").text
    wrong = ("0" if genesis_hash[0] != "0" else "1") + genesis_hash[1:]
    mark, text = _status_after_check(browser, honest, f"{account}?genesis={wrong}")
    assert mark == "not verified", text
    assert "genesis (R33)" in text and "not to the trusted" in text, text


def test_a_lying_node_is_caught_on_every_object_page(browser: Any, lying: Devnet) -> None:
    for kind, route in _routes(lying).items():
        mark, text = _status_after_check(browser, lying, route)
        assert mark == "not verified", (kind, text)
        assert "state proof (R36)" in text and "state_root" in text, (kind, text)
        assert browser.find_element("css selector", "#state-check").get_attribute("class") == "state-check failed"
    assert severe_console_errors(browser) == []

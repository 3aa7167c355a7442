"""A small market on a real one-validator node, and the merchant agent as a real process:
the shared helpers of the merchant agent's end-to-end tests (test_merchant_agent.py, and the
webhook tests, which reuse `MerchantNetwork` and `AgentProcess`).

    network = MerchantNetwork.start(tmp_path_factory.mktemp("shop"))
    config = network.write_config(network.directory / "agent", accept={"max_amount": 5_000_000})
    network.import_codes(config, ["GIFT-1", "GIFT-2"])
    with AgentProcess(config, network.merchant_key_file) as agent:
        order_id = network.place_order(network.buyers[0], network.digital_listing)
        network.wait_for_state(order_id, "delivered")
    network.stop()

The market: the validator is the registrar; a merchant (role granted) owns one shop with a
digital listing (`DIGITAL_STOCK` units at `PRICE`) and a parcel listing; `BUYER_COUNT` funded
buyers. Every wait polls a condition with a generous deadline (tests/e2e/harness/waiting.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import nacl.pwhash

from client import payloads
from client.keystore import write_plain_key
from client.merchant.inventory import Inventory
from client.merchant.inventory_crypto import create_inventory_key
from client.node_client import NodeClient
from client.sealing import seal_for
from client.transactions import send_and_wait
from marketplace_tx.primitives.crypto import KeyPair
from tests.e2e.harness.processes import log_tail
from tests.e2e.harness.waiting import wait_until
from tests.e2e.node_process import NodeProcess
from tests.paths import REPO_ROOT

PRICE = 1_000_000
"""Unit price of both listings, µMKT (1 MKT)."""

DIGITAL_STOCK = 50
"""Units of the digital listing (its codes are imported separately)."""

PARCEL_STOCK = 50
"""Units of the parcel listing."""

BUYER_COUNT = 3
"""Funded buyers."""

FUNDS = 1_000_000_000
"""Genesis balance of the merchant and of each buyer, µMKT."""

INVENTORY_PASSPHRASE = "inventory passphrase 1"
"""The inventory's passphrase in these tests (given to the agent in its environment)."""

AGENT_DEADLINE_S = 120.0
"""Generous deadline of every wait on the agent (a loaded 2-core machine)."""


class MerchantNetwork:
    """A node with a registrar, a merchant, its shop, a digital and a parcel listing, and buyers."""

    def __init__(self, directory: Path) -> None:
        """The market in `directory` (not started: use `MerchantNetwork.start`)."""
        self.directory = directory
        """Where the node's home, key files and agents' state live."""
        self.merchant = KeyPair.from_seed(hashlib.sha256(b"merchant agent e2e merchant").digest())
        """The shop's owner, whose key the agent signs with."""
        self.buyers = [KeyPair.from_seed(hashlib.sha256(b"merchant agent e2e buyer %d" % n).digest())
                       for n in range(BUYER_COUNT)]
        """Funded buyers."""
        self.node = NodeProcess(directory / "node", fund={key.address: FUNDS for key in (self.merchant, *self.buyers)})
        """The node process."""
        self.merchant_key_file = directory / "merchant.json"
        """The merchant's key file (`--key` of `merchant run`), a plain dev key."""
        write_plain_key(self.merchant_key_file, self.merchant)
        self.shop_id = b""
        """The shop (set by `start`)."""
        self.digital_listing = b""
        """The digital listing (set by `start`)."""
        self.parcel_listing = b""
        """The parcel listing (set by `start`)."""

    @classmethod
    def start(cls, directory: Path) -> MerchantNetwork:
        """Start the node and open the shop and its listings."""
        network = cls(directory)
        network.node.start()
        try:
            network._open_shop()
        except BaseException:
            network.node.kill()
            raise
        return network

    @property
    def client(self) -> NodeClient:
        """An HTTP client of the node."""
        return NodeClient(self.node.url)

    def _open_shop(self) -> None:
        client, registrar = self.client, self.node.validator_key
        send_and_wait(client, registrar, "role_grant", {"account": self.merchant.address, "role": "merchant",
                                                         "evidence_hash": hashlib.sha256(b"kyc").digest()})
        shop = send_and_wait(client, self.merchant, "shop_create", payloads.shop_create("Gift Card Corner"))
        self.shop_id = bytes.fromhex(shop["hash"])
        digital = send_and_wait(client, self.merchant, "listing_create",
                                payloads.listing_create(self.shop_id, "Gift card 10 MKT", PRICE, stock=DIGITAL_STOCK,
                                                        digital=True))
        self.digital_listing = bytes.fromhex(digital["hash"])
        parcel = send_and_wait(client, self.merchant, "listing_create",
                               payloads.listing_create(self.shop_id, "Tea tin", PRICE, stock=PARCEL_STOCK))
        self.parcel_listing = bytes.fromhex(parcel["hash"])

    def stop(self) -> None:
        """Stop the node (SIGTERM, clean exit asserted)."""
        self.node.stop()

    # --- the agent's files --------------------------------------------------------------------

    def write_config(self, state_dir: Path, accept: dict[str, Any] | None = None, digital: bool = True,
                     webhook: dict[str, Any] | None = None, warn_before_ms: int | None = None) -> Path:
        """merchant.toml in `state_dir`'s parent (state_dir relative to it), for this market's
        node and shop; `[accept]` keys from `accept`, the digital listing in `[[digital]]` if
        `digital`, a `[webhook]` table if given. Returns its path."""
        state_dir.parent.mkdir(parents=True, exist_ok=True)
        lines = ["[node]", f'url = "{self.node.url}"', "[agent]", f'state_dir = "{state_dir.name}"',
                 f'shops = ["{self.shop_id.hex()}"]']
        if warn_before_ms is not None:
            lines.append(f"warn_before_ms = {warn_before_ms}")
        lines.append("[accept]")
        lines += [f"{name} = {json.dumps(value)}" for name, value in (accept or {}).items()]
        if digital:
            lines += ["[[digital]]", f'listing = "{self.digital_listing.hex()}"']
        if webhook:
            lines.append("[webhook]")
            lines += [f"{name} = {json.dumps(value)}" for name, value in webhook.items()]
        path = state_dir.parent / f"{state_dir.name}.toml"
        path.write_text("\n".join(lines) + "\n")
        return path

    @staticmethod
    def create_inventory(state_dir: Path) -> bytes:
        """The inventory key of `state_dir`, with the weakest Argon2id limits (tests/fast_keys.py:
        a deliberate test setting; the agent reads the limits from the file)."""
        return create_inventory_key(state_dir / "inventory", INVENTORY_PASSPHRASE,
                                    nacl.pwhash.argon2id.OPSLIMIT_MIN, nacl.pwhash.argon2id.MEMLIMIT_MIN)

    def import_codes(self, state_dir: Path, codes: list[str]) -> None:
        """Add `codes` for the digital listing, in-process (the CLI's `codes add` is tested on its own)."""
        key = self.create_inventory(state_dir)
        Inventory(state_dir / "inventory", key).add_codes(self.digital_listing, codes)

    # --- buyers -------------------------------------------------------------------------------

    def place_order(self, buyer: KeyPair, listing: bytes, quantity: int = 1) -> bytes:
        """`buyer` orders `quantity` units of `listing` (waits until final); the order id."""
        sealed = seal_for(self.merchant.address, b"Erin Example, 12 Harbour Road, Qingdao")
        receipt = send_and_wait(self.client, buyer, "order_place", payloads.order_place(listing, quantity, PRICE, sealed))
        return bytes.fromhex(receipt["hash"])

    def order(self, order_id: bytes) -> dict[str, Any]:
        """`GET /orders/{id}`."""
        return self.client.order(order_id)

    def wait_for_state(self, order_id: bytes, state: str, agent: AgentProcess | None = None) -> dict[str, Any]:
        """Wait until `order_id` is in `state`; the order (the agent's log tail in a failure)."""
        def reached() -> dict[str, Any] | None:
            order = self.order(order_id)
            return order if order["state"] == state else None

        return wait_until(reached, AGENT_DEADLINE_S, lambda: f"order {order_id.hex()} {state}: it is "
                          f"{self.order(order_id)['state']}\n" + (agent.log_tail() if agent else ""))


class AgentProcess:
    """`python -m cli merchant run --key KEY --config CONFIG` as a real process, its stderr in a log file."""

    def __init__(self, config: Path, key_file: Path, environment: dict[str, str] | None = None,
                 log_path: Path | None = None) -> None:
        """An agent of `config` signing with `key_file`; `environment` adds variables (e.g.
        `MARKETCHAIN_TEST_AGENT_CRASH`); the inventory passphrase is set."""
        self.config = config
        """Its merchant.toml."""
        self.key_file = key_file
        """Its key file."""
        self.environment = {**os.environ, "MARKETCHAIN_INVENTORY_PASSPHRASE": INVENTORY_PASSPHRASE,
                            "PYTHONPATH": str(REPO_ROOT), **(environment or {})}
        """The process's environment."""
        self.log_path = log_path or config.with_suffix(".log")
        """Where its output goes (appended across restarts)."""
        self.process: subprocess.Popen[bytes] | None = None
        """The running process, if any."""

    def start(self) -> AgentProcess:
        """Start the agent (it logs `merchant agent for ...` once it runs)."""
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "cli", "merchant", "run", "--key", str(self.key_file), "--config", str(self.config)],
                cwd=REPO_ROOT, env=self.environment, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        return self

    @property
    def running(self) -> bool:
        """True while the process runs."""
        return self.process is not None and self.process.poll() is None

    def log_text(self) -> str:
        """Everything the agent logged (all runs)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self) -> str:
        """The last lines of the log, for failure messages."""
        return f"--- agent log {self.log_path} ---\n{log_tail(self.log_path)}"

    def wait_for_log(self, text: str, count: int = 1) -> None:
        """Wait until `text` appears at least `count` times in the log."""
        wait_until(lambda: self.log_text().count(text) >= count, AGENT_DEADLINE_S,
                   lambda: f"{text!r} ×{count} in the agent's log\n{self.log_tail()}")

    def wait_exit(self) -> int:
        """Wait for the process to end; its exit code (negative: killed by that signal)."""
        assert self.process is not None
        try:
            return self.process.wait(timeout=AGENT_DEADLINE_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"the agent did not exit\n{self.log_tail()}") from None

    def stop(self) -> None:
        """SIGTERM, and assert a clean exit (code 0)."""
        if self.running:
            assert self.process is not None
            self.process.send_signal(signal.SIGTERM)
        if self.process is not None:
            code = self.wait_exit()
            assert code == 0, f"SIGTERM: the agent exited with {code}\n{self.log_tail()}"

    def kill(self) -> None:
        """SIGKILL the agent and reap it."""
        if self.running:
            assert self.process is not None
            self.process.send_signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait()

    def __enter__(self) -> AgentProcess:
        return self.start()

    def __exit__(self, kind: Any, value: Any, traceback: Any) -> None:
        if kind is None:
            self.stop()
        else:
            self.kill()

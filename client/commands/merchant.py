"""`marketchain merchant`: run a shop unattended (issue 16, docs/merchant-agent.md).

    marketchain merchant run --key KEY --config merchant.toml
    marketchain merchant codes add --config merchant.toml --listing ID --file codes.txt
    marketchain merchant codes list --config merchant.toml

A bad config, key, passphrase or state directory exits 2; SIGTERM or SIGINT stops the agent
cleanly (the step under way is finished and persisted) with exit code 0.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import signal
import sys
from typing import Any

import click

from client.commands.common import load_signing_key
from client.commands.merchant_codes import codes
from client.commands.merchant_replay import replay
from client.commands.merchant_report import report
from client.commands.merchant_setup import SetupError, inventory_passphrase, load_merchant_config
from client.merchant.agent import MerchantAgent
from client.merchant.config import MerchantConfig
from client.merchant.crash_points import CrashPoints
from client.merchant.cursor import CursorError
from client.merchant.durable_files import ensure_directory
from client.merchant.inventory import Inventory
from client.merchant.inventory_crypto import KEY_FILE, InventoryError, open_inventory_key
from client.node_client import ClientError, NodeClient
from client.nonces import lock_path_of
from marketplace_tx.primitives.crypto import KeyPair

LOCK_FILE = "agent.lock"
"""One agent at a time per state directory: it holds an exclusive lock on this file."""


@click.group("merchant")
def merchant() -> None:
    """Run a shop unattended: the merchant agent, its webhooks and reports."""


@merchant.command("run")
@click.option("--key", "key_reference", required=True,
              help="The merchant's key: a keystore name or a key file (passphrase: $MARKETCHAIN_PASSPHRASE or a prompt).")
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False),
              help="merchant.toml: the node, the shops, what to accept and deliver, the webhook.")
def run(key_reference: str, config_path: str) -> None:
    """Run the merchant agent in the foreground until SIGTERM or Ctrl-C."""
    config = load_merchant_config(config_path)
    try:
        key = load_signing_key(key_reference)
        crash_points = CrashPoints(config.state_dir, os.environ)
    except click.ClickException as error:
        raise SetupError(error.message) from None
    except ValueError as error:
        raise SetupError(str(error)) from None
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")
    check_shops(config, key)
    try:
        ensure_directory(config.state_dir)
        lock = open(config.state_dir / LOCK_FILE, "a")  # noqa: SIM115 - held for the agent's life
    except OSError as error:
        raise SetupError(f"cannot use state_dir {config.state_dir}: {error.strerror or error}") from None
    with lock:
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise SetupError(f"another merchant agent runs on {config.state_dir}") from None
        try:
            agent = MerchantAgent(config, key, open_inventory(config), open_outbox(config), crash_points,
                                  lock_path_of(key_reference, key.address))
        except (CursorError, InventoryError) as error:
            raise SetupError(str(error)) from None
        asyncio.run(run_until_signalled(agent))


def check_shops(config: MerchantConfig, key: KeyPair) -> None:
    """`SetupError` unless every shop of `[agent] shops` is owned by `key` (when the node answers)."""
    client = NodeClient(config.node_url)
    for shop_id in sorted(config.shops):
        try:
            owner = client.shop(shop_id)["owner"]
        except ClientError as error:
            if error.code == "not_found":
                raise SetupError(f"{config.path}: [agent] shops: no shop {shop_id.hex()} on {config.node_url}") from None
            logging.getLogger("marketchain.merchant").warning("cannot check the shops yet: %s", error)
            return
        if owner != key.address.hex():
            raise SetupError(f"{config.path}: [agent] shops: shop {shop_id.hex()} is owned by {owner}, "
                             f"not by the key {key.address.hex()}")


def open_inventory(config: MerchantConfig) -> Inventory | None:
    """The codes, opened with the inventory's passphrase, when `[[digital]]` listings are configured."""
    if not config.digital_listings:
        return None
    if not (config.inventory_dir / KEY_FILE).exists():
        raise SetupError(f"no codes in {config.inventory_dir} for the [[digital]] listings: import them first "
                         "(marketchain merchant codes add)")
    return Inventory(config.inventory_dir, open_inventory_key(config.inventory_dir, inventory_passphrase()))


def open_outbox(config: MerchantConfig) -> Any:
    """The webhook outbox of `[webhook]`, or None."""
    if config.webhook is None:
        return None
    from client.merchant.outbox import WebhookOutbox

    return WebhookOutbox(config.webhook, ensure_directory(config.outbox_dir))


async def run_until_signalled(agent: MerchantAgent) -> None:
    """Run `agent` until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, stop.set)
    await agent.run(stop)


merchant.add_command(codes)
merchant.add_command(replay)
merchant.add_command(report)


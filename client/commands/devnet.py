"""`marketchain devnet`: the one-command demo, a local testnet seeded with a whole marketplace."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click

from client.commands.common import fail
from client.devnet import DEMO_ACCEPT_WINDOW_MS, DemoData, DemoError, describe, seed_demo_data
from client.devnet_merchant import (
    DEVNET_INVENTORY_PASSPHRASE,
    GIFT_CARD_CODES,
    config_path,
    log_path,
    start_agent,
    stop_agent,
    write_merchant_home,
)
from client.merchant.config import ConfigError
from client.merchant.inventory_crypto import INVENTORY_PASSPHRASE_VARIABLE, InventoryError
from client.node_client import ClientError
from client.progress import Steps
from client.testnet import TestnetError, create_testnet, read_testnet, start_testnet, stop_testnet
from marketplace_tx.chain.params import Params


def _banner(node_count: int, url: str, accounts: Path) -> str:
    return f"""
marketchain devnet is running ({node_count} node(s), chain marketchain-devnet)
  explorer      {url}/
  API           {url}/status   {url}/shops   {url}/orders?state=completed
  dev accounts  {accounts}/  (faucet: registrar; alice, bob: merchants; carol: arbiter;
                dave: carrier; frank: producer; grace: inspector; erin, heidi: buyers)
  try           marketchain query shops --node {url}
                marketchain query orders --buyer {accounts}/erin.json --node {url}
                marketchain query listings --q tea --node {url}
                marketchain query item PUER-2019-0001 --node {url}"""


def _merchant_banner(home: Path, url: str, accounts: Path, demo: DemoData | None) -> str:
    """How to watch the merchant agent, and to buy and open a gift card from the CLI."""
    listing = demo.digital_listing if demo else "LISTING"
    shop = demo.shops["Bob's Bikes"] if demo else "SHOP"
    return f"""merchant agent  runs Bob's Bikes unattended: gift cards (a digital listing) delivered from
                {GIFT_CARD_CODES} demo codes; config {config_path(home)}, log {log_path(home)}
                (inventory passphrase: {INVENTORY_PASSPHRASE_VARIABLE}={DEVNET_INVENTORY_PASSPHRASE})
  buy one       marketchain tx order-place --listing {listing} \\
                  --key {accounts}/erin.json --node {url} --wait
                (the agent delivers it within a block or two; ORDER is the "order id" it prints{"" if demo else
                "; LISTING: marketchain query listings --q gift"})
  open it       marketchain query order ORDER --decrypt --key {accounts}/erin.json --node {url}
  sales report  marketchain merchant report --shop {shop} --since {time.strftime("%Y-%m-%d", time.gmtime())} --node {url}"""


def _start_merchant(directory: Path, url: str, demo: DemoData | None) -> subprocess.Popen[bytes] | None:
    """Write the agent's config and codes (fresh devnet), then start the agent; None if it cannot run."""
    try:
        if demo is not None and demo.digital_listing:
            write_merchant_home(directory, url, demo.shops["Bob's Bikes"], demo.digital_listing)
        return start_agent(directory)
    except (ConfigError, InventoryError, OSError) as error:
        click.echo(f"the merchant agent cannot start: {error}", err=True)
        return None


@click.command("devnet")
@click.option("--home", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep the devnet in this directory (default: a fresh temporary one, removed on exit).")
@click.option("--nodes", "node_count", default=None, type=click.IntRange(1, 64),
              help="Validators of a new devnet [default: 4]; an existing one keeps its own number.")
@click.option("--base-port", default=26656, show_default=True, type=click.IntRange(1024, 65000))
def devnet(home: Path | None, node_count: int | None, base_port: int) -> None:
    """The one-command demo: a local testnet with demo data; Ctrl-C stops it."""
    temporary = home is None
    directory = Path(tempfile.mkdtemp(prefix="marketchain-devnet-")) if home is None else home
    fresh = not (directory / "testnet.json").exists()
    try:
        if fresh:
            # A one-minute accept window: the demo's placed order visibly expires by deadline (R15).
            params = Params().with_overrides({"accept_window_ms": str(DEMO_ACCEPT_WINDOW_MS)})
            create_testnet(directory, node_count or 4, base_port, params, "marketchain-devnet")
        elif node_count is not None and node_count != len(read_testnet(directory)["nodes"]):
            fail(f"{directory} holds a {len(read_testnet(directory)['nodes'])}-node devnet: --nodes {node_count} "
                 "does not apply to it (omit --nodes, or choose a new --home)")
        with Steps("nodes serving", len(read_testnet(directory)["nodes"])) as steps:
            nodes = start_testnet(directory, progress=lambda n: steps.advance(f"{n.name} serving {n.http}"))
    except TestnetError as error:
        if temporary:
            shutil.rmtree(directory, ignore_errors=True)
        fail(str(error))
    stop_requested = False
    failed = False

    def request_stop(signal_number: int, frame: Any) -> None:
        nonlocal stop_requested
        stop_requested = True

    # Installed explicitly: a process started in the background inherits SIGINT ignored.
    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    url = nodes[0].http
    accounts = directory / "accounts"
    agent: subprocess.Popen[bytes] | None = None
    try:
        demo = None
        if fresh:
            click.echo("seeding demo data through real transactions…")
            started = time.monotonic()
            demo = seed_demo_data(url, accounts, click.echo)
            click.echo(f"seeded in {time.monotonic() - started:.1f} s\n")
            click.echo(describe(demo, url))
        agent = _start_merchant(directory, url, demo)
        click.echo(_banner(len(nodes), url, accounts))
        if agent is not None:
            click.echo(_merchant_banner(directory, url, accounts, demo))
        click.echo("Press Ctrl-C to stop.")
        agent_reported = False
        while not stop_requested:
            if agent is not None and agent.poll() is not None and not agent_reported:
                click.echo(f"the merchant agent stopped (exit code {agent.returncode}); see {log_path(directory)}",
                           err=True)
                agent_reported = True
            time.sleep(0.2)
    except (ClientError, DemoError) as error:
        click.echo(f"demo data failed: {error}", err=True)
        failed = True
    finally:
        click.echo("\nstopping the devnet…")
        stop_agent(agent)
        stop_testnet(directory)
        if temporary:
            shutil.rmtree(directory, ignore_errors=True)
    if failed:
        sys.exit(1)

"""`marketchain devnet`: the one-command demo, a local testnet seeded with a whole marketplace."""

from __future__ import annotations

import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click

from client.commands.common import fail
from client.devnet import DEMO_ACCEPT_WINDOW_MS, DemoError, describe, seed_demo_data
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
                marketchain query item PUER-2019-0001 --node {url}
Press Ctrl-C to stop."""


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
    try:
        if fresh:
            click.echo("seeding demo data through real transactions…")
            started = time.monotonic()
            demo = seed_demo_data(url, accounts, click.echo)
            click.echo(f"seeded in {time.monotonic() - started:.1f} s\n")
            click.echo(describe(demo, url))
        click.echo(_banner(len(nodes), url, accounts))
        while not stop_requested:
            time.sleep(0.2)
    except (ClientError, DemoError) as error:
        click.echo(f"demo data failed: {error}", err=True)
        failed = True
    finally:
        click.echo("\nstopping the devnet…")
        stop_testnet(directory)
        if temporary:
            shutil.rmtree(directory, ignore_errors=True)
    if failed:
        sys.exit(1)

"""`marketchain testnet`: local multi-process testnets on loopback (`client.testnet`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from client.commands.common import echo_json, fail, home_option, parse_params
from client.formatting import column_table
from client.progress import Steps
from client.testnet import (
    TestnetError,
    create_testnet,
    read_testnet,
    start_testnet,
    stop_testnet,
    testnet_status,
)

DEFAULT_NODE_COUNT = 4
"""Validators of a new testnet when `--nodes` is not given."""


@click.group()
def testnet() -> None:
    """Local multi-process testnets on loopback."""


@testnet.command("start")
@click.option("--nodes", "node_count", default=None, type=click.IntRange(1, 64),
              help="Validators of a new testnet [default: 4]; an existing one keeps its own number.")
@home_option
@click.option("--base-port", default=26656, show_default=True, type=click.IntRange(1024, 65000))
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE", help="Genesis parameter.")
@click.option("--chain-id", default="marketchain-testnet", show_default=True)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or lines on stderr.")
@click.option("--json", "as_json", is_flag=True, help="Print the nodes as JSON.")
def testnet_start(node_count: int | None, home: Path, base_port: int, params: tuple[str, ...], chain_id: str,
                  quiet: bool, as_json: bool) -> None:
    """Start N validators in the background (or restart the stopped nodes of an existing testnet in HOME)."""
    try:
        if not (home / "testnet.json").exists():
            create_testnet(home, node_count or DEFAULT_NODE_COUNT, base_port, parse_params(params), chain_id)
        else:
            existing = len(read_testnet(home)["nodes"])
            if node_count is not None and node_count != existing:
                fail(f"{home} holds a {existing}-node testnet: --nodes {node_count} does not apply to it "
                     f"(omit --nodes to restart it, or choose a new --home)")
            if params:
                click.echo("note: the testnet exists; --param applies only to a new one", err=True)
        total = len(read_testnet(home)["nodes"])
        with Steps("nodes serving", total, quiet=quiet) as steps:
            nodes = start_testnet(home, progress=lambda n: steps.advance(f"{n.name} serving {n.http}"))
    except TestnetError as error:
        fail(str(error))
    if as_json:
        echo_json([n.to_json() for n in nodes])
        return
    click.echo(column_table(["name", "http", "p2p", "pid", "validator"],
                            [[n.name, n.http, n.p2p, n.pid, n.validator] for n in nodes]))
    click.echo(f"\ndev accounts: {home}/accounts/*.json   stop: marketchain testnet stop --home {home}")


@testnet.command("stop")
@home_option
def testnet_stop(home: Path) -> None:
    """Stop every node of the testnet (SIGTERM, then SIGKILL after 30 s)."""
    try:
        stopped = stop_testnet(home)
    except TestnetError as error:
        fail(str(error))
    click.echo(f"stopped {', '.join(stopped)}" if stopped else "no node was running")


@testnet.command("status")
@home_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def testnet_status_command(home: Path, as_json: bool) -> None:
    """Show each node's process, height, block sync and peers."""
    try:
        rows = testnet_status(home)
    except TestnetError as error:
        fail(str(error))
    if as_json:
        echo_json(rows)
        return
    click.echo(column_table(
        ["name", "http", "pid", "running", "height", "sync", "peers", "round"],
        [[r["name"], r["http"], r["pid"] or "-", "yes" if r["running"] else "no", r.get("height", "-"),
          sync_cell(r), r.get("peers", "-"),
          f"{r['round']} {r['step']}" if r.get("round") is not None else "-"] for r in rows],
    ))
    for row in rows:
        if row["running"] and "error" in row:
            click.echo(f"{row['name']}: {row['error']}", err=True)


def sync_cell(row: dict[str, Any]) -> str:
    """The `sync` column of `testnet status`: `synced`, `-` or `height/target (percent)`."""
    if "height" not in row:
        return "-"
    if not row.get("syncing"):
        return "synced"
    target = row.get("target", row["height"])
    return f"{row['height']}/{target} ({100 * row['height'] // max(target, 1)}%)"

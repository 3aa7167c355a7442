"""`marketchain node sync-status`: a node's block sync, read over HTTP (the client half of `node`)."""

from __future__ import annotations

import click

from client.commands.common import call, echo_json, fail, node_client
from client.formatting import key_value_table
from client.node_client import DEFAULT_NODE_URL
from client.progress import describe_sync, sync_summary, watch_sync


@click.command("sync-status")
@click.option("--node", "node_url", envvar="MARKETCHAIN_NODE", default=DEFAULT_NODE_URL, show_default=True,
              help="Node API URL ($MARKETCHAIN_NODE).")
@click.option("--watch", is_flag=True, help="Follow until the node has caught up with its peers.")
@click.option("--timeout", "timeout_s", type=click.FloatRange(0), default=None, help="With --watch: give up after S seconds.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or lines.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def sync_status(node_url: str, watch: bool, timeout_s: float | None, quiet: bool, as_json: bool) -> None:
    """A node's block sync: its height, the highest height its peers report, how far behind."""
    client = node_client(node_url)
    if watch:
        try:
            summary = watch_sync(lambda: call(client.status), quiet=quiet or as_json, timeout_s=timeout_s)
        except TimeoutError as error:
            fail(f"{error} [node {node_url}]")
    else:
        summary = sync_summary(call(client.status))
    view = {"node": client.base_url, **summary}
    if as_json:
        echo_json(view)
    else:
        click.echo(key_value_table([("node", view["node"]), ("state", describe_sync(summary)),
                                    ("height", summary["height"]), ("target", summary["target"]),
                                    ("behind", summary["behind"]), ("peers", summary["peers"])]))

"""`marketchain merchant report`: a shop's sales per UTC day for accounting (issue 16).

The columns and how each is computed are in docs/merchant-reports.md; the figures are
computed by client/merchant/report.py from what client/merchant/report_source.py reads
from the node's HTTP API.
"""

from __future__ import annotations

from datetime import UTC, datetime

import click

from client.commands.common import client_error_text, fail, node_client, node_option
from client.merchant.report import ReportError, check_range, parse_day, render_csv, render_table
from client.merchant.report_source import fetch_report
from client.node_client import ClientError
from client.payloads import parse_id


@click.command("report")
@click.option("--shop", "shop_id", required=True, help="The shop's id (64 hex characters).")
@click.option("--since", required=True, metavar="YYYY-MM-DD", help="First UTC day of the report.")
@click.option("--until", default=None, metavar="YYYY-MM-DD", help="Last UTC day (inclusive) [default: today].")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV with a header line instead of a table.")
@node_option
def report(shop_id: str, since: str, until: str | None, as_csv: bool, node_url: str) -> None:
    """A shop's orders, escrow released, refunds, fees and points per UTC day (µMKT), with totals."""
    try:
        shop_hex = parse_id(shop_id, "--shop").hex()
    except ValueError:
        fail(f"--shop {shop_id!r} is not a shop id (64 hex characters)")
    try:
        first = parse_day(since, "--since")
        last = parse_day(until, "--until") if until else datetime.now(UTC).date()
        check_range(first, last)
    except ReportError as error:
        fail(str(error))
    client = node_client(node_url)
    try:
        result = fetch_report(client, shop_hex, first, last)
    except ReportError as error:
        fail(str(error))
    except ClientError as error:
        if error.code == "not_found":
            fail(f"--shop {shop_hex}: no such shop on {client.base_url}")
        fail(client_error_text(error))
    click.echo(render_csv(result) if as_csv else render_table(result), nl=not as_csv)
    if result.unknown_fees:
        click.echo(f"warning: the node could not tell the fee of {result.unknown_fees} merchant transaction(s) "
                   "(pruned?): tx_fees leaves them out", err=True)

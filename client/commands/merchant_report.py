"""`marketchain merchant report`: a shop's sales per day for accounting (being written, issue 16)."""

from __future__ import annotations

import click


@click.command("report")
def report() -> None:
    """A shop's orders, escrow released, refunds, fees and points per day."""
    raise click.ClickException("merchant report is not available yet")

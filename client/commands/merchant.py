"""`marketchain merchant`: run a shop unattended (issue 16)."""

from __future__ import annotations

import click

from client.commands.merchant_replay import replay
from client.commands.merchant_report import report


@click.group("merchant")
def merchant() -> None:
    """Run a shop unattended: the merchant agent, its webhooks and reports."""


merchant.add_command(replay)
merchant.add_command(report)

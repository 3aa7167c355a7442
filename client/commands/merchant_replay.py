"""`marketchain merchant replay`: re-send dead-lettered webhooks (being written, issue 16)."""

from __future__ import annotations

import click


@click.command("replay")
def replay() -> None:
    """Re-send webhooks that never got through."""
    raise click.ClickException("merchant replay is not available yet")

"""`marketchain merchant replay`: send the dead-lettered webhooks again, now (issue 16).

    marketchain merchant replay --config merchant.toml --all
    marketchain merchant replay --config merchant.toml --id evt_... --id evt_...
    marketchain merchant replay --config merchant.toml          # only lists them

Each event is POSTed once with its original body (same `id`, `created` and `data`) and a
fresh signature; a delivered one leaves `dead-letters.jsonl`, a failed one stays. The
exit code is 1 if any failed (or an id is not a dead letter), 2 for a bad config.
"""

from __future__ import annotations

import asyncio
import datetime
from pathlib import Path

import click

from client.merchant.config import ConfigError, load_config
from client.merchant.dead_letters import read_dead_letters
from client.merchant.webhook_sender import replay_dead_letters


@click.command("replay")
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False),
              help="The agent's merchant.toml (its [webhook] table and state_dir).")
@click.option("--id", "event_ids", multiple=True, metavar="EVT",
              help="A dead letter's event id to send again (repeatable).")
@click.option("--all", "replay_all", is_flag=True, help="Send every dead letter again.")
def replay(config_path: str, event_ids: tuple[str, ...], replay_all: bool) -> None:
    """Re-send webhooks that never got through (the dead letters), now."""
    try:
        config = load_config(config_path)
    except ConfigError as error:
        click.echo(f"Error: {error}", err=True)
        raise SystemExit(2) from None
    if config.webhook is None:
        click.echo(f"Error: {config_path} has no [webhook] table: there is nowhere to send to", err=True)
        raise SystemExit(2)
    if replay_all and event_ids:
        raise click.UsageError("give --all or --id, not both")
    if not replay_all and not event_ids:
        list_dead_letters(config.outbox_dir)
        return
    ids = None if replay_all else list(event_ids)
    results = asyncio.run(replay_dead_letters(config.webhook, config.outbox_dir, ids))
    for result in results:
        click.echo(f"{result.id}  {'delivered' if result.delivered else 'failed: ' + result.detail}")
    if not results:
        click.echo("no dead letters")
    if any(not result.delivered for result in results):
        raise SystemExit(1)


def list_dead_letters(directory: Path) -> None:
    """Print the dead letters (id, type, attempts, last error) and how to send them again."""
    letters = read_dead_letters(directory)
    if not letters:
        click.echo("no dead letters")
        return
    for letter in letters:
        created = datetime.datetime.fromtimestamp(letter.created / 1000, datetime.UTC)
        click.echo(f"{letter.id}  {letter.type}  created {created:%Y-%m-%d %H:%M:%S}Z  "
                   f"{letter.attempts} attempts  last: {letter.last_error}")
    click.echo(f"{len(letters)} dead letters; send them again with --all or --id EVT")

"""Click parameter types of the CLI, all made by one factory from the parsers of
`client.payloads` and `client.formatting`: a bad value fails naming its option."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from client.money import parse_money
from client.payloads import parse_bps, parse_id, parse_item_id, parse_signed


def parameter_type(
    name: str,
    parse: Callable[[str, str], Any],
    default_option: str,
    parsed_type: type | None = None,
    description: str = "",
) -> click.ParamType:
    """A click type that runs `parse(text, option)` and turns its ValueError into a usage error.

    `default_option` names the option when click gives none (e.g. a prompt); a value that is
    already a `parsed_type` (a default) passes unchanged. The error message is the parser's
    `message` attribute when it has one (`PayloadError`), else its text.
    """

    class ParsedType(click.ParamType):
        __doc__ = description or f"A value parsed as {name}."

        def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
            """The parsed value, or a usage error naming the option."""
            if parsed_type is not None and isinstance(value, parsed_type):
                return value
            try:
                return parse(value, param.opts[0] if param else default_option)
            except ValueError as error:
                self.fail(getattr(error, "message", str(error)), param, ctx)

    ParsedType.name = name
    return ParsedType()


AMOUNT = parameter_type("amount", lambda text, option: parse_money(text), "amount", int,
                        "An amount with its unit: `2.5MKT` or `2500000µMKT`.")
"""An amount in µMKT, written with its unit: `2.5MKT`, `2.5 MKT`, `2500000µMKT` or `2500000umkt`;
a bare number (other than 0) is refused as ambiguous."""

BPS = parameter_type("bps", parse_bps, "bps", int, "Basis points: `500`, `500bps` or `5%`.")
"""Basis points, written `500`, `500bps` or `5%`."""

ID = parameter_type("id", parse_id, "id", bytes,
                    "A shop, listing or order id (the hash of the transaction that created it), 64 hex.")
"""A shop, listing or order id (the hash of the transaction that created it): 64 hex characters."""

SIGNED = parameter_type("signed", parse_signed, "value", int, "A signed whole number: `+5`, `-3`.")
"""A signed whole number: `+5`, `-3`."""

ITEM_ID = parameter_type("item", parse_item_id, "--item-id", None,
                         "A unique item's id: 1..64 of [A-Za-z0-9._:-].")
"""A unique item's id: 1..64 of `[A-Za-z0-9._:-]`."""

FILE = click.Path(dir_okay=False, exists=True, path_type=Path)
"""An existing file (a document whose SHA-256 goes on chain)."""

"""Human-friendly amounts and tables for the CLI."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

MICRO_PER_MKT = 1_000_000
"""µMKT in one MKT (R6)."""

_AMOUNT = re.compile(r"\s*([0-9][0-9_]*(?:\.[0-9]+)?)\s*(mkt|umkt|µmkt)?\s*", re.IGNORECASE)


def parse_amount(text: str) -> int:
    """µMKT from `1500`, `1500umkt`, `1.5MKT` or `2 mkt`; a bare number is µMKT.

    Raises ValueError for anything else, including fractions of a µMKT.
    """
    match = _AMOUNT.fullmatch(text)
    if not match:
        raise ValueError(f"{text!r} is not an amount: write e.g. 2.5MKT or 2500000 (µMKT)")
    number, unit = match.group(1).replace("_", ""), (match.group(2) or "umkt").lower()
    try:
        value = Decimal(number)
    except InvalidOperation:
        raise ValueError(f"{text!r} is not an amount") from None
    if unit == "mkt":
        value *= MICRO_PER_MKT
    if value != value.to_integral_value():
        raise ValueError(f"{text!r} is not a whole number of µMKT")
    return int(value)


def format_amount(micro: int) -> str:
    """`1,234.5 MKT (1234500000 µMKT)`-style text."""
    whole, fraction = divmod(micro, MICRO_PER_MKT)
    text = f"{whole:,}"
    if fraction:
        text += "." + f"{fraction:06d}".rstrip("0")
    return f"{text} MKT ({micro} µMKT)"


def key_value_table(rows: list[tuple[str, Any]]) -> str:
    """Aligned `name  value` lines."""
    width = max((len(name) for name, _ in rows), default=0)
    return "\n".join(f"{name.ljust(width)}  {value}" for name, value in rows)


def column_table(headers: list[str], rows: list[list[Any]]) -> str:
    """A plain text table with a header row."""
    cells = [headers] + [[str(cell) for cell in row] for row in rows]
    widths = [max(len(row[column]) for row in cells) for column in range(len(headers))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)

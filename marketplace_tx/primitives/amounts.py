"""Amounts as people write and read them (R6: amounts are whole µMKT, 1 MKT = 1,000,000 µMKT).

Reading is explicit: `12MKT`, `12.5 MKT`, `1500µMKT` or `1500umkt`; a bare number other
than 0 is refused, showing both readings. Shared by the CLI's client commands
(`client.money`) and the node's own (`node.commands`); pure text, no I/O.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

MICRO_PER_MKT = 1_000_000
"""µMKT in one MKT (R6)."""

_MONEY = re.compile(r"\s*([0-9][0-9_]*(?:\.[0-9]+)?)\s*(mkt|umkt|µmkt|μmkt)?\s*", re.IGNORECASE)


class AmbiguousAmount(ValueError):
    """A bare number given where money is expected: it could be MKT or µMKT."""


def mkt_text(micro: Decimal) -> str:
    """`0.000012` from 12 µMKT, `12` from 12,000,000: MKT without grouping or unit."""
    value = micro / MICRO_PER_MKT
    return f"{value.normalize():f}" if value != value.to_integral_value() else f"{int(value)}"


def parse_money(text: str) -> int:
    """µMKT from `12MKT`, `12.5 MKT`, `1500µMKT`, `1500umkt` (or `0`) (R6).

    Raises `AmbiguousAmount` for another bare number ("12 is ambiguous: write 12MKT (12 MKT)
    or 12µMKT (0.000012 MKT)"), ValueError for anything else, including a fraction of a µMKT.
    """
    match = _MONEY.fullmatch(str(text))
    if not match:
        raise ValueError(f"{text!r} is not an amount: write e.g. 2.5MKT or 2500000µMKT")
    number, unit = match.group(1).replace("_", ""), (match.group(2) or "").lower()
    try:
        value = Decimal(number)
    except InvalidOperation:
        raise ValueError(f"{text!r} is not an amount") from None
    if not unit and value != 0:
        if value != value.to_integral_value():
            raise AmbiguousAmount(f"{number} has no unit: write {number}MKT ({number} MKT)")
        raise AmbiguousAmount(f"{number} is ambiguous: write {number}MKT ({number} MKT) "
                              f"or {number}µMKT ({mkt_text(value)} MKT)")
    if unit == "mkt":
        value *= MICRO_PER_MKT
    if value != value.to_integral_value():
        raise ValueError(f"{text!r} is not a whole number of µMKT (1 MKT = 1,000,000 µMKT)")
    return int(value)


def format_amount(micro: int) -> str:
    """`1,234.5 MKT (1234500000 µMKT)`: MKT grouped by thousands, then the exact µMKT (R6)."""
    whole, fraction = divmod(micro, MICRO_PER_MKT)
    text = f"{whole:,}"
    if fraction:
        text += "." + f"{fraction:06d}".rstrip("0")
    return f"{text} MKT ({micro} µMKT)"

"""Money on the command line is always explicit (R6: amounts are whole µMKT): `12MKT`,
`12.5 MKT`, `1500µMKT` or `1500umkt`; a bare number is refused, showing both readings.
The node's messages about known money fields are re-rendered in MKT."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from client.formatting import MICRO_PER_MKT, format_amount

_MONEY = re.compile(r"\s*([0-9][0-9_]*(?:\.[0-9]+)?)\s*(mkt|umkt|µmkt|μmkt)?\s*", re.IGNORECASE)


class AmbiguousAmount(ValueError):
    """A bare number given where money is expected: it could be MKT or µMKT."""


def _mkt_text(micro: Decimal) -> str:
    """`0.000012` from 12 µMKT, `12` from 12,000,000."""
    value = micro / MICRO_PER_MKT
    return f"{value.normalize():f}" if value != value.to_integral_value() else f"{int(value)}"


def parse_money(text: str) -> int:
    """µMKT from `12MKT`, `12.5 MKT`, `1500µMKT`, `1500umkt` (or `0`).

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
                              f"or {number}µMKT ({_mkt_text(value)} MKT)")
    if unit == "mkt":
        value *= MICRO_PER_MKT
    if value != value.to_integral_value():
        raise ValueError(f"{text!r} is not a whole number of µMKT (1 MKT = 1,000,000 µMKT)")
    return int(value)


MONEY_MESSAGES = (
    re.compile(r"(balance )(\d+)( is below the )(\d+)( needed)"),
    re.compile(r"(fee: )(\d+)( is below min_fee )(\d+)()"),
    re.compile(r"(fee: balance )(\d+)( cannot pay )(\d+)( after pending fees )(\d+)()"),
    re.compile(r"(payload\.amount: the escrow holds only )(\d+)()"),
    re.compile(r"(payload\.buyer_amount: at most )(\d+)( after the arbiter fee)"),
    re.compile(r"(payload\.max_unit_price: the price is now )(\d+)()"),
)
"""The node's messages that carry µMKT figures (R6, R11, R13, R14): every even group is an amount."""


def render_money_message(message: str) -> str:
    """A node's message with its µMKT figures shown in MKT, e.g. `balance 0.499935 MKT (499935 µMKT)
    is below the 10 MKT (10000000 µMKT) needed`; other messages unchanged."""
    for pattern in MONEY_MESSAGES:
        match = pattern.search(message)
        if match:
            parts = [format_amount(int(group)) if index % 2 else group
                     for index, group in enumerate(match.groups())]
            return message[:match.start()] + "".join(parts) + message[match.end():]
    return message

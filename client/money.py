"""Money on the command line is always explicit (R6: amounts are whole µMKT): `12MKT`,
`12.5 MKT`, `1500µMKT` or `1500umkt`; a bare number is refused, showing both readings
(`parse_money`, kept in the pure core `marketplace_tx.primitives.amounts` that the node's
commands share). The node's messages about known money fields are re-rendered in MKT."""

from __future__ import annotations

import re

from marketplace_tx.primitives.amounts import AmbiguousAmount as AmbiguousAmount
from marketplace_tx.primitives.amounts import format_amount
from marketplace_tx.primitives.amounts import parse_money as parse_money

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

"""A shop's sales per UTC day for accounting, computed from orders as `GET /orders` shows them.

Pure: the figures come from order JSON (PROTOCOL §10) and a map of transaction fees; the
requests that fetch them are in client/merchant/report_source.py. Every amount is an
integer in µMKT (R6). How each column is computed, and what a report costs the node, is
docs/merchant-reports.md. The columns add up: over any range of days,

    gross − points_redeemed = escrow_released + refunds + arbiter_fees + (escrow still held
    at the end − escrow held at the start)

because an order's escrow is its total price less the points redeemed (R13), and it
leaves the escrow only to the merchant, the buyer or the arbiter (R14, R17).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

DAY_MS = 86_400_000
"""Milliseconds in a UTC day (block times are Unix milliseconds, R6)."""

MAX_REPORT_DAYS = 3_700
"""Longest report, in days (about ten years): the rows are built in memory."""

FIGURES = (
    "orders_placed",
    "orders_completed",
    "orders_refunded",
    "orders_cancelled",
    "orders_resolved",
    "gross",
    "escrow_released",
    "refunds",
    "arbiter_fees",
    "tx_fees",
    "points_issued",
    "points_redeemed",
    "points_returned",
)
"""The report's figures, in column order after `date` (docs/merchant-reports.md)."""

COLUMNS = ("date", *FIGURES)
"""The header of the report."""

CANCELLED_STATES = frozenset({"cancelled", "rejected", "expired"})
"""End states counted as `orders_cancelled`: the sale did not happen and the whole escrow went back."""

END_COUNTS = {
    "completed": "orders_completed",
    "refunded": "orders_refunded",
    "resolved": "orders_resolved",
    **dict.fromkeys(CANCELLED_STATES, "orders_cancelled"),
}
"""The count an order adds on the day it ended, by its terminal state (R16)."""

MERCHANT_EVENTS = frozenset({"order_accept", "order_reject", "order_ship", "order_deliver", "order_refund"})
"""History events (R18) only the order's merchant can cause by a transaction (§4)."""


class ReportError(Exception):
    """A report that cannot be made as asked: a bad date or range."""


@dataclass(frozen=True)
class MerchantTransaction:
    """A transaction the merchant sent on one of the shop's orders, whose fee the report counts."""

    time: int
    """Block time (ms) of the transaction."""
    tx_hash: str
    """Its hash (hex), for `GET /txs/{hash}`."""


def parse_day(text: str, option: str) -> date:
    """A UTC day from `YYYY-MM-DD`; `ReportError` naming `option` otherwise."""
    try:
        if len(text) != 10:
            raise ValueError(text)
        return date.fromisoformat(text)
    except ValueError:
        raise ReportError(f"{option}: {text!r} is not a date of the form YYYY-MM-DD (e.g. 2026-01-31)") from None


def day_start_ms(day: date) -> int:
    """Unix milliseconds of `day`'s UTC midnight."""
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)


def check_range(since: date, until: date) -> None:
    """`ReportError` unless `since` ≤ `until` and the range is at most `MAX_REPORT_DAYS` long."""
    if since > until:
        raise ReportError(f"--since {since} is after --until {until}")
    if (until - since).days + 1 > MAX_REPORT_DAYS:
        raise ReportError(f"a report covers at most {MAX_REPORT_DAYS} days; {since}..{until} is longer")


def order_figures(order: Mapping[str, Any]) -> list[tuple[int, str, int]]:
    """(time ms, figure, amount) of everything `order` adds to the report, except `tx_fees`."""
    placed_at = order["placed_at"]
    figures = [(placed_at, "orders_placed", 1), (placed_at, "gross", order["total_price"])]
    if order.get("redeem_points"):
        figures.append((placed_at, "points_redeemed", order["redeem_points"]))
    by_entry = 0
    for entry in order.get("history", ()):
        if entry.get("event") == "order_refund":
            by_entry += entry["amount"]
            figures.append((entry["time"], "refunds", entry["amount"]))
        elif entry.get("event") == "dispute_resolve" and entry.get("arbiter_fee"):
            figures.append((entry["time"], "arbiter_fees", entry["arbiter_fee"]))
    ended_at = order.get("ended_at")
    if ended_at is None or order["state"] not in END_COUNTS:
        return figures
    figures.append((ended_at, END_COUNTS[order["state"]], 1))
    paid = order.get("merchant_paid", 0)
    if paid:
        figures.append((ended_at, "escrow_released", paid))
    rest = order.get("refunded", 0) - by_entry
    if rest > 0:  # cancel, reject, expiry, a refund by deadline, a ruling's buyer share (R14, R15)
        figures.append((ended_at, "refunds", rest))
    if order["state"] == "completed":
        issued = paid * order.get("points_bps", 0) // 10000
        if issued:
            figures.append((ended_at, "points_issued", issued))
    elif paid == 0 and order.get("redeem_points"):  # R21: redeemed points come back
        figures.append((ended_at, "points_returned", order["redeem_points"]))
    return figures


def merchant_transactions(order: Mapping[str, Any]) -> list[MerchantTransaction]:
    """The merchant's transactions on `order`: its history entries only the merchant causes
    (a dispute the merchant opened included) and the reply to the buyer's review."""
    merchant = order["merchant"]
    found = []
    for entry in order.get("history", ()):
        event, tx_hash = entry.get("event"), entry.get("tx")
        if not isinstance(tx_hash, str) or tx_hash == "deadline":
            continue
        if event in MERCHANT_EVENTS or (event == "dispute_open" and entry.get("opened_by") == merchant):
            found.append(MerchantTransaction(entry["time"], tx_hash))
    reply = (order.get("review") or {}).get("reply")
    if isinstance(reply, dict) and isinstance(reply.get("tx"), str):
        found.append(MerchantTransaction(reply["time"], reply["tx"]))
    return found


@dataclass
class Report:
    """One row of figures per UTC day from `since` to `until`, and their totals."""

    since: date
    """The first day."""
    until: date
    """The last day (inclusive)."""
    rows: list[dict[str, Any]]
    """`{"date": "YYYY-MM-DD", figure: int, …}` per day, oldest first."""
    unknown_fees: int = 0
    """Merchant transactions whose fee the node could not tell (pruned or unknown): `tx_fees` lacks them."""

    def totals(self) -> dict[str, Any]:
        """The totals row: `date` is "total"."""
        return {"date": "total", **{name: sum(row[name] for row in self.rows) for name in FIGURES}}


def build_report(orders: Iterable[Mapping[str, Any]], since: date, until: date,
                 fees: Mapping[str, int | None]) -> Report:
    """The report of `orders` (one shop's) over `since`..`until`; `fees` maps the hash of each
    merchant transaction in the range (`merchant_transactions`) to its fee, None if unknown."""
    check_range(since, until)
    days = (until - since).days + 1
    first_ms = day_start_ms(since)
    rows = [{"date": (since + timedelta(days=offset)).isoformat(), **dict.fromkeys(FIGURES, 0)}
            for offset in range(days)]
    report = Report(since, until, rows)

    def add(time_ms: int, figure: str, amount: int) -> None:
        offset = (time_ms - first_ms) // DAY_MS
        if 0 <= offset < days:
            rows[offset][figure] += amount

    for order in orders:
        for time_ms, figure, amount in order_figures(order):
            add(time_ms, figure, amount)
        for transaction in merchant_transactions(order):
            if not 0 <= (transaction.time - first_ms) // DAY_MS < days:
                continue
            fee = fees.get(transaction.tx_hash)
            if fee is None:
                report.unknown_fees += 1
            else:
                add(transaction.time, "tx_fees", fee)
    return report


def render_csv(report: Report) -> str:
    """The report as CSV: a header line, one line per day, then the totals line."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in [*report.rows, report.totals()]:
        writer.writerow([row[name] for name in COLUMNS])
    return buffer.getvalue()


def render_table(report: Report) -> str:
    """The report as an aligned text table (numbers right-aligned), totals last."""
    lines = [[str(row[name]) for name in COLUMNS] for row in [*report.rows, report.totals()]]
    widths = [max(len(name), *(len(line[index]) for line in lines)) for index, name in enumerate(COLUMNS)]

    def format_line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        return "  ".join([first, *(cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True))])

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([format_line(list(COLUMNS)), rule, *map(format_line, lines[:-1]), rule, format_line(lines[-1])])

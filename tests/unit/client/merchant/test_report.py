"""`marketchain merchant report`'s figures (client/merchant/report.py) over orders as `GET /orders` shows them,
and its reading of a node (client/merchant/report_source.py) through a recorded page sequence."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from client.merchant import report_source
from client.merchant.report import (
    COLUMNS,
    DAY_MS,
    MAX_REPORT_DAYS,
    ReportError,
    build_report,
    check_range,
    day_start_ms,
    merchant_transactions,
    parse_day,
    render_csv,
    render_table,
)
from client.node_client import ClientError

MERCHANT = "aa" * 32
BUYER = "bb" * 32
DAY1 = date(2026, 3, 1)
T1 = day_start_ms(DAY1) + 3_600_000
"""10:00 … 01:00 UTC of the first day."""
T2 = T1 + DAY_MS
T3 = T2 + DAY_MS


def tx(number: int) -> str:
    return f"{number:064x}"


def order(state: str, total: int, placed_at: int = T1, ended_at: int | None = None, history: tuple = (),
          **fields: Any) -> dict[str, Any]:
    base = {"id": tx(999), "merchant": MERCHANT, "buyer": BUYER, "state": state, "total_price": total,
            "placed_at": placed_at, "ended_at": ended_at, "points_bps": 0, "redeem_points": 0, "refunded": 0,
            "merchant_paid": 0, "escrow": 0, "digital": False, "delivery": None,
            "history": [{"event": "order_place", "state": "placed", "time": placed_at, "height": 1, "tx": tx(1)},
                        *history]}
    return {**base, **fields}


def entry(event: str, state: str, time: int, tx_hash: str = "deadline", **details: Any) -> dict[str, Any]:
    return {"event": event, "state": state, "time": time, "height": 2, "tx": tx_hash, **details}


def completed_with_points() -> dict[str, Any]:
    """Placed day 1 (10 MKT, 1 MKT in points), accepted and delivered day 1 (digital), completed by deadline day 2."""
    return order("completed", 10_000_000, ended_at=T2, points_bps=500, redeem_points=1_000_000,
                 merchant_paid=9_000_000, history=(entry("order_deliver", "delivered", T1 + 1, tx(2)),
                                                   entry("deadline", "completed", T2)))


def partly_refunded_then_refunded() -> dict[str, Any]:
    """8 MKT; 3 MKT refunded day 1 (an offer), the rest (5 MKT) by deadline day 3."""
    return order("refunded", 8_000_000, ended_at=T3, refunded=8_000_000, history=(
        entry("order_accept", "accepted", T1, tx(3)), entry("order_refund", "accepted", T1 + 5, tx(4), amount=3_000_000),
        entry("deadline", "refunded", T3)))


def resolved() -> dict[str, Any]:
    """20 MKT; the arbiter takes 1 MKT, the buyer 7 MKT, the merchant 12 MKT, day 2."""
    return order("resolved", 20_000_000, ended_at=T2, refunded=7_000_000, merchant_paid=12_000_000, history=(
        entry("dispute_open", "disputed", T1 + 9, tx(5), opened_by=BUYER),
        entry("dispute_resolve", "resolved", T2, tx(6), buyer_amount=7_000_000, arbiter_fee=1_000_000,
              merchant_amount=12_000_000)))


def cancelled_with_points() -> dict[str, Any]:
    """5 MKT with 0.5 MKT in points, cancelled by the buyer day 2: escrow and points back."""
    return order("cancelled", 5_000_000, ended_at=T2, redeem_points=500_000, refunded=4_500_000,
                 history=(entry("order_cancel", "cancelled", T2, tx(7)),))


def still_open() -> dict[str, Any]:
    """3 MKT placed day 3, accepted, not ended."""
    return order("accepted", 3_000_000, placed_at=T3, escrow=3_000_000,
                 history=(entry("order_accept", "accepted", T3, tx(8)),))


ALL = (completed_with_points, partly_refunded_then_refunded, resolved, cancelled_with_points, still_open)
FEES = {tx(2): 1_000, tx(3): 1_000, tx(4): 1_000, tx(8): 2_000}


def by_day(orders: list[dict[str, Any]], fees: dict[str, int | None] | None = None) -> dict[str, dict[str, Any]]:
    result = build_report(orders, DAY1, date(2026, 3, 3), FEES if fees is None else fees)
    return {row["date"]: row for row in result.rows} | {"total": result.totals()}


def test_each_figure_lands_on_its_day() -> None:
    rows = by_day([make() for make in ALL])
    day1, day2, day3, total = rows["2026-03-01"], rows["2026-03-02"], rows["2026-03-03"], rows["total"]
    assert day1["orders_placed"] == 4 and day3["orders_placed"] == 1
    assert day1["gross"] == 10_000_000 + 8_000_000 + 20_000_000 + 5_000_000 and day3["gross"] == 3_000_000
    assert day1["points_redeemed"] == 1_500_000
    assert (day2["orders_completed"], day2["orders_resolved"], day2["orders_cancelled"]) == (1, 1, 1)
    assert day3["orders_refunded"] == 1
    assert day2["escrow_released"] == 9_000_000 + 12_000_000
    assert day1["refunds"] == 3_000_000, "the partial refund, by its history entry's day"
    assert day2["refunds"] == 7_000_000 + 4_500_000, "the ruling's buyer share and the cancelled escrow"
    assert day3["refunds"] == 5_000_000, "the rest of the escrow, refunded by deadline"
    assert day2["arbiter_fees"] == 1_000_000
    assert day2["points_issued"] == 9_000_000 * 500 // 10000
    assert day2["points_returned"] == 500_000, "cancelled: the merchant got nothing, points come back (R21)"
    assert (day1["tx_fees"], day2["tx_fees"], day3["tx_fees"]) == (3_000, 0, 2_000)
    assert total["orders_placed"] == 5 and total["tx_fees"] == 5_000


def test_money_adds_up_gross_less_points_is_what_left_escrow_plus_what_is_held() -> None:
    orders = [make() for make in ALL]
    total = by_day(orders)["total"]
    held = sum(item["escrow"] for item in orders)
    assert total["gross"] - total["points_redeemed"] == (
        total["escrow_released"] + total["refunds"] + total["arbiter_fees"] + held)


def test_days_outside_the_range_are_left_out_and_unknown_fees_counted() -> None:
    result = build_report([make() for make in ALL], date(2026, 3, 2), date(2026, 3, 2), {})
    (row,) = result.rows
    assert row["orders_placed"] == 0 and row["orders_completed"] == 1 and row["refunds"] == 11_500_000
    assert result.unknown_fees == 0, "no merchant transaction on 2 March"
    result = build_report([still_open()], DAY1, date(2026, 3, 3), {tx(8): None})
    assert result.unknown_fees == 1 and result.totals()["tx_fees"] == 0


def test_merchant_transactions_are_the_merchants_only() -> None:
    disputed_by_merchant = order("disputed", 1, history=(
        entry("order_ship", "shipped", T1, tx(10)), entry("return_request", "return_requested", T1, tx(11)),
        entry("dispute_open", "disputed", T1, tx(12), opened_by=MERCHANT), entry("deadline", "expired", T2)),
        review={"rating": 5, "time": T2, "height": 3, "reply": {"text": "thanks", "time": T3, "height": 4, "tx": tx(13)}})
    assert [item.tx_hash for item in merchant_transactions(disputed_by_merchant)] == [tx(10), tx(12), tx(13)]
    assert [item.tx_hash for item in merchant_transactions(resolved())] == [], "the buyer's dispute, the arbiter's ruling"


def test_csv_has_a_header_a_line_per_day_and_totals() -> None:
    lines = render_csv(build_report([completed_with_points()], DAY1, date(2026, 3, 2), FEES)).splitlines()
    assert lines[0] == ",".join(COLUMNS)
    assert [line.split(",")[0] for line in lines[1:]] == ["2026-03-01", "2026-03-02", "total"]
    total = dict(zip(COLUMNS, lines[-1].split(","), strict=True))
    assert total["gross"] == "10000000" and total["escrow_released"] == "9000000" and total["tx_fees"] == "1000"


def test_table_is_aligned() -> None:
    text = render_table(build_report([completed_with_points()], DAY1, date(2026, 3, 2), FEES))
    lines = text.splitlines()
    assert lines[0].split() == list(COLUMNS) and lines[-1].startswith("total")
    assert len({len(line) for line in lines}) == 1, text


@pytest.mark.parametrize("text", ["2026-3-1", "2026-02-30", "yesterday", "", "2026-03-01T00:00"])
def test_bad_dates_are_clear_errors(text: str) -> None:
    with pytest.raises(ReportError, match="--since: .* is not a date of the form YYYY-MM-DD"):
        parse_day(text, "--since")


def test_range_is_ordered_and_bounded() -> None:
    with pytest.raises(ReportError, match="is after"):
        check_range(date(2026, 3, 2), DAY1)
    with pytest.raises(ReportError, match=f"at most {MAX_REPORT_DAYS} days"):
        check_range(date(2000, 1, 1), date(2026, 1, 1))
    check_range(DAY1, DAY1)


class RecordedNode:
    """A stand-in for `NodeClient`: pages of `/orders?shop=` and `/txs/{hash}` answers, every request recorded."""

    def __init__(self, orders: list[dict[str, Any]], page: int, busy: int = 0) -> None:
        self.orders, self.page, self.busy, self.requests = orders, page, busy, []
        self.base_url = "http://127.0.0.1:9"

    def get(self, path: str) -> Any:
        self.requests.append(path)
        if self.busy:
            self.busy -= 1
            raise ClientError("rate_limited", "slow down", 429)
        if path.startswith("/shops/"):
            return {"id": path[7:]}
        start = int(path.split("cursor=")[1]) if "cursor=" in path else 0
        chunk = self.orders[start:start + self.page]
        return {"orders": chunk, "next": str(start + self.page) if start + self.page < len(self.orders) else None}

    def status(self) -> dict[str, Any]:
        return {"params": {"accept_window_ms": DAY_MS, "confirm_window_ms": DAY_MS}}

    def tx(self, tx_hash: str) -> dict[str, Any]:
        self.requests.append(f"/txs/{tx_hash}")
        if tx_hash == tx(4):
            raise ClientError("not_found", f"no transaction {tx_hash}", 404)
        return {"sender": MERCHANT, "fee": FEES[tx_hash]}


def test_source_pages_by_next_stops_at_old_orders_and_looks_up_fees_in_range(monkeypatch: pytest.MonkeyPatch) -> None:
    ancient = order("completed", 1, placed_at=T1 - 30 * DAY_MS, ended_at=T1 - 29 * DAY_MS, merchant_paid=1)
    newest_first = [still_open(), completed_with_points(), partly_refunded_then_refunded(), ancient, ancient]
    node = RecordedNode(newest_first, page=2)
    monkeypatch.setattr(report_source, "PAGE_SIZE", 2)
    result = report_source.fetch_report(node, "cc" * 32, date(2026, 3, 3), date(2026, 3, 3))  # type: ignore[arg-type]
    order_pages = [path for path in node.requests if path.startswith("/orders")]
    assert len(order_pages) == 2, "the second page holds an order placed before since − the R15 windows: stop"
    assert [path for path in node.requests if path.startswith("/txs")] == [f"/txs/{tx(8)}"], "only 3 March's"
    assert result.totals()["tx_fees"] == 2_000 and result.totals()["refunds"] == 5_000_000


def test_source_counts_a_pruned_fee_as_unknown() -> None:
    node = RecordedNode([partly_refunded_then_refunded()], page=100)
    result = report_source.fetch_report(node, "cc" * 32, DAY1, DAY1)  # type: ignore[arg-type]
    assert result.unknown_fees == 1 and result.totals()["tx_fees"] == 1_000


def test_rate_limited_requests_are_waited_on_then_given_up() -> None:
    pauses: list[float] = []
    node = RecordedNode([], page=1, busy=3)
    assert report_source.patiently(lambda: node.get("/shops/x"), pauses.append) == {"id": "x"}
    assert pauses == [report_source.RATE_LIMIT_WAIT_SECONDS] * 3
    node.busy = report_source.RATE_LIMIT_WAITS + 1
    with pytest.raises(ClientError, match="rate_limited"):
        report_source.patiently(lambda: node.get("/shops/x"), pauses.append)


class EndlessNode(RecordedNode):
    """A hostile node whose order list never ends: every page is full and names a new cursor."""

    def get(self, path: str) -> Any:
        if path.startswith("/shops/"):
            return {"id": path[7:]}
        start = int(path.split("cursor=")[1]) if "cursor=" in path else 0
        self.requests.append(path)
        fresh = [order("placed", 1, placed_at=T3) for _ in range(self.page)]
        return {"orders": fresh, "next": str(start + self.page) if self.busy == 0 else "0"}


def test_a_node_that_pages_for_ever_ends_the_report_with_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(report_source, "MAX_REPORT_ORDERS", 50)
    node = EndlessNode([], page=10)
    with pytest.raises(ReportError, match="more than 50 orders"):
        report_source.fetch_report(node, "cc" * 32, DAY1, date(2026, 3, 3))  # type: ignore[arg-type]
    assert len(node.requests) <= 6
    circling = EndlessNode([], page=10, busy=1)  # "next" is always "0"
    with pytest.raises(ReportError, match="twice"):
        report_source.fetch_report(circling, "cc" * 32, DAY1, date(2026, 3, 3))  # type: ignore[arg-type]


@pytest.mark.parametrize("page", [
    {"orders": 7, "next": None},
    {"orders": [{"placed_at": "yesterday"}], "next": None},
    {"orders": [{**completed_with_points(), "total_price": "lots"}], "next": None},
    b"<html>not json</html>",
])
def test_answers_the_report_cannot_read_are_a_clear_error(page: Any) -> None:
    node = RecordedNode([], page=1)
    node.get = lambda path: {"id": "x"} if path.startswith("/shops/") else page  # type: ignore[method-assign]
    with pytest.raises(ReportError, match="answered orders the report cannot read"):
        report_source.fetch_report(node, "cc" * 32, DAY1, date(2026, 3, 3))  # type: ignore[arg-type]

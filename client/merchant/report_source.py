"""What `marketchain merchant report` reads from a node: the shop, its orders, the merchant's fees.

Only the node's public HTTP API (PROTOCOL §10): `GET /status` (the R15 windows),
`GET /shops/{id}`, `GET /orders?shop=ID&limit=100` paged by `next` (each order carries its
history, R18), and one `GET /txs/{hash}` per merchant transaction dated in the report's
range (its fee). A node that answers 429 `rate_limited` is waited on and asked again
(`RATE_LIMIT_WAITS` times at most), so a long report stays within the node's per-client
budget instead of failing half way.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import date
from typing import Any, TypeVar

from client.merchant.report import (
    DAY_MS,
    Report,
    ReportError,
    build_report,
    day_start_ms,
    merchant_transactions,
)
from client.node_client import ClientError, NodeClient
from marketplace_tx.rules.order_records import DEADLINE_FIELDS

PAGE_SIZE = 100
"""Orders per `GET /orders` page (the API's largest page)."""

MAX_REPORT_ORDERS = 1_000_000
"""Most orders one report reads (10,000 pages): a node that pages on and on (a hostile one
cannot make the report run or grow for ever) ends it with a `ReportError`."""

RATE_LIMIT_WAITS = 60
"""How many times one request is retried after a 429 `rate_limited` answer before the report fails."""

RATE_LIMIT_WAIT_SECONDS = 1.0
"""How long to wait before asking again after a 429 (the node's `Retry-After` is 1 s)."""

Result = TypeVar("Result")


def patiently(call: Callable[[], Result], sleep: Callable[[float], None] = time.sleep) -> Result:
    """`call()`, retried after a pause while the node answers 429 `rate_limited`."""
    for _ in range(RATE_LIMIT_WAITS):
        try:
            return call()
        except ClientError as error:
            if error.status != 429:
                raise
        sleep(RATE_LIMIT_WAIT_SECONDS)
    return call()


def longest_order_ms(client: NodeClient) -> int:
    """The sum of the chain's R15 windows (from `GET /status` params, one per state in
    `DEADLINE_FIELDS`): no order changes later than this after it was placed."""
    params = patiently(client.status).get("params") or {}
    return sum(int(params.get(window, 0)) for _, window in DEADLINE_FIELDS.values())


def shop_orders(client: NodeClient, shop_id: str, placed_since_ms: int | None = None) -> Iterator[dict[str, Any]]:
    """The shop's orders, newest first, page by page; stops at the first order placed before
    `placed_since_ms` (the list is ordered by placement, so every later one is older)."""
    cursor: str | None = None
    seen_cursors: set[str] = set()
    read = 0
    while True:
        path = f"/orders?shop={shop_id}&limit={PAGE_SIZE}" + (f"&cursor={cursor}" if cursor else "")
        page = patiently(lambda path=path: client.get(path))
        for order in page["orders"]:
            read += 1
            if read > MAX_REPORT_ORDERS:
                raise ReportError(f"the node listed more than {MAX_REPORT_ORDERS} orders for this range: "
                                  "report a shorter one (--since, --until)")
            if placed_since_ms is not None and order["placed_at"] < placed_since_ms:
                return
            yield order
        cursor = page.get("next")
        if not cursor:
            return
        if cursor in seen_cursors:
            raise ReportError(f"the node gave the cursor {cursor[:16]}… twice: its order list goes round in circles")
        seen_cursors.add(cursor)


def transaction_fee(client: NodeClient, tx_hash: str, sender: str) -> int | None:
    """The fee of `tx_hash` if the node knows it and `sender` sent it; None otherwise (pruned)."""
    try:
        view = patiently(lambda: client.tx(tx_hash))
    except ClientError as error:
        if error.code in ("not_found", "pruned"):
            return None
        raise
    if view.get("sender") != sender or not isinstance(view.get("fee"), int):
        return None
    return view["fee"]


def fetch_report(client: NodeClient, shop_id: str, since: date, until: date) -> Report:
    """The shop's report over `since`..`until` from the node; `ClientError` as the node answers
    (`not_found` for an unknown shop), `ReportError` if its answers make no sense or never end."""
    patiently(lambda: client.get(f"/shops/{shop_id}"))
    first_ms = day_start_ms(since)
    end_ms = day_start_ms(until) + DAY_MS
    fees: dict[str, int | None] = {}

    def with_fees() -> Iterator[dict[str, Any]]:
        # One order at a time (a shop's orders are not all held in memory): its merchant
        # transactions in the range have their fees looked up before `build_report` reads it.
        for order in shop_orders(client, shop_id, first_ms - longest_order_ms(client)):
            for transaction in merchant_transactions(order):
                if first_ms <= transaction.time < end_ms and transaction.tx_hash not in fees:
                    fees[transaction.tx_hash] = transaction_fee(client, transaction.tx_hash, order["merchant"])
            yield order

    try:
        return build_report(with_fees(), since, until, fees)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise ReportError(f"the node at {client.base_url} answered orders the report cannot read "
                          f"({type(error).__name__}: {error})") from None

"""What each piece of API work costs a client, in request units (docs/api.md "Rate limits").

A client address's bucket (`[http] rate_per_ip` units per second, bursts of
`burst_per_ip`, node/http/limits.py) pays for the work its requests cause, not for the
requests alone, and pays BEFORE the work is done:

| work | cost | charged |
| --- | --- | --- |
| any request | `REQUEST_COST` = 1 | by the limits middleware, before the handler |
| each transaction of `POST /txs`, `/txs/batch` (decode, signature check, admission) | `TRANSACTION_COST` = 0.01 | from the count, after the body parses, before any check |
| each row a list may return (`limit`) | `ROW_COST` = 0.1 | before the list is read |
| each transaction id hashed for a block view or proof (`/blocks`, `/blocks/{height}`, `/blocks/latest`, `/txs/{hash}/proof`) | `TX_ID_COST` = 0.001 | once the block is read, before its transactions are hashed |
| each `BODY_BYTES_PER_UNIT` (256 KiB) of request body | 1 | from `Content-Length`, before the body is read |

At the defaults (200 units per second, bursts of 1,000) one address may make 200 plain
requests per second, or submit 20,000 transactions per second (more than the node can
make final, so a load generator is never refused), in batches of at most 100,000
signature checks at once (before: 1,000 requests × 10,000 = 10,000,000); or read 2,000
list rows per second. Heavy reads are also bounded per request, whatever the budget:
a page of `GET /blocks` embeds at most `MAX_LIST_TX_IDS` transaction ids (the page
ends early, `next` continues), and the listing counts of a shop view look at no more
than the index scan budget (node/indexer.py `SCAN_BUDGET`).
"""

from __future__ import annotations

REQUEST_COST = 1.0
"""Units every request costs: parsing, routing, answering."""
TRANSACTION_COST = 0.01
"""Units per transaction submitted: its decode, signature check (R4) and admission (R10)."""
ROW_COST = 0.1
"""Units per row a list request may return (its `limit`), charged before the list is read."""
TX_ID_COST = 0.001
"""Units per transaction id hashed for a block view or an inclusion proof (a full block: 10)."""
BODY_BYTES_PER_UNIT = 256 * 1024
"""Request body bytes that cost one unit (read, then parsed)."""
MAX_LIST_TX_IDS = 10_000
"""Most transaction ids one page of `GET /blocks` embeds: the page ends before the block that
would pass it (a page always holds at least one block, whose ids `max_block_txs` bounds)."""


def body_cost(size: int) -> float:
    """Units for a request body of `size` bytes."""
    return size / BODY_BYTES_PER_UNIT


def transactions_cost(count: int) -> float:
    """Units for submitting `count` transactions."""
    return count * TRANSACTION_COST


def tx_ids_cost(count: int) -> float:
    """Units for hashing `count` transactions of stored blocks."""
    return count * TX_ID_COST


def rows_cost(limit: int) -> float:
    """Units for a list page of at most `limit` rows."""
    return limit * ROW_COST

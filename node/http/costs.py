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
| a state proof (`/state/proof`, `/accounts/{a}/proof`, …: one path of the tree) | `STATE_PROOF_COST` = 1 | before it is built |
| each height an old-height proof reaches back (one block's undo record read) | `STATE_HEIGHT_COST` = 0.05 | from `?height=` and the head, before the undo records are read |
| each key those blocks changed (its path of the tree re-hashed to rebuild the old version) | `STATE_KEY_COST` = 0.05 | once the undo records are counted, before the tree is rebuilt |
| each `SNAPSHOT_BYTES_PER_UNIT` (64 KiB) of a snapshot manifest or chunk (`/snapshots/{H}/manifest`, `/snapshots/{H}/chunks/{i}`, R39) | 1 | from the file's index, before it is read |

At the defaults (200 units per second, bursts of 1,000) one address may make 200 plain
requests per second, or submit 20,000 transactions per second (more than the node can
make final, so a load generator is never refused), in batches of at most 100,000
signature checks at once (before: 1,000 requests × 10,000 = 10,000,000); or read 2,000
list rows per second. Heavy reads are also bounded per request, whatever the budget:
a page of `GET /blocks` embeds at most `MAX_LIST_TX_IDS` transaction ids (the page
ends early, `next` continues), a state proof reaches back at most `[storage] keep_state`
heights (an older one is 410 `pruned`, charged as a proof at the head), and the listing
counts of a shop view look at no more than the index scan budget (node/indexer.py
`SCAN_BUDGET`).
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
STATE_PROOF_COST = 1.0
"""Units per state proof (R38): one path of the tree read and hashed (its siblings, at most a
few dozen LevelDB reads)."""
STATE_HEIGHT_COST = 0.05
"""Units per height an old-height proof reaches back: the undo record of each block since is
read and decoded (node/state_history.py)."""
STATE_KEY_COST = 0.05
"""Units per key changed since an old-height proof's height: the old version is rebuilt by
re-hashing each such key's path: ~100 µs of CPU and ~900 bytes of memory per key
(bench/state_tree.py, docs/performance.md), five times a transaction's admission charge."""
SNAPSHOT_BYTES_PER_UNIT = 64 * 1024
"""Bytes of a snapshot manifest or chunk served over HTTP that cost one unit (read from disk
and sent): a 1 MiB chunk costs 16, so one address gets at most ~12 MiB/s at the defaults."""
MAX_LIST_TX_IDS = 10_000
"""Most transaction ids one page of `GET /blocks` embeds: the page ends before the block that
would pass it (a page always holds at least one block, whose ids `max_block_txs` bounds)."""


def body_cost(size: int) -> float:
    """Units for a request body of `size` bytes."""
    return size / BODY_BYTES_PER_UNIT


def snapshot_bytes_cost(size: int) -> float:
    """Units for serving `size` bytes of a snapshot manifest or chunk."""
    return size / SNAPSHOT_BYTES_PER_UNIT


def transactions_cost(count: int) -> float:
    """Units for submitting `count` transactions."""
    return count * TRANSACTION_COST


def tx_ids_cost(count: int) -> float:
    """Units for hashing `count` transactions of stored blocks."""
    return count * TX_ID_COST


def rows_cost(limit: int) -> float:
    """Units for a list page of at most `limit` rows."""
    return limit * ROW_COST


def state_proof_cost(heights_back: int) -> float:
    """Units for a state proof at `heights_back` heights below the head (0: the latest), its
    changed keys aside (`changed_keys_cost`)."""
    return STATE_PROOF_COST + max(heights_back, 0) * STATE_HEIGHT_COST


def changed_keys_cost(count: int) -> float:
    """Units for rebuilding an old version of the tree over `count` changed keys."""
    return count * STATE_KEY_COST

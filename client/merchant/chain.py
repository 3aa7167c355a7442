"""The merchant agent's transactions: signed locally, sent with a fresh nonce, waited for.

The agent is in practice the only signer of its key, but it does not count on it: the nonce
is read from the node (`pending_nonce`) under the key's lock (client/nonces.py) right before
signing, a `bad_nonce` refusal is re-read and retried, and `duplicate` means the very same
transaction is already known: it counts as sent (R7, R10).
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

from client.node_client import ClientError, NodeClient
from client.nonces import NONCE_RETRIES, key_lock
from client.transactions import build_transaction
from marketplace_tx.chain.transaction import Transaction
from marketplace_tx.primitives.crypto import KeyPair

PAGE_SIZE = 100
"""Orders read per request when the agent lists the merchant's orders."""

FINALITY_TIMEOUT_S = 120.0
"""How long the agent waits for one of its transactions to become final before it gives up
on this attempt (the order stays open and is looked at again on the next reconcile)."""


def submit(client: NodeClient, key: KeyPair, tx_type: str, payload: dict[str, Any], lock: Path | None) -> Transaction:
    """Sign `payload` with the next nonce and submit it; the transaction the node holds.
    Raises `ClientError` for any other refusal (or after client.nonces' `NONCE_RETRIES` bad nonces)."""
    for attempt in range(NONCE_RETRIES + 1):
        try:
            if lock is None:
                return _sign_and_submit(client, key, tx_type, payload)
            with key_lock(lock):
                return _sign_and_submit(client, key, tx_type, payload)
        except ClientError as error:
            if error.code != "bad_nonce" or attempt == NONCE_RETRIES:
                raise
        time.sleep(random.uniform(0.05, 0.2) * (attempt + 1))
    raise AssertionError("unreachable")


def _sign_and_submit(client: NodeClient, key: KeyPair, tx_type: str, payload: dict[str, Any]) -> Transaction:
    tx = build_transaction(client, key, tx_type, payload)
    try:
        client.submit(tx.raw)
    except ClientError as error:
        if error.code != "duplicate":
            raise
    return tx


def wait_final(client: NodeClient, tx: Transaction) -> dict[str, Any]:
    """The receipt view of `tx` once final (sent again if the node lost it, e.g. in a restart)."""
    return client.wait_for_tx(tx.hash.hex(), FINALITY_TIMEOUT_S, resend=tx.raw)


def tx_status(client: NodeClient, tx_hash: str) -> dict[str, Any] | None:
    """`GET /txs/{hash}`, or None if the node does not know it."""
    try:
        return client.tx(tx_hash)
    except ClientError as error:
        if error.code == "not_found":
            return None
        raise

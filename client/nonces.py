"""One key, many terminals: nonces are allocated per key under a file lock beside the key
(`KEYFILE.lock`, fcntl), and a transaction whose nonce the client chose recovers by itself
from `bad_nonce` and `duplicate` (R7, R10): re-read the next nonce, re-sign, re-send.

    with key_lock(lock_path_of("accounts/carol.json")):
        ...  # read the pending nonce, sign, submit: no other process of this key is in here

`submit_with_fresh_nonce` does exactly that, a bounded number of times. A nonce given by
the caller is never changed: its refusal is returned as it is.
"""

from __future__ import annotations

import fcntl
import os
import random
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from client.keystore import Keystore, KeystoreError
from client.node_client import ClientError, NodeClient
from client.transactions import build_transaction
from marketplace_tx.chain.transaction import Transaction
from marketplace_tx.primitives.crypto import KeyPair

LOCK_SUFFIX = ".lock"
"""The lock file of `KEYFILE` is `KEYFILE.lock`, beside it."""

NONCE_RETRIES = 8
"""How many times a refused transaction is re-signed with a fresh nonce before giving up."""

RECOVERABLE_CODES = frozenset({"bad_nonce", "duplicate"})
"""Refusals that mean another transaction of this key took the nonce (R7, R10)."""


def lock_path_of(key_reference: str | Path, address: bytes | None = None) -> Path:
    """Where the nonce lock of a key lives: beside its key file (`alice.json.lock`); for a key
    known only by `address`, or a key directory that cannot be written, in the temporary directory."""
    path = Path(key_reference)
    if not path.is_file():
        try:
            path = Keystore().path_of(str(key_reference))
        except KeystoreError:
            path = Path(tempfile.gettempdir()) / f"marketchain-{(address or b'').hex() or 'key'}"
    lock = path.with_name(path.name + LOCK_SUFFIX)
    if os.access(lock.parent, os.W_OK):
        return lock
    return Path(tempfile.gettempdir()) / f"marketchain-{(address or b'').hex() or path.name}{LOCK_SUFFIX}"


@contextmanager
def key_lock(path: Path) -> Iterator[None]:
    """Hold the exclusive lock of one key (blocking): one process at a time allocates its nonces."""
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(descriptor, fcntl.LOCK_UN)
    finally:
        os.close(descriptor)


def submit_with_fresh_nonce(client: NodeClient, key: KeyPair, tx_type: str, payload: dict[str, Any],
                            nonce: int | None, fee: int | None, lock: Path | None,
                            retries: int = NONCE_RETRIES) -> Transaction:
    """Sign and submit under the key's lock; return the transaction the node admitted.

    With `nonce` None the next nonce is read from the node inside the lock, and a `bad_nonce`
    or `duplicate` refusal (another sender of this key, e.g. through another node, took it)
    is retried with a fresh nonce up to `retries` times. A given `nonce` is tried once.
    Raises `ClientError` with the node's refusal otherwise.
    """
    attempt = 0
    while True:
        try:
            if lock is None:
                return _sign_and_submit(client, key, tx_type, payload, nonce, fee)
            with key_lock(lock):
                return _sign_and_submit(client, key, tx_type, payload, nonce, fee)
        except ClientError as error:
            if nonce is not None or error.code not in RECOVERABLE_CODES or attempt >= retries:
                raise
        attempt += 1
        time.sleep(random.uniform(0.05, 0.2) * attempt)


def _sign_and_submit(client: NodeClient, key: KeyPair, tx_type: str, payload: dict[str, Any],
                     nonce: int | None, fee: int | None) -> Transaction:
    tx = build_transaction(client, key, tx_type, payload, nonce, fee)
    client.submit(tx.raw)
    return tx

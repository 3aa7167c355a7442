"""Build, sign, send and wait for a transaction of any type: the send path of the SDK
(`from client import ...`) and of `marketchain tx`.

Signing is local (R4, R8): the key never leaves the process; the node only sees the
signed canonical bytes. The payload's schema is checked before signing (R10), so a bad
field fails here, naming it, rather than at the node.

    client = NodeClient("http://127.0.0.1:26657")
    key = load_key("accounts/alice.json")
    receipt = send_and_wait(client, key, "transfer", {"to": bob, "amount": 2_500_000})
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from client.keystore import Keystore, load_key_file, read_key_info
from client.node_client import NodeClient
from marketplace_tx.chain.transaction import Transaction, sign_transaction
from marketplace_tx.primitives.crypto import KeyPair
from marketplace_tx.primitives.errors import RuleError
from marketplace_tx.rules.schema import check_payload

DEFAULT_WAIT_SECONDS = 60.0
"""How long `send_and_wait` waits for finality before raising `ClientError("timeout")`."""


class TransactionFailed(Exception):
    """A transaction that became final but whose rule failed (R11): the fee is paid, nothing else changed."""

    def __init__(self, receipt: dict[str, Any]) -> None:
        result = receipt["result"]
        super().__init__(f"{receipt['type']} {receipt['hash']} failed: {result['code']}: {result.get('message', '')}")
        self.receipt = receipt
        """The node's view of the transaction (`GET /txs/{hash}`), with `result`."""
        self.code: str = result["code"]
        """The rule's error code (R12), e.g. `insufficient_funds`."""


def load_key(reference: str | Path, passphrase: str | None = None) -> KeyPair:
    """The signing key in a key file (`accounts/alice.json`) or the keystore (`alice`).

    An encrypted key needs its `passphrase`; a plain dev key ignores it. Raises
    `KeystoreError` when there is no such key or the passphrase is wrong.
    """
    path = Path(reference)
    if path.is_file():
        return load_key_file(path, passphrase if read_key_info(path).encrypted else None)
    return Keystore().load(str(reference), passphrase)


def build_transaction(client: NodeClient, key: KeyPair, tx_type: str, payload: dict[str, Any],
                      nonce: int | None = None, fee: int | None = None) -> Transaction:
    """Check the payload's schema (R10: `RuleError`, `invalid_field: payload.FIELD: …`) and
    sign it for the node's chain.

    `nonce` defaults to the sender's next one, counting its pending transactions; `fee`
    to the chain's `min_fee`. The transaction's hash (`.hash.hex()`) is also the id of
    the shop, listing or order it creates (R9).
    """
    check_payload(tx_type, payload)
    status = client.status()
    if nonce is None:
        nonce = client.account(key.address)["pending_nonce"]
    return sign_transaction(key, status["chain_id"], tx_type, payload, nonce,
                            fee if fee is not None else status["min_fee"])


def send(client: NodeClient, key: KeyPair, tx_type: str, payload: dict[str, Any],
         nonce: int | None = None, fee: int | None = None) -> str:
    """Build, sign and submit a transaction; return its hash (hex) once the node admitted it.

    Raises `ClientError` with the node's code (e.g. `bad_nonce`, `fee_too_low`) if refused.
    """
    return client.submit(build_transaction(client, key, tx_type, payload, nonce, fee).raw)


def send_and_wait(client: NodeClient, key: KeyPair, tx_type: str, payload: dict[str, Any],
                  nonce: int | None = None, fee: int | None = None, timeout: float = DEFAULT_WAIT_SECONDS,
                  check: bool = True) -> dict[str, Any]:
    """Send a transaction and wait until it is final (sending it again if the node loses it, e.g.
    in a restart); return its receipt view.

    The receipt is the node's `GET /txs/{hash}` view: `hash`, `height`, `result`
    (`ok`, `code`, `message`, `events`), and so on. With `check`, a failed rule raises
    `TransactionFailed`; without, the receipt is returned as it is.
    """
    tx = build_transaction(client, key, tx_type, payload, nonce, fee)
    client.submit(tx.raw)
    receipt = client.wait_for_tx(tx.hash.hex(), timeout, resend=tx.raw)
    if check and not receipt["result"]["ok"]:
        raise TransactionFailed(receipt)
    return receipt


__all__ = [
    "DEFAULT_WAIT_SECONDS", "RuleError", "TransactionFailed", "build_transaction", "load_key", "send",
    "send_and_wait",
]

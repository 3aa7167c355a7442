"""A test client that signs transactions with each sender's next nonce, submits them to a
real node and waits until they are final (PROTOCOL §10, R9–R11)."""

from __future__ import annotations

from typing import Any

import nacl.public

from marketplace_tx.chain.transaction import Transaction, sign_transaction
from marketplace_tx.primitives.crypto import KeyPair, x25519_public_key
from tests.e2e.node_process import NodeProcess

FEE = 10
"""The fee of every transaction the client signs (the genesis minimum)."""


def sealed_address(merchant: KeyPair, address: bytes = b"address") -> bytes:
    """The buyer's address sealed to the merchant's X25519 key (R13)."""
    return nacl.public.SealedBox(
        nacl.public.PublicKey(x25519_public_key(merchant.address))
    ).encrypt(address)


class SigningClient:
    """Signs with each sender's next nonce, submits, and waits until final."""

    def __init__(self, node: NodeProcess) -> None:
        self.node = node
        """The node transactions go to."""
        self.chain_id = node.status()["chain_id"]
        """The chain id every transaction carries (R2)."""
        self.nonces: dict[bytes, int] = {}
        """The next nonce of each sender this client has signed for."""

    def tx(self, sender: KeyPair, tx_type: str, **payload: Any) -> Transaction:
        """A signed transaction with the sender's next nonce."""
        nonce = self.nonces.get(sender.address, 0)
        self.nonces[sender.address] = nonce + 1
        return sign_transaction(sender, self.chain_id, tx_type, payload, nonce, FEE)

    def commit(self, *txs: Transaction) -> list[dict[str, Any]]:
        """Submit and wait until every transaction is final; their committed views."""
        for tx in txs:
            assert self.node.submit(tx.raw) == tx.hash.hex()
        return [self.node.wait_for_tx(tx.hash.hex()) for tx in txs]

    def ok(self, *txs: Transaction) -> list[dict[str, Any]]:
        """`commit`, and assert that every transaction passed its rules."""
        views = self.commit(*txs)
        for view in views:
            assert view["result"]["ok"], view
        return views

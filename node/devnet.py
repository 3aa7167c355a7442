"""`marketchain devnet`: a local testnet seeded with demo data through real transactions."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from marketplace_tx.crypto import KeyPair
from marketplace_tx.transaction import sign_transaction
from node.client import NodeClient
from node.keystore import load_key_file

DEMO_ROLES = (("alice", "merchant"), ("bob", "carrier"), ("carol", "arbiter"), ("dave", "producer"))
"""Roles the faucet (a registrar) grants in the demo, each with a KYC evidence hash."""

DEMO_TRANSFERS = (
    ("faucet", "alice", 5_000_000_000, "opening float for the tea shop"),
    ("faucet", "erin", 250_000_000, "welcome bonus"),
    ("alice", "bob", 12_500_000, "courier deposit"),
    ("erin", "carol", 1_000_000, "arbitration retainer"),
    ("bob", "dave", 3_300_000, "茶叶 sample payment"),
)
"""(from, to, µMKT, memo) transfers the demo sends."""


def seed_demo_data(url: str, accounts_directory: Path, say: Callable[[str], None]) -> list[str]:
    """Send the demo transactions to the node at `url`, wait until each is final; return hashes."""
    client = NodeClient(url)
    status = client.status()
    keys = {
        path.stem: load_key_file(path, None) for path in sorted(accounts_directory.glob("*.json"))
    }
    nonces = {name: client.account(key.address)["pending_nonce"] for name, key in keys.items()}

    def send(signer: str, tx_type: str, payload: dict) -> str:
        key: KeyPair = keys[signer]
        tx = sign_transaction(key, status["chain_id"], tx_type, payload, nonces[signer], status["min_fee"])
        nonces[signer] += 1
        return client.submit(tx.raw)

    hashes = []
    for name, role in DEMO_ROLES:
        evidence = hashlib.sha256(f"KYC dossier of {name} for {role}".encode()).digest()
        hashes.append(send("faucet", "role_grant", {"account": keys[name].address, "role": role, "evidence_hash": evidence}))
    for sender, recipient, amount, memo in DEMO_TRANSFERS:
        hashes.append(send(sender, "transfer", {"to": keys[recipient].address, "amount": amount, "memo": memo}))
    for tx_hash in hashes:
        view = client.wait_for_tx(tx_hash)
        say(f"  {view['type']:<12} {tx_hash[:16]}… block {view['height']} {'ok' if view['result']['ok'] else view['result']['code']}")
    return hashes

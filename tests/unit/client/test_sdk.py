"""The SDK's own pieces that need no node: its public names, loading keys, the failure
of a final transaction, and reading a trust-anchor genesis."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import client
from client import KeystoreError, TransactionFailed, load_key
from client.keystore import Keystore, write_plain_key
from client.verification import GenesisFileError, read_genesis_file
from marketplace_tx.chain.genesis import Genesis, GenesisAccount
from marketplace_tx.chain.params import Params
from marketplace_tx.primitives.crypto import KeyPair
from tests.fast_keys import FAST_LIMITS


def test_every_public_name_exists_and_is_documented() -> None:
    for name in client.__all__:
        value = getattr(client, name)
        if callable(value) or isinstance(value, type):
            assert (value.__doc__ or "").strip(), name


def test_load_key_from_a_file_or_the_keystore(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARKETCHAIN_KEYSTORE", str(tmp_path / "keys"))
    plain = KeyPair.generate()
    write_plain_key(tmp_path / "alice.json", plain)
    assert load_key(tmp_path / "alice.json") == plain
    assert load_key(str(tmp_path / "alice.json"), "ignored for a plain key") == plain
    created = Keystore().create("bob", "correct horse", **FAST_LIMITS)
    assert load_key("bob", "correct horse").address == created.address
    with pytest.raises(KeystoreError):
        load_key("bob", "wrong")
    with pytest.raises(KeystoreError):
        load_key("nobody")


def test_a_failed_final_transaction_carries_its_receipt() -> None:
    receipt = {"type": "transfer", "hash": "ab" * 32,
               "result": {"ok": False, "code": "insufficient_funds", "message": "balance 1 < 2", "events": []}}
    failure = TransactionFailed(receipt)
    assert failure.code == "insufficient_funds" and failure.receipt is receipt
    assert str(failure) == f"transfer {'ab' * 32} failed: insufficient_funds: balance 1 < 2"


def test_a_trust_anchor_genesis_is_read_and_checked(tmp_path: Path) -> None:
    validator = KeyPair.generate().address
    genesis = Genesis(chain_id="anchor", genesis_time=1, validators=(validator,),
                      accounts=(GenesisAccount(validator, 5, ("registrar",)),), params=Params())
    path = tmp_path / "genesis.json"
    path.write_text(json.dumps(genesis.to_json()))
    assert read_genesis_file(path).hash == genesis.hash
    path.write_text("{")
    with pytest.raises(GenesisFileError, match="is not valid JSON"):
        read_genesis_file(path)
    path.write_text(json.dumps({**genesis.to_json(), "validators": []}))
    with pytest.raises(GenesisFileError, match=str(path)):
        read_genesis_file(path)
    with pytest.raises(GenesisFileError, match="does not exist"):
        read_genesis_file(tmp_path / "missing.json")

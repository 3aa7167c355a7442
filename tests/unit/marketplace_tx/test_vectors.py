"""Reproduce every value of the shared vectors (protocol-v1.json) and of this
implementation's own (marketchain-v2-extra.json), recomputing from the stored inputs."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import nacl.bindings
import pytest

from consensus.commit import sign_commit, verify_commit
from consensus.vote import Vote
from marketplace_tx.chain.block import decode_block, decode_commit
from marketplace_tx.chain.genesis import Genesis
from marketplace_tx.chain.transaction import Transaction, decode_transaction, sign_transaction
from marketplace_tx.primitives import codec
from marketplace_tx.primitives.crypto import KeyPair, x25519_public_key
from marketplace_tx.primitives.merkle import inclusion_path, merkle_root, verify_inclusion
from marketplace_tx.rules.schema import payload_from_json
from marketplace_tx.rules.state import MemoryStateReader
from marketplace_tx.rules.state_transition import apply_block, build_block, genesis_changes
from marketplace_tx.rules.validators import proposer_for
from tests.paths import VECTORS  # noqa: E402

PROTOCOL = json.loads((VECTORS / "protocol-v1.json").read_text(encoding="utf-8"))
EXTRA = json.loads((VECTORS / "marketchain-v2-extra.json").read_text(encoding="utf-8"))


def to_json(value: Any) -> Any:
    """Bytes as lowercase hex, recursively (R5): this test's own copy, not the node's
    `node.http.json_view.to_json` that wrote the vectors, so that it checks them independently."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {key: to_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(item) for item in value]
    return value


def key_from(seed_hex: str) -> KeyPair:
    return KeyPair.from_seed(bytes.fromhex(seed_hex))


def sign_from_vector(vector: dict[str, Any]) -> Transaction:
    """Rebuild and sign a transaction from a vector's seed and JSON fields."""
    key = key_from(vector["seed"])
    fields = vector["tx"]
    assert key.address.hex() == fields["sender"]
    payload = payload_from_json(fields["type"], fields["payload"])
    return sign_transaction(key, fields["chain_id"], fields["type"], payload, fields["nonce"], fields["fee"])


def check_transaction_vector(vector: dict[str, Any]) -> Transaction:
    tx = sign_from_vector(vector)
    assert tx.signing_bytes().hex() == vector["signing_bytes"]
    assert tx.sig.hex() == vector["sig"]
    assert tx.raw.hex() == vector["canonical"]
    assert tx.hash.hex() == vector["hash"]
    assert hashlib.sha256(bytes.fromhex(vector["canonical"])).hexdigest() == vector["hash"]
    decoded = decode_transaction(bytes.fromhex(vector["canonical"]), 16384)
    assert decoded == tx
    assert decoded.has_valid_signature()
    return tx


# --------------------------------------------------------------------------- protocol-v1.json


def test_protocol_vectors_are_all_covered() -> None:
    assert set(PROTOCOL) == {
        "about", "transactions", "transactions_note", "vote", "nil_vote", "merkle", "addresses",
    }  # fmt: skip
    assert len(PROTOCOL["transactions"]) == 3
    assert [len(item["leaves"]) for item in PROTOCOL["merkle"]] == list(range(10))


@pytest.mark.parametrize(
    "vector", PROTOCOL["transactions"], ids=[v["tx"]["type"] for v in PROTOCOL["transactions"]]
)
def test_protocol_transaction(vector: dict[str, Any]) -> None:
    check_transaction_vector(vector)


@pytest.mark.parametrize("name", ["vote", "nil_vote"])
def test_protocol_vote(name: str) -> None:
    vector = PROTOCOL[name]
    fields = vector["vote"]
    block_hash = None if fields["block_hash"] is None else bytes.fromhex(fields["block_hash"])
    vote = Vote(fields["chain_id"], fields["height"], fields["round"], fields["type"], block_hash)
    key = key_from(vector["seed"])
    assert vote.signing_bytes().hex() == vector["signing_bytes"]
    assert vote.sign(key).hex() == vector["sig"]
    assert vote.verify(key.address, bytes.fromhex(vector["sig"]))
    if block_hash is None:
        assert b"\xaablock_hash\xc0" in vote.signing_bytes()  # an explicit nil (R26)


@pytest.mark.parametrize("vector", PROTOCOL["merkle"], ids=lambda v: f"{len(v['leaves'])} leaves")
def test_protocol_merkle_root(vector: dict[str, Any]) -> None:
    leaves = [bytes.fromhex(leaf) for leaf in vector["leaves"]]
    assert merkle_root(leaves).hex() == vector["root"]


def test_protocol_address_and_x25519() -> None:
    vector = PROTOCOL["addresses"]
    key = key_from(vector["seed"])
    assert key.address.hex() == vector["address"]
    assert x25519_public_key(key.address).hex() == vector["x25519_public"]
    # the matching secret key derives the same public key
    assert nacl.bindings.crypto_scalarmult_base(key.x25519_secret_key()).hex() == vector["x25519_public"]


# --------------------------------------------------------------------------- marketchain-v2-extra.json


def test_extra_vectors_explain_themselves() -> None:
    about = EXTRA["about"]
    assert "state_root" in about and "last_commit = {}" in about
    assert set(EXTRA) == {"about", "chain_id", "transactions", "merkle", "genesis", "block_1"}


@pytest.mark.parametrize(
    "vector", EXTRA["transactions"], ids=[v["tx"]["type"] for v in EXTRA["transactions"]]
)
def test_extra_transaction(vector: dict[str, Any]) -> None:
    check_transaction_vector(vector)


def test_extra_transactions_cover_the_executable_types() -> None:
    assert [v["tx"]["type"] for v in EXTRA["transactions"]] == ["transfer", "role_grant", "role_revoke"]


@pytest.mark.parametrize("vector", EXTRA["merkle"], ids=lambda v: f"{len(v['leaves'])} leaves")
def test_extra_merkle_roots_and_paths(vector: dict[str, Any]) -> None:
    count = len(vector["leaves"])
    leaves = [bytes([index]) * 32 for index in range(count)]
    assert vector["leaves"] == [leaf.hex() for leaf in leaves]
    root = merkle_root(leaves)
    assert root.hex() == vector["root"]
    assert len(vector["paths"]) == count
    for index, expected in enumerate(vector["paths"]):
        assert [node.hex() for node in inclusion_path(leaves, index)] == expected
        path = [bytes.fromhex(node) for node in expected]
        assert verify_inclusion(leaves[index], index, count, path, root)


def test_extra_merkle_covers_0_to_9_leaves() -> None:
    assert [len(v["leaves"]) for v in EXTRA["merkle"]] == list(range(10))


def test_extra_genesis() -> None:
    vector = EXTRA["genesis"]
    genesis = Genesis.from_json(vector["document"])
    assert sorted(key_from(s).address for s in vector["validator_seeds"]) == list(genesis.validators)
    assert sorted(key_from(s).address for s in vector["account_seeds"]) == [
        account.address for account in genesis.accounts
    ]
    assert len(genesis.validators) == 2 and len(genesis.accounts) == 3
    assert genesis.params.to_map() == type(genesis.params)().to_map()  # default params
    assert codec.encode(genesis.to_map()).hex() == vector["canonical"]
    assert genesis.hash.hex() == vector["hash"]
    tip, changes = genesis_changes(genesis)
    assert [[key.hex(), to_json(changes[key])] for key in sorted(changes)] == vector["state_changes"]
    assert tip.state_root.hex() == vector["state_root"]


@pytest.fixture(scope="module")
def block_1() -> dict[str, Any]:
    """Rebuild block 1 from the stored inputs: genesis document, seeds, tx fields, time."""
    vector = EXTRA["block_1"]
    genesis = Genesis.from_json(EXTRA["genesis"]["document"])
    tip, changes = genesis_changes(genesis)
    proposer = key_from(vector["proposer_seed"]).address
    txs = [sign_from_vector(item) for item in vector["transactions"]]
    result = build_block(
        MemoryStateReader(changes), tip, genesis.chain_id, genesis.params, proposer, vector["time"], txs, None
    )
    return {"vector": vector, "genesis": genesis, "tip": tip, "changes": changes, "txs": txs, "result": result}


def test_extra_block_1_transactions(block_1: dict[str, Any]) -> None:
    for item in block_1["vector"]["transactions"]:
        check_transaction_vector(item)
    assert block_1["result"].transactions == tuple(block_1["txs"])


def test_extra_block_1_proposer_follows_r25(block_1: dict[str, Any]) -> None:
    genesis = block_1["genesis"]
    assert key_from(block_1["vector"]["proposer_seed"]).address == proposer_for(genesis.validators, 1, 0)


def test_extra_block_1(block_1: dict[str, Any]) -> None:
    vector, result = block_1["vector"], block_1["result"]
    header = result.block.header
    assert [receipt.committed_form() for receipt in result.receipts] == vector["receipts"]
    assert to_json(header.to_map()) == vector["header"]
    assert header.tx_root.hex() == vector["tx_root"]
    assert header.results_root.hex() == vector["results_root"]
    assert header.state_root.hex() == vector["state_root"]
    assert [[key.hex(), to_json(result.changes[key])] for key in sorted(result.changes)] == vector[
        "state_changes"
    ]
    assert result.block.encode().hex() == vector["canonical"]
    assert result.block.hash.hex() == vector["hash"]
    assert header.prev_hash.hex() == EXTRA["genesis"]["hash"]
    assert header.last_commit_hash == hashlib.sha256(b"\x80").digest()


def test_extra_block_1_bytes_apply(block_1: dict[str, Any]) -> None:
    """A validator given only the canonical bytes reaches the same roots."""
    vector, genesis = block_1["vector"], block_1["genesis"]
    block = decode_block(bytes.fromhex(vector["canonical"]), genesis.params.max_block_bytes)
    applied = apply_block(
        MemoryStateReader(block_1["changes"]), block_1["tip"], genesis.chain_id, genesis.params, block
    )
    assert applied.block.hash.hex() == vector["hash"]
    assert applied.changes == block_1["result"].changes


def test_extra_block_1_commit(block_1: dict[str, Any]) -> None:
    vector, genesis = block_1["vector"], block_1["genesis"]
    commit_vector = vector["commit"]
    block_hash = bytes.fromhex(vector["hash"])
    signers = [key_from(seed) for seed in commit_vector["signer_seeds"]]
    commit = sign_commit(signers, genesis.chain_id, 1, commit_vector["round"], block_hash)
    assert commit.encode().hex() == commit_vector["canonical"]
    assert hashlib.sha256(commit.encode()).hexdigest() == commit_vector["hash"]
    decoded = decode_commit(bytes.fromhex(commit_vector["canonical"]))
    assert decoded == commit
    verify_commit(decoded, genesis.chain_id, block_hash, 1, genesis.validators)

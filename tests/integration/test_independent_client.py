"""A client written from PROTOCOL.md alone interoperates with a real node (R1–R9, R23, R24, R26, R33).

Everything here that builds or verifies protocol bytes uses only `msgpack`, `hashlib`
and `nacl`: no import from `marketplace_tx`, `consensus` or `node`. The node process
is managed by `tests/e2e/node_process.py`, which does not build or check protocol data.
The builder first proves itself against the published vectors
(`tests/vectors/protocol-v1.json`), then talks to the node.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import msgpack
import nacl.exceptions
import nacl.signing
import pytest

from tests.e2e.independent_light_client import canonical, sha256  # written from the page alone too
from tests.e2e.node_process import NodeProcess
from tests.paths import VECTORS as VECTORS_FOLDER

VECTORS = json.loads((VECTORS_FOLDER / "protocol-v1.json").read_text())
TX_TAG = b"marketchain/tx/v1\x00"
VOTE_TAG = b"marketchain/vote/v1\x00"
HEADER_FIELDS = {
    "chain_id", "height", "time", "prev_hash", "tx_root", "results_root", "state_root",
    "validators_hash", "next_validators_hash", "proposer", "last_commit_hash", "evidence_hash",
}
FUNDS = 5_000_000


# --- the independent implementation -------------------------------------------------


def merkle_root(leaves: list[bytes]) -> bytes:
    """R7 / RFC 6962 Merkle tree hash."""
    if not leaves:
        return sha256(b"")
    if len(leaves) == 1:
        return sha256(b"\x00" + leaves[0])
    split = 1
    while split * 2 < len(leaves):
        split *= 2
    return sha256(b"\x01" + merkle_root(leaves[:split]) + merkle_root(leaves[split:]))


def root_from_path(leaf: bytes, index: int, total: int, path: list[bytes]) -> bytes | None:
    """RFC 9162 §2.1.3.2: the root an inclusion path leads to, or None if it cannot."""
    if not 0 <= index < total:
        return None
    position, last = index, total - 1
    current = sha256(b"\x00" + leaf)
    for sibling in path:
        if last == 0:
            return None
        if position % 2 == 1 or position == last:
            current = sha256(b"\x01" + sibling + current)
            if position % 2 == 0:
                while position % 2 == 0 and position != 0:
                    position >>= 1
                    last >>= 1
        else:
            current = sha256(b"\x01" + current + sibling)
        position >>= 1
        last >>= 1
    return current if last == 0 else None


def build_transfer(
    seed: bytes, chain_id: str, nonce: int, fee: int, to: bytes, amount: int, memo: str | None = None
) -> bytes:
    """R8: the signed transfer's canonical bytes; the signature covers the map without `sig`."""
    signing_key = nacl.signing.SigningKey(seed)
    payload: dict[str, Any] = {"amount": amount, "to": to}
    if memo is not None:
        payload["memo"] = memo
    unsigned = {
        "chain_id": chain_id,
        "fee": fee,
        "nonce": nonce,
        "payload": payload,
        "sender": bytes(signing_key.verify_key),
        "type": "transfer",
    }
    signature = signing_key.sign(TX_TAG + canonical(unsigned)).signature
    return canonical({**unsigned, "sig": signature})


def vote_bytes(chain_id: str, height: int, round_number: int, block_hash: bytes) -> bytes:
    """R26: what a precommit signature covers."""
    return VOTE_TAG + canonical(
        {"block_hash": block_hash, "chain_id": chain_id, "height": height, "round": round_number,
         "type": "precommit"}
    )


def verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    try:
        nacl.signing.VerifyKey(public_key).verify(message, signature)
    except nacl.exceptions.BadSignatureError:
        return False
    return True


def genesis_hash(document: dict[str, Any]) -> bytes:
    """R33: SHA-256 of the canonical genesis, addresses as bin."""
    value = {
        "accounts": [
            {"address": bytes.fromhex(account["address"]), "balance": account["balance"],
             "roles": list(account["roles"])}
            for account in document["accounts"]
        ],
        "chain_id": document["chain_id"],
        "genesis_time": document["genesis_time"],
        "params": document["params"],
        "validators": [bytes.fromhex(address) for address in document["validators"]],
    }
    return sha256(canonical(value))


def commit_from_json(view: dict[str, Any]) -> dict[str, Any]:
    """A `/blocks/{h}/commit` answer as the msgpack map of R24."""
    return {
        "block_hash": bytes.fromhex(view["block_hash"]),
        "height": view["height"],
        "round": view["round"],
        "signatures": [
            {"signature": bytes.fromhex(item["signature"]), "validator": bytes.fromhex(item["validator"])}
            for item in view["signatures"]
        ],
    }


# --- the builder against the published vectors ---------------------------------------


def test_builder_reproduces_the_reference_transfer_vector() -> None:
    vector = next(item for item in VECTORS["transactions"] if item["tx"]["type"] == "transfer")
    tx = vector["tx"]
    seed = bytes.fromhex(vector["seed"])
    raw = build_transfer(
        seed, tx["chain_id"], tx["nonce"], tx["fee"], bytes.fromhex(tx["payload"]["to"]),
        tx["payload"]["amount"], tx["payload"].get("memo"),
    )
    assert raw.hex() == vector["canonical"]
    assert sha256(raw).hex() == vector["hash"]
    assert bytes(nacl.signing.SigningKey(seed).verify_key).hex() == tx["sender"]


def test_vote_and_merkle_reproduce_the_reference_vectors() -> None:
    vote = VECTORS["vote"]
    message = vote_bytes(vote["vote"]["chain_id"], vote["vote"]["height"], vote["vote"]["round"],
                         bytes.fromhex(vote["vote"]["block_hash"]))
    assert message.hex() == vote["signing_bytes"]
    assert nacl.signing.SigningKey(bytes.fromhex(vote["seed"])).sign(message).signature.hex() == vote["sig"]
    for case in VECTORS["merkle"]:
        assert merkle_root([bytes.fromhex(leaf) for leaf in case["leaves"]]).hex() == case["root"]


# --- against a real node ------------------------------------------------------------

SEED = hashlib.sha256(b"independent client").digest()
ADDRESS = bytes(nacl.signing.SigningKey(SEED).verify_key)
RECIPIENT = hashlib.sha256(b"independent recipient").digest()


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory):
    with NodeProcess(tmp_path_factory.mktemp("independent") / "node", fund={ADDRESS: FUNDS}) as running:
        yield running


@pytest.mark.integration
def test_independent_transfers_are_final_and_verifiable(node: NodeProcess) -> None:
    status = node.status()
    chain_id = status["chain_id"]
    genesis = node.genesis()
    assert genesis_hash(genesis).hex() == status["genesis_hash"]
    assert genesis["validators"] == [status["validator"]]
    min_fee = genesis["params"]["min_fee"]
    validator = bytes.fromhex(status["validator"])
    account = node.get_ok(f"/accounts/{ADDRESS.hex()}")
    assert (account["balance"], account["nonce"]) == (FUNDS, 0)

    # Two transactions in two blocks, so block 2 carries block 1's commit. The first goes
    # as raw msgpack, the second as JSON hex.
    sent = []
    for nonce, memo in ((0, "从 PROTOCOL.md 写的客户端"), (1, None)):
        raw = build_transfer(SEED, chain_id, nonce, min_fee, RECIPIENT, 1_000 + nonce, memo)
        if nonce == 0:
            code, body = node.post("/txs", raw, "application/msgpack")
        else:
            code, body = node.post("/txs", {"tx": raw.hex()})
        assert code == 202, body
        assert body == {"hash": sha256(raw).hex()}
        view = node.wait_for_tx(body["hash"])
        assert view["hash"] == sha256(raw).hex()
        assert view["sender"] == ADDRESS.hex() and view["nonce"] == nonce and view["fee"] == min_fee
        assert view["result"]["ok"] is True, view
        sent.append((raw, view))
    assert sent[0][1]["height"] < sent[1][1]["height"]
    account = node.get_ok(f"/accounts/{ADDRESS.hex()}")
    assert account["nonce"] == 2
    assert account["balance"] == FUNDS - 2 * min_fee - 1_000 - 1_001
    assert node.get_ok(f"/accounts/{RECIPIENT.hex()}")["balance"] == 2_001

    blocks: dict[int, dict[str, Any]] = {}
    commits: dict[int, dict[str, Any]] = {}
    for height in range(1, node.status()["height"] + 1):
        raw_block = node.get_ok(f"/blocks/{height}/raw")
        assert isinstance(raw_block, bytes)
        block = msgpack.unpackb(raw_block, raw=False)
        assert canonical(block) == raw_block, "the node's block bytes are canonical (R1)"
        assert set(block) == {"evidence", "header", "last_commit", "txs"}
        header = block["header"]
        assert set(header) == HEADER_FIELDS
        assert header["height"] == height and header["chain_id"] == chain_id
        block_hash = sha256(msgpack.packb(header, use_bin_type=True))
        view = node.get_ok(f"/blocks/{height}")
        assert view["hash"] == block_hash.hex()

        # R23 roots and hashes, recomputed by hand.
        tx_hashes = [sha256(tx) for tx in block["txs"]]
        assert view["txs"] == [tx_hash.hex() for tx_hash in tx_hashes]
        assert header["tx_root"] == merkle_root(tx_hashes)
        receipts = []
        for tx_hash in tx_hashes:
            result = node.get_ok(f"/txs/{tx_hash.hex()}")["result"]
            receipts.append({"ok": True} if result["ok"] else {"code": result["code"], "ok": False})
        assert header["results_root"] == merkle_root([canonical(receipt) for receipt in receipts])
        assert header["validators_hash"] == sha256(canonical(sorted([validator])))
        assert header["next_validators_hash"] == header["validators_hash"]
        assert header["proposer"] == validator
        assert block["evidence"] == [] and header["evidence_hash"] == sha256(b"")
        assert header["last_commit_hash"] == sha256(msgpack.packb(block["last_commit"], use_bin_type=True))
        if height == 1:
            assert header["prev_hash"].hex() == status["genesis_hash"]
            assert block["last_commit"] == {}
        else:
            assert header["prev_hash"] == sha256(canonical(blocks[height - 1]["header"]))
            assert block["last_commit"] == commits[height - 1]
            assert header["time"] > blocks[height - 1]["header"]["time"]

        # R24, R26: the commit is the validator's precommit of this block.
        commit = commit_from_json(node.get_ok(f"/blocks/{height}/commit"))
        assert commit["block_hash"] == block_hash and commit["height"] == height
        assert [item["validator"] for item in commit["signatures"]] == [validator]
        signature = commit["signatures"][0]["signature"]
        assert verify(validator, vote_bytes(chain_id, height, commit["round"], block_hash), signature)
        assert not verify(validator, vote_bytes(chain_id, height + 1, commit["round"], block_hash), signature)
        assert not verify(validator, vote_bytes(chain_id + "x", height, commit["round"], block_hash),
                          signature)
        blocks[height] = block
        commits[height] = commit

    # Our exact bytes are in the blocks, at the index the node reports, provably (R7).
    for raw, view in sent:
        block = blocks[view["height"]]
        assert block["txs"][view["index"]] == raw
        proof = node.get_ok(f"/txs/{view['hash']}/proof")
        assert (proof["height"], proof["index"], proof["total"]) == (
            view["height"], view["index"], len(block["txs"]))
        assert bytes.fromhex(proof["tx_root"]) == block["header"]["tx_root"]
        path = [bytes.fromhex(item) for item in proof["path"]]
        assert root_from_path(sha256(raw), proof["index"], proof["total"], path) == block["header"]["tx_root"]

    # Status agrees with the last block.
    tip = max(blocks)
    final = node.status()
    assert final["latest_block_hash"] == sha256(canonical(blocks[tip]["header"])).hex()
    assert final["latest_block_time"] == blocks[tip]["header"]["time"]


@pytest.mark.integration
def test_a_forged_signature_is_refused(node: NodeProcess) -> None:
    chain_id = node.status()["chain_id"]
    nonce = node.get_ok(f"/accounts/{ADDRESS.hex()}")["pending_nonce"]
    raw = build_transfer(SEED, chain_id, nonce, 10, RECIPIENT, 5)
    tx = msgpack.unpackb(raw, raw=False)
    other = nacl.signing.SigningKey(hashlib.sha256(b"someone else").digest())
    unsigned = {name: value for name, value in tx.items() if name != "sig"}
    forged = canonical({**unsigned, "sig": other.sign(TX_TAG + canonical(unsigned)).signature})
    code, body = node.post("/txs", forged, "application/msgpack")
    assert code == 400 and body["error"]["code"] == "bad_signature", body
    # Signed without the domain tag: also not a signature of this transaction (R4).
    untagged = canonical({**unsigned, "sig": nacl.signing.SigningKey(SEED).sign(canonical(unsigned)).signature})
    code, body = node.post("/txs", untagged, "application/msgpack")
    assert code == 400 and body["error"]["code"] == "bad_signature", body

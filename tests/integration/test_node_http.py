"""Submitting transactions to the HTTP API of a real node process on loopback (PROTOCOL §10,
R1, R2, R9–R12): status, the life of a transaction, admission errors, nonces, duplicates and
batches. Reading blocks, proofs and accounts, and HTTP errors, are in test_node_http_reads.py.

One node serves the whole module. Every test that sends transactions uses its own
genesis-funded sender, and leaves nothing pending behind it, so the tests do not
depend on each other's order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import msgpack
import pytest

from marketplace_tx.chain.genesis import Genesis
from marketplace_tx.chain.transaction import Transaction, sign_transaction
from marketplace_tx.primitives import codec
from marketplace_tx.primitives.crypto import KeyPair
from tests.e2e.node_process import (
    NodeProcess,
    is_error_body,
)
from tests.integration.node_http_support import (
    MAX_TX_BYTES,
    MIN_FEE,
    POOR,
    RECIPIENT,
    UNFUNDED,
    assert_error,
    assert_nothing_pending,
    assert_serving,
    commit,
    ensure_blocks,
    key,
    next_nonce,
    node_fixtures,
    transfer,
)

pytestmark = pytest.mark.integration


node, chain_id = node_fixtures("http")


# --- status -------------------------------------------------------------------------


def test_status_reports_every_field(node: NodeProcess, chain_id: str) -> None:
    height = ensure_blocks(node, chain_id, 1)
    status = node.status()
    for name in (
        "chain_id",
        "genesis_hash",
        "height",
        "latest_block_hash",
        "latest_block_time",
        "node_id",
        "validator",
        "peers",
        "syncing",
        "version",
    ):
        assert name in status, name
    genesis = Genesis.from_json(node.genesis())
    assert status["chain_id"] == genesis.chain_id == chain_id
    assert status["genesis_hash"] == genesis.hash.hex()
    assert status["node_id"] == node.node_id
    assert status["validator"] == node.validator_key.address.hex()
    assert status["validator"] in [address.hex() for address in genesis.validators]
    assert isinstance(status["peers"], int) and status["peers"] >= 0
    assert status["syncing"] is False
    assert isinstance(status["version"], str) and status["version"]
    assert status["height"] >= height
    latest = node.get_ok(f"/blocks/{status['height']}")
    assert status["latest_block_hash"] == latest["hash"]
    assert status["latest_block_time"] == latest["header"]["time"]
    assert status["latest_block_time"] > genesis.genesis_time


# --- submission and the life of a transaction ---------------------------------------


@pytest.mark.parametrize("form", ["msgpack", "json"])
def test_transfer_goes_pending_then_committed(node: NodeProcess, chain_id: str, form: str) -> None:
    sender = key(form)
    validator = node.validator_key.address
    before = {name: node.account(address) for name, address in
              (("sender", sender.address), ("recipient", RECIPIENT.address), ("validator", validator))}
    nonce = before["sender"]["nonce"]
    assert before["sender"]["pending_nonce"] == nonce
    amount, fee = 2_500, 17
    # The second transaction first: its nonce gap keeps it pending until the first arrives.
    second = transfer(chain_id, sender, nonce + 1, amount=amount, fee=fee, memo="second")
    first = transfer(chain_id, sender, nonce, amount=amount, fee=fee)
    for tx in (second, first):
        if form == "msgpack":
            status, body = node.post("/txs", tx.raw, "application/msgpack")
        else:
            status, body = node.post("/txs", {"tx": tx.raw.hex()})
        assert status == 202, body
        assert body == {"hash": tx.hash.hex()}
        assert body["hash"] == hashlib.sha256(tx.raw).hexdigest()
        if tx is second:
            pending = node.get_ok(f"/txs/{second.hash.hex()}")
            assert pending["status"] == "pending"
            assert pending["hash"] == second.hash.hex()
            assert pending["nonce"] == nonce + 1
            assert pending["sender"] == sender.address.hex()
            assert pending["payload"] == {"to": RECIPIENT.address.hex(), "amount": amount, "memo": "second"}
            assert node.account(sender.address)["nonce"] == nonce
    views = [node.wait_for_tx(tx.hash.hex()) for tx in (first, second)]
    for tx, view in zip((first, second), views, strict=True):
        assert view["status"] == "committed"
        assert view["hash"] == tx.hash.hex()
        assert view["type"] == "transfer"
        assert view["fee"] == fee and view["nonce"] == tx.nonce
        assert isinstance(view["height"], int) and view["height"] >= 1
        assert isinstance(view["index"], int) and view["index"] >= 0
        block = node.get_ok(f"/blocks/{view['height']}")
        assert block["txs"][view["index"]] == tx.hash.hex()
        assert view["block_hash"] == block["hash"]
        result = view["result"]
        assert set(result) <= {"ok", "code", "message", "events"}
        assert {"ok", "message", "events"} <= set(result)
        assert result["ok"] is True and result.get("code") is None
        assert isinstance(result["message"], str)
        assert any(
            event.get("type") == "transfer"
            and event.get("from") == sender.address.hex()
            and event.get("to") == RECIPIENT.address.hex()
            and event.get("amount") == amount
            for event in result["events"]
        ), result
    assert (views[0]["height"], views[0]["index"]) < (views[1]["height"], views[1]["index"])
    after = {name: node.account(address) for name, address in
             (("sender", sender.address), ("recipient", RECIPIENT.address), ("validator", validator))}
    assert after["sender"]["balance"] == before["sender"]["balance"] - 2 * (amount + fee)
    assert after["sender"]["nonce"] == after["sender"]["pending_nonce"] == nonce + 2
    assert after["recipient"]["balance"] == before["recipient"]["balance"] + 2 * amount
    # The fees go to the block's proposer, the only validator.
    assert after["validator"]["balance"] == before["validator"]["balance"] + 2 * fee
    for view in views:
        header = node.get_ok(f"/blocks/{view['height']}")["header"]
        assert header["proposer"] == validator.hex()


def test_rule_failure_is_committed_and_still_pays_the_fee(node: NodeProcess, chain_id: str) -> None:
    """R11: an included tx whose rule fails pays its fee and bumps the nonce; nothing else."""
    validator = node.validator_key.address
    poor = node.account(POOR.address)
    recipient = node.account(RECIPIENT.address)
    validator_before = node.account(validator)["balance"]
    fee = MIN_FEE
    assert poor["balance"] >= fee
    tx = transfer(chain_id, POOR, poor["nonce"], amount=poor["balance"] * 5, fee=fee)
    view = commit(node, tx)
    assert view["result"]["ok"] is False
    assert view["result"]["code"] == "insufficient_funds"
    assert view["result"]["message"]
    after = node.account(POOR.address)
    assert after["balance"] == poor["balance"] - fee
    assert after["nonce"] == poor["nonce"] + 1
    assert node.account(RECIPIENT.address)["balance"] == recipient["balance"]
    assert node.account(validator)["balance"] == validator_before + fee


# --- admission errors ---------------------------------------------------------------


def _resign_map(tx: Transaction, **changes: Any) -> bytes:
    """The signed map of `tx` with fields replaced, canonically encoded (signature kept)."""
    return codec.encode({**tx.to_map(), **changes})


def _flip_signature_bit(chain_id: str, sender: KeyPair, nonce: int) -> bytes:
    tx = transfer(chain_id, sender, nonce)
    signature = bytearray(tx.sig)
    signature[10] ^= 0x01
    return _resign_map(tx, sig=bytes(signature))


def _unsorted_keys(chain_id: str, sender: KeyPair, nonce: int) -> bytes:
    signed = transfer(chain_id, sender, nonce).to_map()
    reordered = {name: signed[name] for name in reversed(sorted(signed))}
    return msgpack.packb(reordered, use_bin_type=True)


def _non_shortest_integer(chain_id: str, sender: KeyPair, nonce: int) -> bytes:
    raw = transfer(chain_id, sender, nonce, fee=MIN_FEE).raw
    shortest = b"\xa3fee" + bytes([MIN_FEE])
    assert raw.count(shortest) == 1
    return raw.replace(shortest, b"\xa3fee\xcc" + bytes([MIN_FEE]))


def _float_amount(chain_id: str, sender: KeyPair, nonce: int) -> bytes:
    signed = transfer(chain_id, sender, nonce).to_map()
    signed["payload"] = {**signed["payload"], "amount": 1000.0}
    return msgpack.packb({name: signed[name] for name in sorted(signed)}, use_bin_type=True)


def _missing_field(chain_id: str, sender: KeyPair, nonce: int) -> bytes:
    signed = transfer(chain_id, sender, nonce).to_map()
    del signed["sig"]
    return codec.encode(signed)


def _too_large(chain_id: str, sender: KeyPair, nonce: int) -> bytes:
    raw = transfer(chain_id, sender, nonce, memo="x" * (MAX_TX_BYTES + 1)).raw
    assert len(raw) > MAX_TX_BYTES
    return raw


Builder = Callable[[str, KeyPair, int], bytes]

ADMISSION_CASES: dict[str, tuple[str, Builder]] = {
    "bad_signature": ("bad_signature", _flip_signature_bit),
    "wrong_chain": ("wrong_chain", lambda c, s, n: transfer(c + "-other", s, n).raw),
    "fee_too_low": ("fee_too_low", lambda c, s, n: transfer(c, s, n, fee=MIN_FEE - 1).raw),
    "nonce_too_far": ("bad_nonce", lambda c, s, n: transfer(c, s, n + 65).raw),
    "garbage": ("malformed", lambda c, s, n: b"\xc1\xff\x00garbage"),
    "empty": ("malformed", lambda c, s, n: b""),
    "not_a_map": ("malformed", lambda c, s, n: codec.encode([1, 2, 3])),
    "unsorted_keys": ("malformed", _unsorted_keys),
    "non_shortest_int": ("malformed", _non_shortest_integer),
    "trailing_bytes": ("malformed", lambda c, s, n: transfer(c, s, n).raw + b"\x00"),
    "float": ("malformed", _float_amount),
    "missing_sig": ("malformed", _missing_field),
    "tx_too_large": ("tx_too_large", _too_large),
    "unknown_type": (
        "unknown_type",
        lambda c, s, n: sign_transaction(s, c, "teleport", {"to": RECIPIENT.address}, n, MIN_FEE).raw,
    ),
    "amount_zero": ("invalid_field", lambda c, s, n: transfer(c, s, n, amount=0).raw),
    "unknown_payload_key": ("invalid_field", lambda c, s, n: transfer(c, s, n, colour="red").raw),
    "short_recipient": ("invalid_field", lambda c, s, n: transfer(c, s, n, to=b"\x01" * 31).raw),
    "long_memo": ("invalid_field", lambda c, s, n: transfer(c, s, n, memo="é" * 129).raw),
    "unfunded_sender": ("insufficient_funds", lambda c, s, n: transfer(c, UNFUNDED, 0).raw),
}


@pytest.mark.parametrize("form", ["msgpack", "json"])
@pytest.mark.parametrize("case", sorted(ADMISSION_CASES))
def test_admission_error(node: NodeProcess, chain_id: str, case: str, form: str) -> None:
    code, build = ADMISSION_CASES[case]
    sender = key("admission")
    account = node.account(sender.address)
    raw = build(chain_id, sender, account["nonce"])
    if form == "msgpack":
        status, body = node.post("/txs", raw, "application/msgpack")
    else:
        status, body = node.post("/txs", {"tx": raw.hex()})
    assert_error(status, body, 400, code)
    assert_serving(node)
    assert node.account(sender.address) == account
    assert node.get(f"/txs/{hashlib.sha256(raw).hexdigest()}")[0] == 404


def test_stale_nonce_after_a_committed_transaction(node: NodeProcess, chain_id: str) -> None:
    sender = key("stale")
    nonce = next_nonce(node, sender)
    commit(node, transfer(chain_id, sender, nonce, amount=10))
    status, body = node.post("/txs", transfer(chain_id, sender, nonce, amount=11).raw)
    assert_error(status, body, 400, "bad_nonce")
    assert_serving(node)


def test_nonce_window_is_64_above_the_next_nonce(node: NodeProcess, chain_id: str) -> None:
    """R10: a nonce up to next + 64 waits for the gap; next + 65 is refused."""
    sender = key("window")
    nonce = next_nonce(node, sender)
    status, body = node.post("/txs", transfer(chain_id, sender, nonce + 65).raw)
    assert_error(status, body, 400, "bad_nonce")
    far = transfer(chain_id, sender, nonce + 64, amount=64)
    assert node.submit(far.raw) == far.hash.hex()
    assert node.get_ok(f"/txs/{far.hash.hex()}")["status"] == "pending"
    assert node.account(sender.address)["pending_nonce"] == nonce
    gap = [transfer(chain_id, sender, nonce + offset, amount=1 + offset) for offset in range(64)]
    status, body = node.post("/txs/batch", codec.encode([tx.raw for tx in gap]), "application/msgpack")
    assert status == 200, body
    assert body["results"] == [{"hash": tx.hash.hex()} for tx in gap]
    view = node.wait_for_tx(far.hash.hex())
    assert view["result"]["ok"] is True
    assert node.account(sender.address)["nonce"] == nonce + 65
    assert_nothing_pending(node)


def test_duplicates_of_pending_and_committed_transactions(node: NodeProcess, chain_id: str) -> None:
    sender = key("duplicate")
    nonce = next_nonce(node, sender)
    later = transfer(chain_id, sender, nonce + 1, amount=2)
    assert node.submit(later.raw) == later.hash.hex()
    assert node.get_ok(f"/txs/{later.hash.hex()}")["status"] == "pending"
    for body in (later.raw, {"tx": later.raw.hex()}):
        status, answer = node.post("/txs", body)
        assert_error(status, answer, 400, "duplicate")
    first = transfer(chain_id, sender, nonce, amount=1)
    commit(node, first)
    node.wait_for_tx(later.hash.hex())
    for tx in (first, later):
        status, answer = node.post("/txs", tx.raw)
        assert_error(status, answer, 400, "duplicate")
    assert_serving(node)
    assert node.account(sender.address)["nonce"] == nonce + 2


# --- batches ------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["msgpack", "json"])
def test_batch_answers_each_transaction_in_order(node: NodeProcess, chain_id: str, form: str) -> None:
    sender = key(f"batch_{form}")
    nonce = next_nonce(node, sender)
    first = transfer(chain_id, sender, nonce, amount=5)
    second = transfer(chain_id, sender, nonce + 1, amount=6)
    items = [
        first.raw,
        transfer(chain_id, sender, nonce + 2, fee=MIN_FEE - 1).raw,
        second.raw,
        first.raw,
        b"\x93garbage",
        transfer(chain_id + "-other", sender, nonce + 2).raw,
    ]
    expected = [
        {"hash": first.hash.hex()},
        "fee_too_low",
        {"hash": second.hash.hex()},
        "duplicate",
        "malformed",
        "wrong_chain",
    ]
    if form == "msgpack":
        status, body = node.post("/txs/batch", codec.encode(items), "application/msgpack")
    else:
        status, body = node.post("/txs/batch", {"txs": [raw.hex() for raw in items]})
    assert status == 200, body
    results = body["results"]
    assert len(results) == len(expected)
    for result, want in zip(results, expected, strict=True):
        if isinstance(want, dict):
            assert result == want
        else:
            assert is_error_body(result), result
            assert result["error"]["code"] == want
    for tx in (first, second):
        assert node.wait_for_tx(tx.hash.hex())["result"]["ok"] is True
    empty = codec.encode([]) if form == "msgpack" else {"txs": []}
    status, body = node.post("/txs/batch", empty)
    assert (status, body) == (200, {"results": []})


@pytest.mark.parametrize(
    "body, content_type",
    [
        (codec.encode({"txs": []}), "application/msgpack"),
        (codec.encode([1, 2]), "application/msgpack"),
        (b"\x92\xc4\x01a", "application/msgpack"),
        (msgpack.packb([b"a", b"b"]) + b"\x00", "application/msgpack"),
        (b'{"tx": []}', "application/json"),
        (b'{"txs": "00"}', "application/json"),
        (b'{"txs": [5]}', "application/json"),
        (b'{"txs": ["zz"]}', "application/json"),
        (b"[]", "application/json"),
        (b"{not json", "application/json"),
    ],
)
def test_malformed_batch_body(node: NodeProcess, body: bytes, content_type: str) -> None:
    status, answer = node.post("/txs/batch", body, content_type)
    assert_error(status, answer, 400, "malformed")
    assert_serving(node)



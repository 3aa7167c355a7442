"""A real node's mempool under never-ready transactions, and blocks by fee rate (issue 13, attack 5).

One node process with small `[mempool]` future limits and two transactions per block:
- blocks take the best fee rate first across senders, whatever the arrival order;
- future transactions (nonce above a gap) are limited per sender and in total
  (`mempool_full`), a batch of them from many senders is mostly refused, honest
  transactions still become final, and future ones expire after `future_ttl_s`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from marketplace_tx.chain.transaction import Transaction, sign_transaction
from marketplace_tx.primitives.crypto import KeyPair
from tests.e2e.node_process import NodeProcess, wait_until

CHAIN = "marketchain-mempool-clog"
SPAMMERS = 40
FUTURE_TTL_S = 2


def key(name: str) -> KeyPair:
    return KeyPair.from_seed(hashlib.sha256(b"test_mempool_clogging/" + name.encode()).digest())


def transfer(sender: KeyPair, nonce: int, fee: int = 10) -> Transaction:
    return sign_transaction(sender, CHAIN, "transfer", {"to": key("recipient").address, "amount": 1}, nonce, fee)


NAMES = ("low", "mid", "high", "future", "other", "third", "honest")


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Any:
    fund = {key(name).address: 10_000_000 for name in NAMES}
    fund.update({key(f"spam-{index}").address: 10_000_000 for index in range(SPAMMERS)})
    config = {"mempool": {"max_future_per_sender": 2, "max_future": 3, "future_ttl_s": FUTURE_TTL_S}}
    home: Path = tmp_path_factory.mktemp("mempool-clog") / "node"
    with NodeProcess(home, chain_id=CHAIN, params={"max_block_txs": 2}, fund=fund, config=config) as started:
        yield started


def batch(node: NodeProcess, txs: list[Transaction]) -> list[dict[str, Any]]:
    status, body = node.post("/txs/batch", json.dumps({"txs": [tx.raw.hex() for tx in txs]}).encode(),
                             "application/json")
    assert status == 200, body
    return body["results"]


def code_of(result: dict[str, Any]) -> str:
    return result["error"]["code"] if "error" in result else "ok"


@pytest.mark.integration
def test_blocks_take_the_best_fee_rate_first_across_senders(node: NodeProcess) -> None:
    low, mid, high = transfer(key("low"), 0, 10), transfer(key("mid"), 0, 50), transfer(key("high"), 0, 100)
    assert [code_of(result) for result in batch(node, [low, mid, high])] == ["ok"] * 3  # low arrives first
    heights = {name: node.wait_for_tx(tx.hash.hex())["height"] for name, tx in
               (("low", low), ("mid", mid), ("high", high))}
    assert heights["high"] == heights["mid"] < heights["low"], heights


@pytest.mark.integration
def test_future_transactions_are_limited_refused_in_bulk_and_expire(node: NodeProcess) -> None:
    waiting = [transfer(key("future"), nonce) for nonce in (1, 2, 3)]
    assert [code_of(result) for result in batch(node, waiting)] == ["ok", "ok", "mempool_full"]  # per sender
    other = transfer(key("other"), 1)
    assert code_of(batch(node, [other])[0]) == "ok"  # the third future transaction of the pool
    spam = [transfer(key(f"spam-{index}"), 1) for index in range(SPAMMERS)]
    assert {code_of(result) for result in batch(node, spam)} == {"mempool_full"}  # max_future, equal fee
    outbid = transfer(key("third"), 1, fee=20)
    assert code_of(batch(node, [outbid])[0]) == "ok"  # evicts a cheaper future transaction
    honest = transfer(key("honest"), 0)
    assert code_of(batch(node, [honest])[0]) == "ok"
    node.wait_for_tx(honest.hash.hex())  # ready transactions still go through

    def expired() -> bool:
        node.post("/txs", transfer(key("honest"), 99).raw)  # any admission expires what is due
        return all(node.get(f"/txs/{tx.hash.hex()}")[0] == 404 for tx in (*waiting[:2], other, outbid))

    wait_until(expired, node.timeout, f"future transactions expired after {FUTURE_TTL_S} s")
    assert node.status()["mempool_size"] <= 1  # at most the last probe, itself future

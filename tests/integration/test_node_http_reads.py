"""Reading the chain over the HTTP API of a real node process (PROTOCOL §10, R7, R23–R26, R29):
inclusion proofs, blocks and their pages, raw blocks and commits, accounts, HTTP errors
(unknown routes, wrong methods with `Allow`, bad parameters, body limits), fuzzed requests
and an idle chain. Submission and admission are in test_node_http.py.
"""

from __future__ import annotations

import hashlib
import time
import urllib.parse
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from consensus.commit import verify_commit
from marketplace_tx.chain.block import HEADER_KEYS, Commit, decode_block
from marketplace_tx.chain.genesis import Genesis
from marketplace_tx.primitives import codec
from marketplace_tx.primitives.merkle import verify_inclusion
from tests.e2e.node_process import (
    NodeProcess,
    http_request,
    is_error_body,
)
from tests.integration.node_http_support import (
    DEFAULT_MAX_BODY,
    UNTOUCHED,
    UNTOUCHED_BALANCE,
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


node, chain_id = node_fixtures("http_reads")


# --- proofs and blocks --------------------------------------------------------------


def test_inclusion_proofs_of_every_index(node: NodeProcess, chain_id: str) -> None:
    senders = [key("proof_a"), key("proof_b"), key("proof_c")]
    batch = []
    for count, sender in zip((3, 2, 2), senders, strict=True):
        nonce = next_nonce(node, sender)
        batch += [transfer(chain_id, sender, nonce + i, amount=100 + i) for i in range(count)]
    status, body = node.post("/txs/batch", codec.encode([tx.raw for tx in batch]), "application/msgpack")
    assert status == 200 and all("hash" in result for result in body["results"]), body
    views = [node.wait_for_tx(tx.hash.hex()) for tx in batch]
    heights = sorted({view["height"] for view in views})
    largest = max(node.get_ok(f"/blocks/{height}")["tx_count"] for height in heights)
    assert largest > 1, "the batch should share a block"
    for height in heights:
        block = node.get_ok(f"/blocks/{height}")
        raw = node.get_ok(f"/blocks/{height}/raw")
        decoded = decode_block(raw, len(raw))
        assert decoded.header.tx_root.hex() == block["header"]["tx_root"]
        assert [hashlib.sha256(tx).hexdigest() for tx in decoded.txs] == block["txs"]
        total = len(block["txs"])
        for index, tx_hash in enumerate(block["txs"]):
            proof = node.get_ok(f"/txs/{tx_hash}/proof")
            assert proof["height"] == height
            assert proof["index"] == index
            assert proof["total"] == total
            assert proof["tx_root"] == block["header"]["tx_root"]
            path = [bytes.fromhex(item) for item in proof["path"]]
            root = bytes.fromhex(proof["tx_root"])
            leaf = bytes.fromhex(tx_hash)
            assert verify_inclusion(leaf, index, total, path, root)
            assert not verify_inclusion(hashlib.sha256(leaf).digest(), index, total, path, root)
            if total > 1:
                assert not verify_inclusion(leaf, (index + 1) % total, total, path, root)
    status, body = node.get(f"/txs/{'ab' * 32}/proof")
    assert_error(status, body, 404, "not_found")


def test_proof_of_a_pending_transaction_is_not_found(node: NodeProcess, chain_id: str) -> None:
    sender = key("proof_pending")
    nonce = next_nonce(node, sender)
    later = transfer(chain_id, sender, nonce + 1, amount=3)
    node.submit(later.raw)
    status, body = node.get(f"/txs/{later.hash.hex()}/proof")
    assert_error(status, body, 404, "not_found")
    commit(node, transfer(chain_id, sender, nonce, amount=4))
    node.wait_for_tx(later.hash.hex())
    assert node.get_ok(f"/txs/{later.hash.hex()}/proof")["tx_root"]


def test_latest_and_single_blocks(node: NodeProcess, chain_id: str) -> None:
    height = ensure_blocks(node, chain_id, 2)
    latest = node.get_ok("/blocks/latest")
    assert latest == node.get_ok(f"/blocks/{height}")
    assert latest["height"] == height
    assert set(latest["header"]) == set(HEADER_KEYS)
    assert latest["header"]["height"] == height
    assert latest["header"]["chain_id"] == chain_id
    assert latest["tx_count"] == len(latest["txs"]) >= 1
    assert latest["commit"]["block_hash"] == latest["hash"]
    previous = node.get_ok(f"/blocks/{height - 1}")
    assert latest["header"]["prev_hash"] == previous["hash"]
    assert latest["last_commit"] == previous["commit"]
    assert latest["header"]["time"] > previous["header"]["time"]


def test_block_pages_cover_every_height_once(node: NodeProcess, chain_id: str) -> None:
    tip = ensure_blocks(node, chain_id, 5)
    seen: list[int] = []
    query = "/blocks?limit=2"
    pages = 0
    while True:
        page = node.get_ok(query)
        pages += 1
        assert set(page) == {"blocks", "next"}
        heights = [block["height"] for block in page["blocks"]]
        assert len(heights) <= 2
        assert heights == sorted(heights, reverse=True)
        seen += heights
        if page["next"] is None:
            break
        assert pages <= tip
        query = f"/blocks?before={page['next']}&limit=2"
    assert sorted(seen) == list(range(1, tip + 1))
    assert len(seen) == len(set(seen))
    everything = node.get_ok("/blocks?limit=100")
    if tip <= 100:
        assert [block["height"] for block in everything["blocks"]] == list(range(tip, 0, -1))
        assert everything["next"] is None
    assert node.get_ok("/blocks?before=1") == {"blocks": [], "next": None}
    beyond = node.get_ok(f"/blocks?before={tip + 1000}&limit=1")
    assert [block["height"] for block in beyond["blocks"]] == [tip]
    for query in ("/blocks?limit=0", "/blocks?limit=101", "/blocks?before=0", "/blocks?limit=x",
                  "/blocks?before=-3", f"/blocks?before={2**64}"):
        status, body = node.get(query)
        assert_error(status, body, 400, "invalid_query")


def test_raw_blocks_hash_to_their_hash_and_commits_verify(node: NodeProcess, chain_id: str) -> None:
    tip = ensure_blocks(node, chain_id, 3)
    genesis = Genesis.from_json(node.genesis())
    previous_hash = genesis.hash
    previous_commit: dict[str, Any] | None = None
    for height in range(1, tip + 1):
        view = node.get_ok(f"/blocks/{height}")
        response = http_request(f"{node.url}/blocks/{height}/raw")
        assert response.status == 200
        assert response.content_type == "application/msgpack"
        block = decode_block(response.raw, len(response.raw))
        assert block.encode() == response.raw
        assert hashlib.sha256(codec.encode(block.header.to_map())).hexdigest() == view["hash"]
        assert block.hash.hex() == view["hash"]
        assert block.header.height == height
        assert block.header.prev_hash == previous_hash
        assert {name: value.hex() if isinstance(value, bytes) else value
                for name, value in block.header.to_map().items()} == view["header"]
        commit_view = node.get_ok(f"/blocks/{height}/commit")
        assert commit_view == view["commit"]
        parsed = Commit.from_map({
            "block_hash": bytes.fromhex(commit_view["block_hash"]),
            "height": commit_view["height"],
            "round": commit_view["round"],
            "signatures": [
                {"signature": bytes.fromhex(item["signature"]), "validator": bytes.fromhex(item["validator"])}
                for item in commit_view["signatures"]
            ],
        })
        verify_commit(parsed, chain_id, block.hash, height, genesis.validators)
        if previous_commit is None:
            assert block.last_commit is None
            assert view["last_commit"] == {}
        else:
            assert view["last_commit"] == previous_commit
        previous_hash = block.hash
        previous_commit = commit_view


# --- accounts -----------------------------------------------------------------------


def test_accounts(node: NodeProcess) -> None:
    funded = node.account(UNTOUCHED.address)
    assert funded["address"] == UNTOUCHED.address.hex()
    assert funded["balance"] == UNTOUCHED_BALANCE
    assert funded["nonce"] == 0 and funded["pending_nonce"] == 0
    assert funded["roles"] == []
    unknown = node.account(hashlib.sha256(b"nobody").digest())
    assert (unknown["balance"], unknown["nonce"], unknown["roles"]) == (0, 0, [])
    validator = node.account(node.validator_key.address)
    assert "registrar" in validator["roles"]
    for address in ("xyz", "ab" * 31 + "a", "ab" * 33, "zz" * 32, "", "0x" + "ab" * 31):
        status, body = node.get(f"/accounts/{urllib.parse.quote(address)}")
        if address == "":
            assert status == 404 and is_error_body(body), body
        else:
            assert_error(status, body, 400, "invalid_query")


def test_hex_with_whitespace_is_not_an_address_or_hash(node: NodeProcess) -> None:
    """64 characters holding whitespace are not 32 bytes of hex (R5): 400 invalid_query."""
    answers = {}
    for text in ("  " + "00" * 31, "00 " * 21 + "0"):
        for route in ("/accounts/{}", "/txs/{}", "/txs/{}/proof"):
            path = route.format(urllib.parse.quote(text))
            answers[path] = node.get(path)
    wrong = {path: answer for path, answer in answers.items()
             if answer[0] != 400 or not is_error_body(answer[1])
             or answer[1]["error"]["code"] != "invalid_query"}
    assert not wrong, wrong


# --- HTTP errors --------------------------------------------------------------------


def test_unknown_routes_and_wrong_methods(node: NodeProcess) -> None:
    for path in ("/nope", "/blocks/1/nope", "/txs/", "/status/extra", "/accounts"):
        status, body = node.get(path)
        assert_error(status, body, 404, "not_found")
    for method, path, allowed in (("POST", "/status", "GET, HEAD"), ("GET", "/txs", "POST"),
                                  ("DELETE", "/blocks/1", "GET, HEAD"), ("PUT", "/txs", "POST"),
                                  ("PUT", "/txs/batch", "POST"), ("GET", "/txs/batch", "POST"),
                                  ("TRACE", "/", "GET, HEAD"), ("POST", "/blocks/latest", "GET, HEAD")):
        response = http_request(node.url + path, method, b"" if method not in ("GET", "TRACE") else None)
        assert response.status == 405, (method, path, response)
        assert is_error_body(response.body), response
        assert response.body["error"]["code"] == "method_not_allowed"
        headers = {name.lower(): value for name, value in response.headers.items()}
        assert headers.get("allow") == allowed, (method, path, response.headers)  # RFC 9110 §15.5.6
    assert_serving(node)


@pytest.mark.parametrize("path", ["/blocks?before=", "/blocks?limit=", "/validators?height="])
def test_an_empty_parameter_is_an_invalid_query(node: NodeProcess, path: str) -> None:
    status, body = node.get(path)
    assert_error(status, body, 400, "invalid_query")
    assert path.rpartition("?")[2].removesuffix("=") in body["error"]["message"]


@pytest.mark.parametrize("suffix", ["", "/raw", "/commit"])
def test_bad_and_missing_heights(node: NodeProcess, suffix: str) -> None:
    for height in ("abc", "0", "-1", "1.5", "1e3", str(2**63), "9" * 30, "%20"):
        status, body = node.get(f"/blocks/{height}{suffix}")
        assert_error(status, body, 400, "invalid_query")
    status, body = node.get(f"/blocks/{10**12}{suffix}")
    assert_error(status, body, 404, "not_found")
    assert_serving(node)


def test_height_with_a_unicode_digit_is_an_invalid_query(node: NodeProcess) -> None:
    """`²`, `①` pass str.isdigit() but are not integers: 400 invalid_query, never a 500."""
    answers = {}
    for height in ("\u00b2", "\u2460", "1\u00b2"):
        quoted = urllib.parse.quote(height)
        for path in (f"/blocks/{quoted}", f"/blocks/{quoted}/raw", f"/blocks?limit={quoted}",
                     f"/blocks?before={quoted}", f"/validators?height={quoted}"):
            answers[path] = node.get(path)
    wrong = {path: answer for path, answer in answers.items()
             if answer[0] != 400 or not is_error_body(answer[1])
             or answer[1]["error"]["code"] != "invalid_query"}
    assert not wrong, wrong
    assert_serving(node)


def test_transaction_lookup_errors(node: NodeProcess) -> None:
    status, body = node.get(f"/txs/{'cd' * 32}")
    assert_error(status, body, 404, "not_found")
    for text in ("abc", "zz" * 32, "ab" * 33):
        status, body = node.get(f"/txs/{text}")
        assert_error(status, body, 400, "invalid_query")


@pytest.mark.parametrize("path", ["/txs", "/txs/batch"])
def test_wrong_content_type_and_bad_json(node: NodeProcess, path: str) -> None:
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "image/png"):
        status, body = node.post(path, b"\x80", content_type)
        assert_error(status, body, 415, "unsupported_media_type")
    for bad in (b"{not json", b"\xff\xfe", b'"tx"', b"[]", b'{"tx": 5}', b'{"tx": "xyz"}',
                b'{"txs": 5}', b"{}"):
        status, body = node.post(path, bad, "application/json")
        assert_error(status, body, 400, "malformed")
    assert_serving(node)


def test_json_beyond_the_parser_limits_is_malformed(node: NodeProcess) -> None:
    """JSON nested past the recursion limit, or with an integer past Python's 4300-digit
    limit, is a client error (400 malformed), never a 500."""
    bodies = {
        "nested": b"[" * 100_000,
        "huge_integer_tx": b'{"tx": 1' + b"0" * 5000 + b"}",
        "huge_integer_txs": b'{"txs": [1' + b"0" * 5000 + b"]}",
    }
    answers = {
        (name, path): node.post(path, body, "application/json")
        for name, body in bodies.items()
        for path in ("/txs", "/txs/batch")
    }
    wrong = {case: answer for case, answer in answers.items()
             if answer[0] != 400 or not is_error_body(answer[1])
             or answer[1]["error"]["code"] != "malformed"}
    assert not wrong, wrong
    assert_serving(node)


def test_body_over_the_default_limit(node: NodeProcess) -> None:
    status, body = node.post("/txs", b"\x00" * (DEFAULT_MAX_BODY + 1), "application/msgpack")
    assert_error(status, body, 413, "body_too_large")
    assert_serving(node)


def test_body_limit_from_config(tmp_path) -> None:
    limit = 2048
    with NodeProcess(tmp_path / "small", config={"http": {"max_body_bytes": limit}}) as small:
        status, body = small.get("/blocks/latest")
        assert_error(status, body, 404, "not_found")
        assert small.get_ok("/blocks") == {"blocks": [], "next": None}
        for path in ("/txs", "/txs/batch"):
            status, body = small.post(path, b"\x00" * (limit + 1), "application/msgpack")
            assert_error(status, body, 413, "body_too_large")
            status, body = small.post(path, {"tx": "00" * limit})
            assert_error(status, body, 413, "body_too_large")
            status, body = small.post(path, b"\xc1" * limit, "application/msgpack")
            assert_error(status, body, 400, "malformed")
        validator = small.validator_key
        chain_id = small.status()["chain_id"]
        tx = transfer(chain_id, validator, 0, amount=7)
        assert len(tx.raw) < limit
        assert small.wait_for_tx(small.submit(tx.raw))["result"]["ok"] is True


# --- fuzzing ------------------------------------------------------------------------

FUZZ_SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@FUZZ_SETTINGS
@given(body=st.binary(max_size=512), content_type=st.sampled_from(
    ["application/msgpack", "application/octet-stream", "application/json", "text/plain"]))
def test_fuzz_post_txs(node: NodeProcess, body: bytes, content_type: str) -> None:
    for path in ("/txs", "/txs/batch"):
        status, answer = node.post(path, body, content_type)
        assert status < 500, (path, body, answer)
        if status >= 400:
            assert is_error_body(answer), (path, body, answer)
        else:
            # Random bytes are never a signed transaction; a batch may still parse
            # (e.g. an empty array) and then reports an error per item.
            assert path == "/txs/batch" and status == 200, (path, body, answer)
            assert all(is_error_body(result) for result in answer["results"]), answer


ROUTES = ("/blocks/{}", "/blocks/{}/raw", "/blocks/{}/commit", "/txs/{}", "/txs/{}/proof",
          "/accounts/{}", "/{}", "/blocks/latest/{}")


@FUZZ_SETTINGS
@given(route=st.sampled_from(ROUTES), segment=st.text(max_size=80),
       query=st.dictionaries(st.sampled_from(["before", "limit", "x"]), st.text(max_size=30), max_size=3))
@example(route="/blocks/{}", segment="\u00b2", query={})  # found by this test: "²".isdigit() is True
def test_fuzz_get_routes(node: NodeProcess, route: str, segment: str, query: dict[str, str]) -> None:
    path = route.format(urllib.parse.quote(segment, safe=""))
    for url in (path, "/blocks"):
        if query:
            url += "?" + urllib.parse.urlencode(query)
        response = http_request(node.url + url)
        assert response.status < 500, (url, response)
        if response.status >= 400:
            assert is_error_body(response.body), (url, response)


# --- idleness -----------------------------------------------------------------------


def test_idle_node_makes_no_blocks(node: NodeProcess, chain_id: str) -> None:
    """R29: once the last transaction is final, an idle chain makes no blocks."""
    sender = key("idle")
    commit(node, transfer(chain_id, sender, next_nonce(node, sender), amount=9))
    assert_nothing_pending(node)
    status = node.status()
    # The one deliberate timed wait of the suite: absence of blocks can only be shown by
    # watching the height for a bounded window (3 s), polled every 0.2 s.
    window_end = time.monotonic() + 3.0
    while time.monotonic() < window_end:
        now = node.status()
        assert now["height"] == status["height"], (status, now)
        assert now["latest_block_hash"] == status["latest_block_hash"]
        time.sleep(0.2)

"""Hypothesis fuzzing of every decoder that reads hostile input (PROTOCOL R1, R2, R8, R10,
R23, R24, R26, R27, R31, R33; docs/security.md).

Each decoder gets random input, random values of the right shape, and mutations of
valid encodings; it may refuse them only with its own clean error (`CodecError`,
`AdmissionError`, `InvalidBlock`, `MessageRejected`, `InvalidGenesis`, `ConfigError`,
`FrameError`/`ConnectionClosed`, `MessageError`, `HandshakeError`, `ChannelError`,
`KeystoreError`), and what it accepts must re-encode to the input. The HTTP part
sends random bodies, query strings and path segments to a real node: every answer is
below 500 and every error has the JSON shape `{"error": {"code", "message"}}`.

Every example is counted; `pytest -s tests/test_fuzz_decoders.py` prints the
iterations per decoder and the total at the end of the module.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import string
import urllib.parse
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from client.keystore import KeystoreError, encrypt_key, load_key_file, read_key_info
from consensus.proposal import Proposal
from consensus.vote import Vote
from marketplace_tx.chain.block import (
    HEADER_KEYS,
    Block,
    Commit,
    CommitSignature,
    Header,
    decode_block,
    decode_commit,
)
from marketplace_tx.chain.genesis import Genesis, GenesisAccount, apply_genesis
from marketplace_tx.chain.params import Params
from marketplace_tx.chain.transaction import sign_transaction
from marketplace_tx.primitives import codec
from marketplace_tx.primitives.crypto import KeyPair, sha256, signing_bytes
from marketplace_tx.primitives.errors import (
    ADMISSION_CODES,
    AdmissionError,
    CodecError,
    InvalidBlock,
    InvalidGenesis,
    RuleError,
)
from marketplace_tx.rules.accounts import Account
from marketplace_tx.rules.admission import check_stateless
from marketplace_tx.rules.context import BlockContext
from marketplace_tx.rules.evidence import check_evidence, make_evidence
from marketplace_tx.rules.execution import HANDLERS
from marketplace_tx.rules.schema import SCHEMAS, check_payload
from marketplace_tx.rules.state import MemoryStateReader, State
from mempool.pool import Mempool
from node.config import ConfigError, NodeConfig, load_config, option_names, render_config
from node.consensus_messages import (
    MessageRejected,
    parse_proposal,
    parse_vote,
    proposal_body,
    vote_body,
)
from node.http.openapi import OPERATIONS
from p2p.channel import SecureChannel
from p2p.errors import ChannelError, ConnectionClosed, FrameError, HandshakeError, MessageError
from p2p.framing import encode_frame, parse_length, read_frame, split_frame
from p2p.handshake import Hello, _parse_auth, derive_session_keys
from p2p.messages import (
    KINDS,
    decode_message,
    encode_message,
    peers_addresses,
    peers_body,
    status_height,
)
from tests.e2e.node_process import NodeProcess, is_error_body

COUNTS: Counter[str] = Counter()
"""Examples run per decoder, printed at the end of the module."""

CHAIN = "marketchain-fuzz"
PARAMS = Params()
KEYS = [KeyPair.from_seed(sha256(b"fuzz/" + bytes([index]))) for index in range(4)]
VALIDATORS = tuple(sorted(key.address for key in KEYS))
KEY_OF = {key.address: key for key in KEYS}
SENDER = KEYS[0]


def fuzz_settings(examples: int) -> Callable[[Any], Any]:
    """Settings of one fuzz test: `examples` examples, no deadline (loaded CI machines)."""
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                               HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


@pytest.fixture(scope="module", autouse=True)
def print_iteration_counts() -> Any:
    yield
    width = max((len(name) for name in COUNTS), default=10)
    print("\n\nfuzz iterations per decoder (tests/test_fuzz_decoders.py):")
    for name, count in sorted(COUNTS.items()):
        print(f"  {name:<{width}}  {count:>6}")
    print(f"  {'total':<{width}}  {sum(COUNTS.values()):>6}")


# --- strategies -----------------------------------------------------------------------

TEXT = st.text(max_size=16)
"""Valid Unicode text (what a decoder of UTF-8 bytes can produce)."""
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=16)
"""Text with lone surrogates too: what `json.loads` can produce from `\\ud800` escapes."""
UINT64 = st.integers(0, 2**64 - 1)
CODEC_INT = st.integers(-(2**63), 2**64 - 1)
SMALL_UINT = st.integers(0, 5) | st.sampled_from([2**7, 2**8, 2**16, 2**32, 2**63 - 1, 2**63, 2**64 - 1])
HASH32 = st.binary(min_size=32, max_size=32)

codec_leaves = st.none() | st.booleans() | CODEC_INT | st.binary(max_size=40) | TEXT
codec_values = st.recursive(
    codec_leaves,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(TEXT, children, max_size=5),
    max_leaves=16,
)
"""Values `codec.encode` accepts."""

loose_leaves = (
    codec_leaves
    | st.floats()
    | st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=8))
)
loose_values = st.recursive(
    loose_leaves,
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(TEXT | CODEC_INT | st.binary(max_size=4), children, max_size=5),
    max_leaves=16,
)
loose_msgpack = st.builds(
    lambda value, bin_type: msgpack.packb(value, use_bin_type=bin_type), loose_values, st.booleans()
)
"""Msgpack of anything msgpack can say: floats, extension types, non-text keys, unsorted maps."""

json_leaves = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | ANY_TEXT
)
json_values = st.recursive(
    json_leaves,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(ANY_TEXT, children, max_size=4),
    max_leaves=12,
)
"""Values `json.loads` can produce."""

INTERESTING_BYTES = [0x00, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xC3, 0xC4, 0xC5,
                     0xC6, 0xC7, 0xC8, 0xC9, 0xCA, 0xCB, 0xCC, 0xCD, 0xCE, 0xCF, 0xD0, 0xD3, 0xD4, 0xD8,
                     0xD9, 0xDA, 0xDB, 0xDC, 0xDD, 0xDE, 0xDF, 0xE0, 0xFF]
"""Msgpack type bytes and boundaries: the mutations most likely to change the structure."""


@st.composite
def mutated(draw: st.DrawFn, valid: st.SearchStrategy[bytes]) -> bytes:
    """A valid encoding with one to four random edits."""
    data = bytearray(draw(valid))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "append", "splice"]))
        position = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and data:
            data[position] = draw(st.sampled_from(INTERESTING_BYTES) | st.integers(0, 255))
        elif kind == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=4))
        elif kind == "delete" and data:
            del data[position:position + draw(st.integers(1, 8))]
        elif kind == "truncate":
            del data[position:]
        elif kind == "append":
            data += draw(st.binary(min_size=1, max_size=4))
        elif kind == "splice" and data:
            end = draw(st.integers(position, len(data)))
            data[draw(st.integers(0, len(data))):0] = data[position:end]
    return bytes(data)


def either(valid: st.SearchStrategy[Any], wild: st.SearchStrategy[Any] = codec_values) -> st.SearchStrategy[Any]:
    """Mostly well-typed values, sometimes anything."""
    return st.one_of(valid, valid, wild)


@st.composite
def maybe_missing_map(draw: st.DrawFn, fields: dict[str, st.SearchStrategy[Any]]) -> dict[str, Any]:
    """A map of `fields`, each sometimes left out, sometimes with an extra key."""
    value = {name: draw(strategy) for name, strategy in fields.items() if draw(st.integers(0, 9)) > 0}
    if draw(st.integers(0, 9)) == 0:
        value[draw(TEXT)] = draw(codec_values)
    return value


# --- 1. codec ------------------------------------------------------------------------


@fuzz_settings(1200)
@given(data=st.binary(max_size=200) | loose_msgpack | mutated(codec_values.map(codec.encode)))
def test_codec_decode(data: bytes) -> None:
    """R1, R2: `decode` raises only CodecError, and what it accepts re-encodes to the input."""
    COUNTS["codec.decode"] += 1
    try:
        value = codec.decode(data)
    except CodecError as error:
        assert error.code == "malformed"
        return
    assert codec.encode(value) == data
    with pytest.raises(CodecError):
        codec.decode(data + b"\xc0")  # R2: trailing bytes


@fuzz_settings(200)
@given(value=codec_values)
def test_codec_round_trip_and_length_limit(value: Any) -> None:
    COUNTS["codec.decode (round trip, max_length)"] += 1
    data = codec.encode(value)
    assert codec.decode(data) == value
    with pytest.raises(CodecError):
        codec.decode(data, max_length=len(data) - 1)


@fuzz_settings(100)
@given(value=st.none() | st.integers() | ANY_TEXT | st.lists(st.integers(0, 255), max_size=4))
def test_codec_decode_refuses_non_bytes(value: Any) -> None:
    COUNTS["codec.decode (non-bytes input)"] += 1
    with pytest.raises(CodecError):
        codec.decode(value)


# --- 2. transactions and admission -----------------------------------------------------

ITEM = "item-1"
VALID_PAYLOADS: dict[str, dict[str, Any]] = {
    "transfer": {"to": KEYS[1].address, "amount": 5, "memo": "thanks"},
    "role_grant": {"account": KEYS[1].address, "role": "merchant", "evidence_hash": b"\x01" * 32},
    "validator_vote": {"action": "add", "validator": KEYS[2].address},
    "shop_create": {"name": "shop", "points_bps": 100, "max_redeem_bps": 500, "arbiters": [KEYS[3].address]},
    "listing_create": {"shop_id": b"\x02" * 32, "title": "tea", "price": 10, "stock": 1,
                       "item_ids": [ITEM], "tags": ["green"]},
    "listing_update": {"listing_id": b"\x03" * 32, "stock_delta": -1},
    "order_place": {"listing_id": b"\x03" * 32, "quantity": 1, "max_unit_price": 10, "shipping": b"sealed",
                    "arbiter": KEYS[3].address},
    "order_ship": {"order_id": b"\x04" * 32, "carrier": KEYS[2].address, "tracking": "TRACK1"},
    "shipment_update": {"order_id": b"\x04" * 32, "status": "in_transit", "location": "Lyon"},
    "dispute_resolve": {"order_id": b"\x04" * 32, "buyer_amount": 3, "ruling": "split"},
    "review_submit": {"order_id": b"\x04" * 32, "rating": 5, "text": "good"},
    "item_event": {"item_id": ITEM, "kind": "inspected", "location": "port"},
}
VALID_TXS = [sign_transaction(SENDER, CHAIN, tx_type, payload, 3, 10) for tx_type, payload in VALID_PAYLOADS.items()]
VALID_RAW = st.sampled_from([tx.raw for tx in VALID_TXS])
ADMISSION_RESULT_CODES = set(ADMISSION_CODES) | {"invalid_field", "insufficient_funds"}
"""Admission codes (R12), the schema's `invalid_field`, and `insufficient_funds` for an unpayable fee (R10)."""


def field_values(tx_type: str, name: str) -> st.SearchStrategy[Any]:
    """Values for one payload field: of its declared kind (in and out of bounds) or anything."""
    spec = SCHEMAS[tx_type].fields.get(name)
    kind = spec.kind if spec else "any"
    by_kind: dict[str, st.SearchStrategy[Any]] = {
        "bin32": HASH32 | st.binary(max_size=40),
        "bin": st.binary(max_size=1100),
        "str": TEXT | st.text(min_size=60, max_size=300) | st.sampled_from(["merchant", "add", "delivered", "sold"]),
        "uint": SMALL_UINT,
        "int": CODEC_INT,
        "bool": st.booleans(),
        "list": st.lists(HASH32 | TEXT | st.sampled_from([ITEM, "a b"]), max_size=10),
        "any": codec_values,
    }
    return either(by_kind[kind])


@st.composite
def signed_envelopes(draw: st.DrawFn) -> bytes:
    """A canonical envelope with random fields, signed by `SENDER` whatever it holds."""
    tx_type = draw(st.sampled_from(sorted(HANDLERS)) | TEXT)
    names = list(SCHEMAS[tx_type].fields) if tx_type in SCHEMAS else []
    payload = draw(maybe_missing_map({name: field_values(tx_type, name) for name in names}))
    envelope = draw(maybe_missing_map({
        "chain_id": either(st.sampled_from([CHAIN, CHAIN + "x", ""])),
        "fee": either(SMALL_UINT),
        "nonce": either(SMALL_UINT),
        "payload": either(st.just(payload)),
        "sender": either(st.just(SENDER.address)),
        "type": either(st.just(tx_type)),
    }))
    unsigned = {key: value for key, value in envelope.items() if key != "sig"}
    try:
        signature = SENDER.sign(signing_bytes("tx", unsigned))
    except CodecError:
        signature = b"\x00" * 64
    envelope["sig"] = draw(either(st.just(signature), st.binary(max_size=70)))
    return codec.encode(envelope)


def fresh_mempool(balance: int) -> Mempool:
    return Mempool(CHAIN, PARAMS, lambda address: Account(balance, 0), lambda tx_hash: False)


@fuzz_settings(600)
@given(data=st.binary(max_size=300) | mutated(VALID_RAW) | signed_envelopes(),
       balance=st.sampled_from([0, 10, 10**9]))
def test_transaction_decode_and_admission(data: bytes, balance: int) -> None:
    """R8, R10: `check_stateless` and the mempool refuse only with AdmissionError and an R12 code."""
    COUNTS["transaction admission (check_stateless, Mempool.add)"] += 1
    try:
        tx = check_stateless(data, CHAIN, PARAMS)
    except AdmissionError as error:
        assert error.code in ADMISSION_RESULT_CODES, error
        accepted = False
    else:
        accepted = True
        assert tx.raw == data and tx.hash == sha256(data)
        assert tx.chain_id == CHAIN and tx.type in HANDLERS and tx.fee >= PARAMS.min_fee
        assert tx.has_valid_signature()
        check_payload(tx.type, tx.payload)
        assert codec.encode(tx.to_map()) == data
    try:
        pending = fresh_mempool(balance).add(data)
    except AdmissionError as error:
        assert error.code in ADMISSION_RESULT_CODES, error
    else:
        assert accepted and pending.raw == data


@fuzz_settings(300)
@given(tx_type=st.sampled_from(sorted(SCHEMAS)), data=st.data())
def test_payload_schema(tx_type: str, data: st.DataObject) -> None:
    """R10: a payload of any shape is accepted or refused with RuleError `invalid_field`."""
    COUNTS["schema.check_payload"] += 1
    payload = data.draw(maybe_missing_map({name: field_values(tx_type, name) for name in SCHEMAS[tx_type].fields})
                        | codec_values)
    try:
        check_payload(tx_type, payload)
    except RuleError as error:
        assert error.code == "invalid_field"


# --- 3. blocks, headers, commits ------------------------------------------------------


@st.composite
def commits(draw: st.DrawFn) -> Commit:
    signers = sorted(draw(st.sets(st.sampled_from(VALIDATORS), min_size=1)))
    return Commit(draw(HASH32), draw(st.integers(1, 1000)), draw(st.integers(0, 5)),
                  tuple(CommitSignature(signer, draw(st.binary(min_size=64, max_size=64))) for signer in signers))


@st.composite
def blocks(draw: st.DrawFn) -> Block:
    height = draw(st.integers(1, 1000))
    header = Header(CHAIN, height, draw(st.integers(0, 2**63)), *(draw(HASH32) for _ in range(9)))
    last_commit = None if height == 1 else draw(commits())
    txs = tuple(draw(st.lists(VALID_RAW, max_size=3)))
    evidence = tuple(draw(st.lists(st.dictionaries(TEXT, codec_values, max_size=3), max_size=2)))
    return Block(header, txs, last_commit, evidence)


def header_maps() -> st.SearchStrategy[Any]:
    fields = {name: either(HASH32) for name in HEADER_KEYS}
    fields.update(chain_id=either(st.just(CHAIN)), height=either(SMALL_UINT), time=either(SMALL_UINT))
    return maybe_missing_map(fields) | codec_values


def commit_maps() -> st.SearchStrategy[Any]:
    signature = maybe_missing_map({"signature": either(st.binary(min_size=64, max_size=64)),
                                   "validator": either(st.sampled_from(VALIDATORS))})
    return maybe_missing_map({
        "block_hash": either(HASH32), "height": either(SMALL_UINT), "round": either(SMALL_UINT),
        "signatures": either(st.lists(either(signature), max_size=4)),
    }) | commits().map(Commit.to_map) | codec_values


@fuzz_settings(500)
@given(data=st.binary(max_size=300) | mutated(blocks().map(Block.encode))
       | st.builds(lambda header, commit, txs, evidence: codec.encode(
           {"evidence": evidence, "header": header, "last_commit": commit, "txs": txs}),
           header_maps(), commit_maps() | st.just({}), either(st.lists(st.binary(max_size=8), max_size=3)),
           either(st.lists(codec_values, max_size=2))))
def test_decode_block(data: bytes) -> None:
    """R24: `decode_block` raises only InvalidBlock; a decoded block re-encodes to its bytes."""
    COUNTS["decode_block"] += 1
    try:
        block = decode_block(data, PARAMS.max_block_bytes)
    except InvalidBlock:
        return
    assert block.encode() == data
    assert len(block.hash) == 32


@fuzz_settings(200)
@given(value=header_maps())
def test_header_from_map(value: Any) -> None:
    COUNTS["Header.from_map"] += 1
    try:
        header = Header.from_map(value)
    except InvalidBlock:
        return
    assert header.to_map() == value and len(header.hash) == 32


@fuzz_settings(200)
@given(value=commit_maps())
def test_commit_from_map(value: Any) -> None:
    COUNTS["Commit.from_map"] += 1
    try:
        commit = Commit.from_map(value)
    except InvalidBlock:
        return
    assert commit.to_map() == value


@fuzz_settings(300)
@given(data=st.binary(max_size=200) | mutated(commits().map(Commit.encode)) | commit_maps().map(codec.encode))
def test_decode_commit(data: bytes) -> None:
    COUNTS["decode_commit"] += 1
    try:
        commit = decode_commit(data)
    except InvalidBlock:
        return
    assert commit.encode() == data


# --- 4. votes and proposals -------------------------------------------------------------

VOTE_TYPES = st.sampled_from(["prevote", "precommit"])


def vote_maps() -> st.SearchStrategy[Any]:
    return maybe_missing_map({
        "block_hash": either(st.none() | HASH32), "chain_id": either(st.just(CHAIN)),
        "height": either(SMALL_UINT), "round": either(SMALL_UINT), "type": either(VOTE_TYPES),
    })


@fuzz_settings(400)
@given(body=maybe_missing_map({"validator": either(st.sampled_from(VALIDATORS)), "vote": either(vote_maps()),
                               "signature": either(st.binary(min_size=64, max_size=64))})
       | codec_values
       | st.builds(lambda key, vote: vote_body(key.address, vote, vote.sign(key)), st.sampled_from(KEYS),
                   st.builds(Vote, st.just(CHAIN), SMALL_UINT.filter(lambda n: n < 2**63),
                             st.integers(0, 9), VOTE_TYPES, st.none() | HASH32)))
def test_parse_vote(body: Any) -> None:
    """R26: a vote body is refused with MessageRejected or yields a well-typed vote."""
    COUNTS["parse_vote"] += 1
    try:
        validator, vote, signature = parse_vote(body)
    except MessageRejected:
        return
    assert len(validator) == 32 and len(signature) == 64
    assert vote.type in ("prevote", "precommit") and isinstance(vote.chain_id, str)
    assert vote.block_hash is None or len(vote.block_hash) == 32
    assert isinstance(vote.verify(validator, signature), bool)


def proposal_maps() -> st.SearchStrategy[Any]:
    return maybe_missing_map({
        "block_hash": either(HASH32), "chain_id": either(st.just(CHAIN)), "height": either(SMALL_UINT),
        "pol_round": either(st.integers(-3, 3) | CODEC_INT), "round": either(SMALL_UINT),
    })


@fuzz_settings(300)
@given(body=maybe_missing_map({"proposal": either(proposal_maps()),
                               "signature": either(st.binary(min_size=64, max_size=64)),
                               "block": either(mutated(blocks().map(Block.encode)) | st.binary(max_size=64))})
       | codec_values
       | st.builds(lambda block, round_: proposal_body(
           Proposal(CHAIN, block.header.height, round_, -1, block.hash),
           Proposal(CHAIN, block.header.height, round_, -1, block.hash).sign(SENDER), block.encode()),
           blocks(), st.integers(0, 5)))
def test_parse_proposal(body: Any) -> None:
    """R26: a proposal body is refused with MessageRejected; its block with InvalidBlock."""
    COUNTS["parse_proposal"] += 1
    try:
        proposal, signature, raw = parse_proposal(body)
    except MessageRejected:
        return
    assert proposal.pol_round >= -1 and len(signature) == 64 and len(proposal.block_hash) == 32
    assert isinstance(proposal.verify(SENDER.address, signature), bool)
    try:
        decode_block(raw, PARAMS.max_block_bytes)
    except InvalidBlock:
        pass


# --- 5. evidence ------------------------------------------------------------------------


def evidence_state() -> State:
    state = State(MemoryStateReader())
    apply_genesis(state, Genesis(CHAIN, 1, VALIDATORS, (GenesisAccount(SENDER.address, 10**9),)))
    return state


EVIDENCE_BLOCK = BlockContext(CHAIN, 10, 10_000, VALIDATORS[0], PARAMS)


def signed_vote(signer: KeyPair, vote: dict[str, Any]) -> dict[str, Any]:
    """`vote` with `signer`'s signature (kind `vote`), whatever its fields hold."""
    return {**vote, "signature": signer.sign(signing_bytes("vote", vote))}


@st.composite
def evidence_items(draw: st.DrawFn) -> Any:
    """Two votes of one signer sharing (chain, height, round, type), well-typed or not, mostly
    validly signed so that the checks after the signature are reached too."""
    signer = draw(st.sampled_from(KEYS))
    shared = draw(maybe_missing_map({
        "chain_id": either(st.just(CHAIN)), "height": either(st.integers(1, 12)),
        "round": either(st.integers(0, 3)), "type": either(VOTE_TYPES),
    }))
    votes = []
    for _ in range(2):
        vote = {**shared, "block_hash": draw(either(st.none() | HASH32))}
        if draw(st.integers(0, 5)) == 0:
            vote[draw(st.sampled_from(sorted(vote)))] = draw(codec_values)
        if draw(st.integers(0, 5)) == 0:
            vote["signature"] = draw(st.binary(max_size=70))
        else:
            vote = signed_vote(signer, vote)
        votes.append(vote)
    item = make_evidence(signer.address, *votes) if draw(st.booleans()) else {
        "validator": signer.address, "vote_a": votes[0], "vote_b": votes[1]}
    if draw(st.integers(0, 5)) == 0:
        item["validator"] = draw(either(st.sampled_from(VALIDATORS)))
    return item


@fuzz_settings(400)
@given(item=evidence_items() | codec_values)
def test_check_evidence(item: Any) -> None:
    """R27: evidence of any shape is refused with InvalidBlock or names a validator of the set."""
    COUNTS["check_evidence"] += 1
    try:
        validator = check_evidence(evidence_state(), EVIDENCE_BLOCK, item)
    except InvalidBlock:
        return
    assert validator in VALIDATORS and item["validator"] == validator


MALFORMED_VOTE_FIELDS = {
    "round is text": {"round": "x"},
    "round is negative": {"round": -1},
    "height is a boolean": {"height": True},
    "block_hash is neither nil nor 32 bytes": {"block_hash": b"short"},
}


@pytest.mark.parametrize("case", sorted(MALFORMED_VOTE_FIELDS))
def test_evidence_votes_must_be_r26_votes(case: str) -> None:
    COUNTS["check_evidence (malformed signed votes)"] += 1
    signer = KEY_OF[VALIDATORS[0]]
    votes = []
    for block_hash in (b"\x0a" * 32, b"\x0b" * 32):
        vote = {"block_hash": block_hash, "chain_id": CHAIN, "height": 5, "round": 0, "type": "prevote"}
        vote.update(MALFORMED_VOTE_FIELDS[case])
        if "block_hash" in MALFORMED_VOTE_FIELDS[case]:
            vote["block_hash"] += block_hash[:1]
        votes.append(signed_vote(signer, vote))
    with pytest.raises(InvalidBlock):
        check_evidence(evidence_state(), EVIDENCE_BLOCK, make_evidence(signer.address, *votes))


# --- 6. genesis -------------------------------------------------------------------------


def valid_genesis_json() -> dict[str, Any]:
    return Genesis(CHAIN, 1_700_000_000_000, VALIDATORS,
                   (GenesisAccount(SENDER.address, 10**9, ("merchant",)),)).to_json()


@st.composite
def genesis_documents(draw: st.DrawFn) -> Any:
    """A valid genesis document with one to three fields replaced or added."""
    document = valid_genesis_json()
    for _ in range(draw(st.integers(1, 3))):
        value = draw(json_values | st.sampled_from([VALIDATORS[0].hex(), "A" * 64, -1, 2**53, 2**64, 1.5]))
        accounts, params, validators = document["accounts"], document["params"], document["validators"]
        targets = ["top"]
        if isinstance(accounts, list) and accounts and isinstance(accounts[0], dict):
            targets.append("account")
        if isinstance(params, dict) and params:
            targets.append("param")
        if isinstance(validators, list):
            targets.append("validator")
        where = draw(st.sampled_from(targets))
        if where == "top":
            document[draw(st.sampled_from(sorted(document)) | ANY_TEXT)] = value
        elif where == "account":
            accounts[0][draw(st.sampled_from(["address", "balance", "roles"]) | ANY_TEXT)] = value
        elif where == "param":
            params[draw(st.sampled_from(sorted(params)))] = value
        else:
            validators.append(value)
    return document


@fuzz_settings(500)
@given(value=genesis_documents() | json_values)
def test_genesis_from_json(value: Any) -> None:
    """R33: a genesis document of any JSON shape is refused with InvalidGenesis."""
    COUNTS["Genesis.from_json"] += 1
    try:
        genesis = Genesis.from_json(value)
    except InvalidGenesis:
        return
    assert Genesis.from_json(genesis.to_json()) == genesis
    assert len(genesis.hash) == 32


def test_genesis_with_a_lone_surrogate_chain_id() -> None:
    COUNTS["Genesis.from_json (lone surrogate chain_id)"] += 1
    document = valid_genesis_json()
    document["chain_id"] = json.loads('"\\ud800"')
    with pytest.raises(InvalidGenesis):
        Genesis.from_json(document)


# --- 7. config ----------------------------------------------------------------------------

CONFIG_HOME: dict[str, Path] = {}
"""One scratch directory per file-based decoder, reused across examples."""

TOML_SCALARS = st.one_of(
    st.integers(-(2**63), 2**63 - 1).map(str),
    TEXT.map(lambda text: json.dumps(text)),
    st.sampled_from(["true", "false", "1.5", "inf", "nan", "1979-05-27T07:32:00Z", "07:32:00", "[]",
                     '["127.0.0.1:1"]', '["x"]', "[1, 2]", "{}", '{a = 1}', '"plain"', '"json"', '"p2p:debug"',
                     '"*:warning,p2p:nope"', '"debug"', "0", "65536", "-1", '"ab@h:1"', f'["{"ab" * 32}@[::1]:80"]']),
)


@st.composite
def toml_documents(draw: st.DrawFn) -> str:
    names = option_names()
    lines = []
    if draw(st.booleans()):
        lines.append(f"moniker = {draw(TOML_SCALARS)}")
    sections: dict[str, list[str]] = {}
    for _ in range(draw(st.integers(0, 6))):
        option = draw(st.sampled_from(names) | st.builds(lambda a, b: f"{a}.{b}", TEXT, TEXT))
        section, _, name = option.rpartition(".")
        if section:
            sections.setdefault(section, []).append(f"{json.dumps(name)} = {draw(TOML_SCALARS)}")
    for section, entries in sections.items():
        lines.append(f"[{json.dumps(section)}]")
        lines.extend(dict.fromkeys(entries))
    return "\n".join(lines) + "\n"


@fuzz_settings(400)
@given(text=toml_documents() | TEXT | mutated(toml_documents().map(str.encode)).map(
    lambda data: data.decode("utf-8", "replace")))
def test_load_config(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    """`load_config` refuses any config.toml it cannot use with ConfigError naming the option."""
    COUNTS["load_config"] += 1
    home = CONFIG_HOME.setdefault("home", tmp_path_factory.mktemp("config-fuzz"))
    (home / "config.toml").write_text(text)
    try:
        config = load_config(home)
    except ConfigError:
        return
    assert isinstance(config, NodeConfig)
    rendered = render_config(config)  # what `marketchain config show` prints: loadable again
    if "\x7f" not in rendered:  # known bug: test_rendered_config_is_loadable_toml
        (home / "config.toml").write_text(rendered)
        assert load_config(home) == config


def test_rendered_config_is_loadable_toml(tmp_path: Path) -> None:
    COUNTS["load_config (render round trip, DEL)"] += 1
    (tmp_path / "config.toml").write_text('moniker = "a\\u007fb"\n')
    config = load_config(tmp_path)
    (tmp_path / "config.toml").write_text(render_config(config))
    assert load_config(tmp_path) == config


@fuzz_settings(100)
@given(data=st.binary(max_size=100))
def test_load_config_raw_bytes(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    COUNTS["load_config (raw bytes)"] += 1
    home = CONFIG_HOME.setdefault("raw", tmp_path_factory.mktemp("config-raw"))
    (home / "config.toml").write_bytes(data)
    try:
        load_config(home)
    except ConfigError:
        pass


# --- 8. peer-to-peer frames and messages ----------------------------------------------------

message_bytes = st.builds(lambda kind, body: encode_message(kind, body), st.sampled_from(sorted(KINDS - {"peers"})),
                          codec_values) | st.just(encode_message("peers", peers_body(["ab" * 32 + "@h:1"])))
hello_bytes = st.builds(lambda port: Hello(KEYS[0].address, KEYS[1].address, CHAIN, sha256(b"g"),
                                           listen_port=port).encode(), st.integers(0, 65535))


@fuzz_settings(600)
@given(data=st.binary(max_size=120) | loose_msgpack | mutated(message_bytes) | mutated(hello_bytes))
def test_p2p_message_and_hello_decoders(data: bytes) -> None:
    """R31, R32: envelopes, hellos and handshake proofs are refused only with their P2P errors."""
    COUNTS["p2p decode_message / Hello.decode / handshake proof"] += 1
    try:
        message = decode_message(data)
    except MessageError:
        pass
    else:
        assert encode_message(message.kind, message.body) == data
        status_height(message.body)
    try:
        hello = Hello.decode(data)
    except HandshakeError:
        pass
    else:
        assert hello.encode() == data
    try:
        assert len(_parse_auth(data)) == 64
    except HandshakeError:
        pass


@fuzz_settings(300)
@given(body=maybe_missing_map({"addresses": either(st.lists(TEXT | st.sampled_from(
    ["ab" * 32 + "@127.0.0.1:26656", "h:0", "[::1]:1", "x" * 400]), max_size=70))}) | codec_values)
def test_p2p_peers_and_status_bodies(body: Any) -> None:
    COUNTS["p2p peers / status bodies"] += 1
    try:
        addresses = peers_addresses(body)
    except MessageError:
        pass
    else:
        assert all(isinstance(address, str) for address in addresses)
    height = status_height(body)
    assert height is None or (isinstance(height, int) and height >= 0)


@fuzz_settings(300)
@given(text=TEXT | st.builds(lambda a, b, c: f"{a}@{b}:{c}", st.sampled_from(["ab" * 32, "AB" * 32, ""]) | TEXT,
                             st.sampled_from(["127.0.0.1", "[::1]", "host", "[::1", "::1", "h h"]) | TEXT,
                             st.integers(-1, 70000).map(str) | TEXT))
def test_peer_address_parser(text: str) -> None:
    from p2p.addresses import parse_peer_address

    COUNTS["p2p parse_peer_address"] += 1
    try:
        address = parse_peer_address(text)
    except MessageError:
        return
    assert 1 <= address.port <= 65535


@fuzz_settings(500)
@given(data=st.binary(max_size=80) | mutated(st.binary(max_size=40).map(encode_frame)),
       limit=st.integers(1, 64))
def test_frame_decoders(data: bytes, limit: int) -> None:
    """R31: frame headers and streams fail only with FrameError or ConnectionClosed."""
    COUNTS["p2p frames (parse_length, split_frame, read_frame)"] += 1
    try:
        parse_length(data[:4], limit)
    except FrameError:
        pass
    try:
        payload, rest = split_frame(data, limit)
    except FrameError:
        pass
    else:
        assert encode_frame(payload, limit) + rest == data

    async def read_all() -> None:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        while True:
            try:
                await read_frame(reader, limit)
            except (FrameError, ConnectionClosed):
                return

    asyncio.run(read_all())


SESSION = derive_session_keys(b"\x07" * 32, Hello(KEYS[0].address, KEYS[1].address, CHAIN, sha256(b"g")),
                              Hello(KEYS[2].address, KEYS[3].address, CHAIN, sha256(b"g")))


@fuzz_settings(300)
@given(data=st.data())
def test_encrypted_frames(data: st.DataObject) -> None:
    """R31: a tampered, truncated or foreign sealed frame fails only with ChannelError."""
    COUNTS["p2p SecureChannel.open"] += 1
    sender = SecureChannel(None, None, SESSION.initiator_to_responder, SESSION.responder_to_initiator)  # type: ignore[arg-type]
    receiver = SecureChannel(None, None, SESSION.responder_to_initiator, SESSION.initiator_to_responder)  # type: ignore[arg-type]
    sealed = sender.seal(data.draw(st.binary(max_size=64)))
    frame = data.draw(mutated(st.just(sealed)) | st.binary(max_size=80))
    try:
        receiver.open(frame)
    except ChannelError:
        return
    assert frame == sealed


# --- 9. keystore files ----------------------------------------------------------------------


def key_documents() -> st.SearchStrategy[Any]:
    plain = {"address": SENDER.address.hex(), "secret_seed": SENDER.seed.hex()}
    encrypted = encrypt_key(SENDER, "right passphrase", opslimit=1, memlimit=8192)
    hexes = st.sampled_from([SENDER.address.hex(), KEYS[1].address.hex(), "AB" * 32, "zz", ""]) | ANY_TEXT
    limits = st.sampled_from([1, 2, 8192, 0, -1, True, 2**70, "1"])
    crypto = maybe_missing_map({
        "kdf": either(st.sampled_from(["argon2id", "scrypt"]), json_values),
        "opslimit": limits, "memlimit": limits,
        "salt": either(st.sampled_from([encrypted["crypto"]["salt"], "00" * 16]), hexes),
        "cipher": either(st.sampled_from(["xsalsa20poly1305", "aes"]), json_values),
        "nonce": either(st.sampled_from([encrypted["crypto"]["nonce"], "00" * 24]), hexes),
        "ciphertext": either(st.sampled_from([encrypted["crypto"]["ciphertext"], "00" * 48]), hexes),
    })
    return st.one_of(
        maybe_missing_map({"address": either(hexes, json_values), "secret_seed": either(hexes, json_values)}),
        maybe_missing_map({"version": either(st.sampled_from([1, 2, True, "1"]), json_values),
                           "address": either(hexes, json_values), "crypto": either(crypto, json_values)}),
        st.just(plain), st.just(encrypted), json_values,
    )


@fuzz_settings(400)
@given(document=key_documents(), passphrase=st.none() | st.just("right passphrase") | ANY_TEXT,
       raw=st.none() | st.binary(max_size=60))
def test_keystore_files(tmp_path_factory: pytest.TempPathFactory, document: Any, passphrase: str | None,
                        raw: bytes | None) -> None:
    """A key file of any content is refused with KeystoreError, never echoing a secret."""
    COUNTS["keystore load_key_file / read_key_info"] += 1
    home = CONFIG_HOME.setdefault("keys", tmp_path_factory.mktemp("keystore-fuzz"))
    path = home / "key.json"
    if raw is not None:
        path.write_bytes(raw)
    else:
        path.write_text(json.dumps(document, default=bytes.hex))
    for load in (lambda: load_key_file(path, passphrase).address, lambda: read_key_info(path).address):
        try:
            address = load()
        except KeystoreError as error:
            assert SENDER.seed.hex() not in error.message
        else:
            assert len(address) == 32


# --- 10. HTTP against a real node ------------------------------------------------------------


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Any:
    # Limits high enough that the fuzzing reaches every handler (the middleware still runs).
    config = {"http": {"rate_per_ip": 1_000_000, "burst_per_ip": 1_000_000}}
    with NodeProcess(tmp_path_factory.mktemp("fuzz-http") / "node", config=config) as running:
        validator = running.validator_key
        chain_id = running.status()["chain_id"]
        tx = sign_transaction(validator, chain_id, "transfer", {"to": KEYS[1].address, "amount": 1}, 0, 10)
        running.wait_for_tx(running.submit(tx.raw))  # block 1 exists: deeper paths for heights
        yield running


def request(node: NodeProcess, method: str, target: str, body: bytes | None = None,
            content_type: str | None = None) -> tuple[int, str, Any]:
    """One request on a fresh connection: (status, media type, body: parsed JSON, else bytes).

    An event stream is not read past its headers (its body is None)."""
    connection = http.client.HTTPConnection("127.0.0.1", node.http_port, timeout=30)
    try:
        headers = {"Content-Type": content_type} if content_type is not None else {}
        connection.request(method, target, body=body, headers=headers)
        response = connection.getresponse()
        media_type = (response.getheader("Content-Type") or "").split(";")[0].strip()
        if media_type == "text/event-stream":
            return response.status, media_type, None
        raw = response.read()
    finally:
        connection.close()
    parsed: Any = raw
    if media_type == "application/json" and raw:
        try:
            parsed = json.loads(raw)
        except ValueError:
            pass
    return response.status, media_type, parsed


def assert_clean(status: int, media_type: str, body: Any, what: Any) -> None:
    assert status < 500, (what, status, body)
    if status >= 400:
        assert media_type == "application/json" and is_error_body(body), (what, status, media_type, body)


CONTENT_TYPES = [
    "application/msgpack", "application/x-msgpack", "application/octet-stream", "application/json",
    "application/json; charset=utf-8", "text/plain", "multipart/form-data; boundary=x",
    "application/x-www-form-urlencoded", "", None,
]


@st.composite
def post_bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["binary", "json", "tx_json", "txs_json", "msgpack_array", "mutated_tx"]))
    if kind == "binary":
        return draw(st.binary(max_size=300))
    if kind == "json":
        return json.dumps(draw(json_values), ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")
    valid = draw(VALID_RAW)
    hexes = st.sampled_from([valid.hex(), valid.hex().upper(), "zz", "0", " ab ", ""]) | ANY_TEXT
    if kind == "tx_json":
        return json.dumps({draw(st.sampled_from(["tx", "txs"]) | TEXT): draw(either(hexes, json_values))}).encode()
    if kind == "txs_json":
        return json.dumps({"txs": draw(either(st.lists(hexes, max_size=4), json_values))}).encode()
    if kind == "msgpack_array":
        return msgpack.packb(draw(st.lists(st.binary(max_size=40) | VALID_RAW | mutated(VALID_RAW), max_size=4)
                                  | loose_values), use_bin_type=True)
    return draw(mutated(VALID_RAW))


@pytest.mark.integration
@fuzz_settings(150)
@given(body=post_bodies(), content_type=st.sampled_from(CONTENT_TYPES))
def test_http_post_bodies(node: NodeProcess, body: bytes, content_type: str | None) -> None:
    """§10: POST /txs and /txs/batch answer < 500 with the JSON error shape, whatever the body."""
    COUNTS["HTTP POST /txs, /txs/batch bodies"] += 1
    for path in ("/txs", "/txs/batch"):
        status, media_type, answer = request(node, "POST", path, body, content_type)
        assert_clean(status, media_type, answer, (path, content_type, body))
        if status == 202:
            assert path == "/txs" and set(answer) == {"hash"}
        elif status == 200:
            assert path == "/txs/batch" and set(answer) == {"results"}
            for result in answer["results"]:
                assert set(result) == {"hash"} or is_error_body(result), result


def path_values() -> dict[str, str]:
    return {"hash": "00" * 32, "id": "ab" * 32, "address": KEYS[1].address.hex(), "height": "1",
            "name": "app.js"}


GET_OPERATIONS = [operation for operation in OPERATIONS if operation.method == "GET"]
QUERY_NAMES = sorted({parameter["name"] for operation in GET_OPERATIONS for parameter in operation.parameters
                      if parameter.get("in") == "query"})
QUERY_TEXT = st.text(st.sampled_from(string.ascii_letters + string.digits + string.punctuation.replace("#", "")),
                     max_size=40)
"""Raw query characters, `%` included: random percent escapes, invalid UTF-8 among them."""


def encoded(text: str) -> str:
    return urllib.parse.quote_from_bytes(text.encode("utf-8", "surrogatepass"), safe="")


@st.composite
def query_strings(draw: st.DrawFn) -> str:
    if draw(st.booleans()):
        return draw(QUERY_TEXT)
    pairs = draw(st.lists(st.tuples(st.sampled_from(QUERY_NAMES) | TEXT,
                                    ANY_TEXT | st.sampled_from(["", "0", "1", "-1", "100", "101", "²", "1e3",
                                                                "ab" * 32, "AB" * 32, "00" * 33, "true",
                                                                "placed", "18446744073709551616", "1:2"])),
                          max_size=4))
    return "&".join(f"{encoded(name)}={encoded(value)}" for name, value in pairs)


@pytest.mark.integration
@fuzz_settings(250)
@given(operation=st.sampled_from(GET_OPERATIONS), query=query_strings())
def test_http_get_query_strings(node: NodeProcess, operation: Any, query: str) -> None:
    """§10: every GET route answers a random query string with < 500 and the JSON error shape."""
    COUNTS["HTTP GET query strings"] += 1
    target = operation.path.format(**path_values()) + "?" + query
    status, media_type, body = request(node, "GET", target)
    assert_clean(status, media_type, body, target)


@pytest.mark.integration
@fuzz_settings(250)
@given(operation=st.sampled_from([operation for operation in GET_OPERATIONS if "{" in operation.path]),
       segment=ANY_TEXT | st.sampled_from(["..", ".", "%", "0" * 21, "²", "ab" * 32, "AB" * 32, "-1", "1e3",
                                           "a\x00.js", ".hidden.js", "../index.html", "item:1"]),
       extra=st.sampled_from(["", "/", "/x", "//"]))
def test_http_random_path_segments(node: NodeProcess, operation: Any, segment: str, extra: str) -> None:
    """§10: random path segments in every templated GET route answer < 500 with the JSON error shape."""
    COUNTS["HTTP GET path segments"] += 1
    values = {name: encoded(segment) for name in path_values()}
    target = operation.path.format(**values) + extra
    status, media_type, body = request(node, "GET", target)
    assert_clean(status, media_type, body, target)


@pytest.mark.integration
@fuzz_settings(100)
@given(path=st.lists(ANY_TEXT, min_size=1, max_size=4).map(lambda parts: "/" + "/".join(map(encoded, parts))),
       method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]))
def test_http_random_paths_and_methods(node: NodeProcess, path: str, method: str) -> None:
    COUNTS["HTTP random paths and methods"] += 1
    status, media_type, body = request(node, method, path, b"" if method in ("POST", "PUT", "PATCH") else None)
    assert status < 500, (method, path, status, body)
    if status >= 400 and method != "HEAD":
        assert media_type == "application/json" and is_error_body(body), (method, path, status, body)
    assert node.running


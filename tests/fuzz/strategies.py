"""What the fuzz tests share: the fixed keys and chain, hypothesis settings, the iteration
counter, and the strategies that make hostile input for every layer.

Values come in three flavours: random bytes, random values of the right shape (maps with
fields left out or extra, values of the declared kind in and out of bounds, or anything),
and `mutated` valid encodings (bit flips, msgpack type bytes, truncations, splices).

Every example a fuzz test runs is counted in `COUNTS`; each test module installs
`iteration_report(...)` as an autouse fixture, which prints its counts and total when the
module ends (tests/conftest.py repeats that output in the summary).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from client.keystore import encrypt_key
from marketplace_tx.chain.block import HEADER_KEYS, Block, Commit, CommitSignature, Header
from marketplace_tx.chain.genesis import Genesis, GenesisAccount
from marketplace_tx.chain.params import Params
from marketplace_tx.chain.transaction import sign_transaction
from marketplace_tx.primitives import codec
from marketplace_tx.primitives.crypto import KeyPair, sha256, signing_bytes
from marketplace_tx.primitives.errors import CodecError
from marketplace_tx.rules.evidence import make_evidence
from marketplace_tx.rules.execution import HANDLERS
from marketplace_tx.rules.schema import SCHEMAS
from node.config import option_names
from p2p.handshake import Hello
from p2p.messages import KINDS, encode_message, peers_body

COUNTS: Counter[str] = Counter()
"""Examples run per decoder in the current test module."""

CHAIN = "marketchain-fuzz"
"""The chain id of every fuzzed object."""
PARAMS = Params()
"""Default genesis parameters."""
KEYS = [KeyPair.from_seed(sha256(b"fuzz/" + bytes([index]))) for index in range(4)]
"""Four fixed keys: the validators, and the senders."""
VALIDATORS = tuple(sorted(key.address for key in KEYS))
"""The validator set (sorted addresses)."""
KEY_OF = {key.address: key for key in KEYS}
"""Address → key."""
SENDER = KEYS[0]
"""The key that signs fuzzed transactions, proposals and key files."""


def fuzz_settings(examples: int) -> Callable[[Any], Any]:
    """Settings of one fuzz test: `examples` examples, no deadline (loaded CI machines)."""
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                               HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


def iteration_report(module: str) -> Any:
    """An autouse module fixture that prints the examples run per decoder in `module`."""

    @pytest.fixture(scope="module", autouse=True)
    def print_iteration_counts() -> Any:
        COUNTS.clear()
        yield
        width = max((len(name) for name in COUNTS), default=10)
        print(f"\n\nfuzz iterations per decoder ({module}):")
        for name, count in sorted(COUNTS.items()):
            print(f"  {name:<{width}}  {count:>6}")
        print(f"  {'total':<{width}}  {sum(COUNTS.values()):>6}")

    return print_iteration_counts


# --- generic values and mutations ---------------------------------------------------------

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


# --- transactions -------------------------------------------------------------------------

ITEM = "item-1"
"""The item id the valid payloads name."""
VALID_PAYLOADS: dict[str, dict[str, Any]] = {
    "transfer": {"to": KEYS[1].address, "amount": 5, "memo": "thanks"},
    "role_grant": {"account": KEYS[1].address, "role": "merchant", "evidence_hash": b"\x01" * 32},
    "validator_vote": {"action": "add", "validator": KEYS[2].address},
    "shop_create": {"name": "shop", "points_bps": 100, "max_redeem_bps": 500, "arbiters": [KEYS[3].address]},
    "listing_create": {"shop_id": b"\x02" * 32, "title": "tea", "price": 10, "stock": 1,
                       "item_ids": [ITEM], "tags": ["green"], "digital": True},  # admitted; the rule refuses (R41)
    "listing_update": {"listing_id": b"\x03" * 32, "stock_delta": -1},
    "order_place": {"listing_id": b"\x03" * 32, "quantity": 1, "max_unit_price": 10, "shipping": b"sealed",
                    "arbiter": KEYS[3].address},
    "order_ship": {"order_id": b"\x04" * 32, "carrier": KEYS[2].address, "tracking": "TRACK1"},
    "order_deliver": {"order_id": b"\x04" * 32, "content": bytes(range(48))},
    "shipment_update": {"order_id": b"\x04" * 32, "status": "in_transit", "location": "Lyon"},
    "dispute_resolve": {"order_id": b"\x04" * 32, "buyer_amount": 3, "ruling": "split"},
    "review_submit": {"order_id": b"\x04" * 32, "rating": 5, "text": "good"},
    "item_event": {"item_id": ITEM, "kind": "inspected", "location": "port"},
}
"""One valid payload per transaction type."""
VALID_TXS = [sign_transaction(SENDER, CHAIN, tx_type, payload, 3, 10) for tx_type, payload in VALID_PAYLOADS.items()]
VALID_RAW = st.sampled_from([tx.raw for tx in VALID_TXS])
"""The signed bytes of one valid transaction of each type."""


def field_values(tx_type: str, name: str) -> st.SearchStrategy[Any]:
    """Values for one payload field: of its declared kind (in and out of bounds) or anything."""
    spec = SCHEMAS[tx_type].fields.get(name)
    kind = spec.kind if spec else "any"
    binary = st.binary(max_size=1100)
    if spec and spec.maximum and spec.maximum > 1100:  # e.g. order_deliver.content ≤ 4096 (R41)
        binary |= st.binary(min_size=spec.maximum - 2, max_size=spec.maximum + 2)
    by_kind: dict[str, st.SearchStrategy[Any]] = {
        "bin32": HASH32 | st.binary(max_size=40),
        "bin": binary,
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


# --- blocks, commits, votes, proposals, evidence ------------------------------------------

@st.composite
def commits(draw: st.DrawFn) -> Commit:
    """Commits of a random subset of `VALIDATORS`, with random signatures."""
    signers = sorted(draw(st.sets(st.sampled_from(VALIDATORS), min_size=1)))
    return Commit(draw(HASH32), draw(st.integers(1, 1000)), draw(st.integers(0, 5)),
                  tuple(CommitSignature(signer, draw(st.binary(min_size=64, max_size=64))) for signer in signers))


@st.composite
def blocks(draw: st.DrawFn) -> Block:
    """Well-formed blocks with random header hashes, valid transactions and random evidence."""
    height = draw(st.integers(1, 1000))
    header = Header(CHAIN, height, draw(st.integers(0, 2**63)), *(draw(HASH32) for _ in range(9)))
    last_commit = None if height == 1 else draw(commits())
    txs = tuple(draw(st.lists(VALID_RAW, max_size=3)))
    evidence = tuple(draw(st.lists(st.dictionaries(TEXT, codec_values, max_size=3), max_size=2)))
    return Block(header, txs, last_commit, evidence)


def header_maps() -> st.SearchStrategy[Any]:
    """Header maps with fields of the right kind (or not), missing or extra; or any value."""
    fields = {name: either(HASH32) for name in HEADER_KEYS}
    fields.update(chain_id=either(st.just(CHAIN)), height=either(SMALL_UINT), time=either(SMALL_UINT))
    return maybe_missing_map(fields) | codec_values


def commit_maps() -> st.SearchStrategy[Any]:
    """Commit maps of any shape, valid commits' maps, or any value."""
    signature = maybe_missing_map({"signature": either(st.binary(min_size=64, max_size=64)),
                                   "validator": either(st.sampled_from(VALIDATORS))})
    return maybe_missing_map({
        "block_hash": either(HASH32), "height": either(SMALL_UINT), "round": either(SMALL_UINT),
        "signatures": either(st.lists(either(signature), max_size=4)),
    }) | commits().map(Commit.to_map) | codec_values


VOTE_TYPES = st.sampled_from(["prevote", "precommit"])
"""The two vote types."""


def vote_maps() -> st.SearchStrategy[Any]:
    """Vote maps with fields of the right kind (or not), missing or extra."""
    return maybe_missing_map({
        "block_hash": either(st.none() | HASH32), "chain_id": either(st.just(CHAIN)),
        "height": either(SMALL_UINT), "round": either(SMALL_UINT), "type": either(VOTE_TYPES),
    })


def proposal_maps() -> st.SearchStrategy[Any]:
    """Proposal maps with fields of the right kind (or not), missing or extra."""
    return maybe_missing_map({
        "block_hash": either(HASH32), "chain_id": either(st.just(CHAIN)), "height": either(SMALL_UINT),
        "pol_round": either(st.integers(-3, 3) | CODEC_INT), "round": either(SMALL_UINT),
    })


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


# --- genesis and config -------------------------------------------------------------------

def valid_genesis_json() -> dict[str, Any]:
    """A valid genesis document (JSON) of `VALIDATORS`, funding `SENDER`."""
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


TOML_SCALARS = st.one_of(
    st.integers(-(2**63), 2**63 - 1).map(str),
    TEXT.map(lambda text: json.dumps(text)),
    st.sampled_from(["true", "false", "1.5", "inf", "nan", "1979-05-27T07:32:00Z", "07:32:00", "[]",
                     '["127.0.0.1:1"]', '["x"]', "[1, 2]", "{}", '{a = 1}', '"plain"', '"json"', '"p2p:debug"',
                     '"*:warning,p2p:nope"', '"debug"', "0", "65536", "-1", '"ab@h:1"', f'["{"ab" * 32}@[::1]:80"]']),
)


@st.composite
def toml_documents(draw: st.DrawFn) -> str:
    """config.toml texts with known and unknown options and values of any TOML type."""
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


# --- peer-to-peer -------------------------------------------------------------------------

message_bytes = st.builds(lambda kind, body: encode_message(kind, body), st.sampled_from(sorted(KINDS - {"peers"})),
                          codec_values) | st.just(encode_message("peers", peers_body(["ab" * 32 + "@h:1"])))
hello_bytes = st.builds(lambda port: Hello(KEYS[0].address, KEYS[1].address, CHAIN, sha256(b"g"),
                                           listen_port=port).encode(), st.integers(0, 65535))


# --- key files ----------------------------------------------------------------------------

def key_documents() -> st.SearchStrategy[Any]:
    """Key-file documents (plain, encrypted, of any shape), valid ones among them."""
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


# --- HTTP requests ------------------------------------------------------------------------

CONTENT_TYPES = [
    "application/msgpack", "application/x-msgpack", "application/octet-stream", "application/json",
    "application/json; charset=utf-8", "text/plain", "multipart/form-data; boundary=x",
    "application/x-www-form-urlencoded", "", None,
]


@st.composite
def post_bodies(draw: st.DrawFn) -> bytes:
    """Bodies for `POST /txs` and `/txs/batch`: binary, JSON, hex, msgpack arrays, mutated txs."""
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

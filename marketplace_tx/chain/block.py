"""Block, header and commit types and their canonical encoding (PROTOCOL R23, R24)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from marketplace_tx.primitives import codec
from marketplace_tx.primitives.errors import CodecError, InvalidBlock

HEADER_KEYS = (
    "chain_id",
    "height",
    "time",
    "prev_hash",
    "tx_root",
    "results_root",
    "state_root",
    "validators_hash",
    "next_validators_hash",
    "proposer",
    "last_commit_hash",
    "evidence_hash",
)
"""Every field of a header (R23)."""

_HASH_FIELDS = (
    "prev_hash",
    "tx_root",
    "results_root",
    "state_root",
    "validators_hash",
    "next_validators_hash",
    "proposer",
    "last_commit_hash",
    "evidence_hash",
)


@dataclass(frozen=True)
class Header:
    """A block header; the block hash is SHA-256 of its canonical bytes (R23)."""

    chain_id: str
    """The chain's id."""
    height: int
    """1 for the first block after genesis."""
    time: int
    """The proposer's clock in ms, strictly after the parent's time (R28)."""
    prev_hash: bytes
    """The parent block's hash; the genesis hash for block 1."""
    tx_root: bytes
    """Merkle root (R7) of the transaction hashes in block order."""
    results_root: bytes
    """Merkle root (R7) of the canonical committed receipts (R11)."""
    state_root: bytes
    """Commitment to the whole application state after this block (docs/state.md)."""
    validators_hash: bytes
    """Hash of the set that signs this block (R23)."""
    next_validators_hash: bytes
    """Hash of the set that signs the next block."""
    proposer: bytes
    """The block's creator, who receives its fees."""
    last_commit_hash: bytes
    """SHA-256(canonical(last_commit))."""
    evidence_hash: bytes
    """Merkle root (R7) of the canonical evidence items."""

    def to_map(self) -> dict[str, Any]:
        """The canonical header map."""
        return {name: getattr(self, name) for name in HEADER_KEYS}

    @cached_property
    def hash(self) -> bytes:
        """The block hash: SHA-256 of the canonical header (R23)."""
        return hashlib.sha256(codec.encode(self.to_map())).digest()

    @classmethod
    def from_map(cls, value: Any) -> Header:
        """Parse a header map, checking every field's type."""
        if not isinstance(value, dict) or set(value) != set(HEADER_KEYS):
            raise InvalidBlock("header must have exactly the fields of R23")
        if not isinstance(value["chain_id"], str):
            raise InvalidBlock("header.chain_id must be text")
        for name in ("height", "time"):
            item = value[name]
            if isinstance(item, bool) or not isinstance(item, int) or item < 0:
                raise InvalidBlock(f"header.{name} must be an unsigned integer")
        for name in _HASH_FIELDS:
            if not isinstance(value[name], bytes) or len(value[name]) != 32:
                raise InvalidBlock(f"header.{name} must be 32 bytes")
        return cls(**value)


@dataclass(frozen=True)
class CommitSignature:
    """One validator's precommit signature inside a commit (R24)."""

    validator: bytes
    """The signer's address."""
    signature: bytes
    """Its Ed25519 signature (kind `vote`) of the precommit (R26)."""

    def to_map(self) -> dict[str, Any]:
        """The canonical map `{signature, validator}`."""
        return {"signature": self.signature, "validator": self.validator}


@dataclass(frozen=True)
class Commit:
    """The precommits that finalized a block (R24)."""

    block_hash: bytes
    """The finalized block's hash."""
    height: int
    """Its height."""
    round: int
    """The round in which it was decided."""
    signatures: tuple[CommitSignature, ...]
    """Precommits sorted by validator, unique, from that height's set."""

    def to_map(self) -> dict[str, Any]:
        """The canonical commit map."""
        return {
            "block_hash": self.block_hash,
            "height": self.height,
            "round": self.round,
            "signatures": [signature.to_map() for signature in self.signatures],
        }

    @classmethod
    def from_map(cls, value: Any) -> Commit:
        """Parse a commit map, checking types and signature order."""
        if not isinstance(value, dict) or set(value) != {"block_hash", "height", "round", "signatures"}:
            raise InvalidBlock("commit must be {block_hash, height, round, signatures}")
        if not isinstance(value["block_hash"], bytes) or len(value["block_hash"]) != 32:
            raise InvalidBlock("commit.block_hash must be 32 bytes")
        for name in ("height", "round"):
            if isinstance(value[name], bool) or not isinstance(value[name], int) or value[name] < 0:
                raise InvalidBlock(f"commit.{name} must be an unsigned integer")
        if not isinstance(value["signatures"], list):
            raise InvalidBlock("commit.signatures must be a list")
        signatures = []
        for item in value["signatures"]:
            if (
                not isinstance(item, dict)
                or set(item) != {"signature", "validator"}
                or not isinstance(item["validator"], bytes)
                or len(item["validator"]) != 32
                or not isinstance(item["signature"], bytes)
                or len(item["signature"]) != 64
            ):
                raise InvalidBlock("commit.signatures holds a malformed entry")
            signatures.append(CommitSignature(item["validator"], item["signature"]))
        validators = [signature.validator for signature in signatures]
        if validators != sorted(set(validators)):
            raise InvalidBlock("commit.signatures must be sorted by validator and unique")
        return cls(value["block_hash"], value["height"], value["round"], tuple(signatures))

    def encode(self) -> bytes:
        """Canonical bytes of the commit."""
        return codec.encode(self.to_map())


def last_commit_map(commit: Commit | None) -> dict[str, Any]:
    """The `last_commit` field of a block: the empty map `{}` for block 1 (docs/protocol-decisions.md)."""
    return {} if commit is None else commit.to_map()


def last_commit_hash(commit: Commit | None) -> bytes:
    """SHA-256(canonical(last_commit)) (R23)."""
    return hashlib.sha256(codec.encode(last_commit_map(commit))).digest()


@dataclass(frozen=True)
class Block:
    """`{evidence, header, last_commit, txs}` (R24)."""

    header: Header
    """The block's header."""
    txs: tuple[bytes, ...]
    """Canonical bytes of each signed transaction, in block order."""
    last_commit: Commit | None
    """The commit of the previous block; None (encoded `{}`) for block 1."""
    evidence: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    """Canonical evidence items (R27)."""

    def to_map(self) -> dict[str, Any]:
        """The canonical block map."""
        return {
            "evidence": list(self.evidence),
            "header": self.header.to_map(),
            "last_commit": last_commit_map(self.last_commit),
            "txs": list(self.txs),
        }

    def encode(self) -> bytes:
        """Canonical block bytes, as served by `/blocks/{height}/raw`."""
        return codec.encode(self.to_map())

    @property
    def hash(self) -> bytes:
        """The block hash (R23)."""
        return self.header.hash


def decode_block(raw: bytes, max_block_bytes: int) -> Block:
    """Parse canonical block bytes or raise `InvalidBlock`."""
    if len(raw) > max_block_bytes + 65536:
        raise InvalidBlock("block exceeds max_block_bytes")
    try:
        value = codec.decode(raw)
    except CodecError as error:
        raise InvalidBlock(f"not canonical: {error.message}") from None
    if not isinstance(value, dict) or set(value) != {"evidence", "header", "last_commit", "txs"}:
        raise InvalidBlock("block must be {evidence, header, last_commit, txs}")
    if not isinstance(value["txs"], list) or not all(isinstance(tx, bytes) for tx in value["txs"]):
        raise InvalidBlock("txs must be a list of byte strings")
    if not isinstance(value["evidence"], list) or not all(isinstance(item, dict) for item in value["evidence"]):
        raise InvalidBlock("evidence must be a list of maps")
    last_commit = None if value["last_commit"] == {} else Commit.from_map(value["last_commit"])
    return Block(
        header=Header.from_map(value["header"]),
        txs=tuple(value["txs"]),
        last_commit=last_commit,
        evidence=tuple(value["evidence"]),
    )


def decode_commit(raw: bytes) -> Commit:
    """Parse canonical commit bytes or raise `InvalidBlock`."""
    try:
        return Commit.from_map(codec.decode(raw))
    except CodecError as error:
        raise InvalidBlock(f"commit not canonical: {error.message}") from None

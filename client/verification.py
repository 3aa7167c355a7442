"""Light-client verification of a transaction's finality (`marketchain verify tx`).

Trusts nothing the node says without checking it: the block is fetched as raw
canonical bytes and hashed locally; the Merkle path is checked against the header's
`tx_root` (R7); the commit's precommit signatures are checked against a validator set
whose hash must equal the header's `validators_hash` (R23, R24, R26). With a genesis
file (the trust anchor) that set is the light client's (R37: the genesis validators
carried through every validator-set change point the node lists, each checked);
without one it is the set the node names, which proves only that the block is final
for that node's view of the validators.

`verify_order_placement` uses the same checks for `tx order-ship` (issue 13): the buyer's
sealed address is taken from the `order_place` transaction the buyer signed, proven final,
never from what the node says about the order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from client.light_client import LightClientError, commit_from_json, verify_target
from client.node_client import NodeClient
from client.state_verification import trusted_set_below
from consensus.commit import verify_commit
from marketplace_tx.chain.block import Commit, Header, decode_block
from marketplace_tx.chain.genesis import Genesis, genesis_from_json
from marketplace_tx.chain.transaction import Transaction, decode_transaction
from marketplace_tx.primitives import codec
from marketplace_tx.primitives.errors import AdmissionError, InvalidBlock, InvalidGenesis
from marketplace_tx.primitives.merkle import verify_inclusion
from marketplace_tx.rules.validators import validators_hash


class VerificationFailed(Exception):
    """A check of the proof, header or commit did not hold."""


class GenesisFileError(Exception):
    """A trust-anchor genesis file that cannot be read or is not a valid genesis (R33)."""


def read_genesis_file(path: Path) -> Genesis:
    """Read and validate a genesis file, the trust anchor of `verify tx --genesis` (R33).

    The file is read here; the JSON is checked by the core's `genesis_from_json`, as the node's
    own reader (`node.home.read_genesis`) does.
    """
    try:
        return genesis_from_json(path.read_bytes(), source=str(path))
    except FileNotFoundError:
        raise GenesisFileError(f"{path} does not exist") from None
    except InvalidGenesis as error:
        raise GenesisFileError(error.message) from None


@dataclass(frozen=True)
class Verification:
    """What was verified about one transaction."""

    tx_hash: str
    """The transaction."""
    height: int
    """Its block's height."""
    block_hash: str
    """Its block's hash, recomputed from the raw header."""
    signers: int
    """Valid precommit signatures in the commit."""
    validators: int
    """Size of the validator set they were checked against."""
    tx_bytes: bytes = field(default=b"", repr=False)
    """The transaction's canonical bytes, taken from the hashed block (they hash to `tx_hash`)."""
    from_genesis: bool = False
    """True when the header was verified by R37 from a genesis file; False when the set came from the node."""


def verify_transaction(client: NodeClient, tx_hash: str, genesis: Genesis | None = None) -> Verification:
    """Check that `tx_hash` is final: inclusion proof, block hash and commit signatures."""
    proof = client.get(f"/txs/{tx_hash}/proof")
    height = proof["height"]
    raw = client.get(f"/blocks/{height}/raw")
    try:
        block = decode_block(raw, len(raw))
    except InvalidBlock as error:
        raise VerificationFailed(f"block {height} does not decode: {error.message}") from None
    header = block.header
    if header.height != height:
        raise VerificationFailed("the node served a block of another height")
    total = len(block.txs)  # from the hashed block itself: a path alone does not bind it
    if not 0 <= proof["index"] < total or hashlib.sha256(block.txs[proof["index"]]).hexdigest() != tx_hash:
        raise VerificationFailed("the block does not hold the transaction at the proof's index")
    if not verify_inclusion(
        bytes.fromhex(tx_hash), proof["index"], total, [bytes.fromhex(p) for p in proof["path"]], header.tx_root
    ):
        raise VerificationFailed("the Merkle path does not lead to the header's tx_root")
    try:
        commit = commit_from_json(client.get(f"/blocks/{height}/commit"))
    except ValueError as error:
        raise VerificationFailed(f"the commit of block {height} is malformed: {error}") from None
    if genesis is not None and genesis.chain_id != header.chain_id:
        raise VerificationFailed(f"the chain ids differ: the genesis is of chain {genesis.chain_id!r}, the node's "
                                 f"block of chain {header.chain_id!r} (pass the genesis of the node's chain, or "
                                 "ask a node of this one)")
    if genesis is not None:
        signers, validators = _verified_from_genesis(client, genesis, header, commit)
    else:
        signers, validators = _verified_by_node_set(client, header, commit)
    return Verification(tx_hash, height, header.hash.hex(), signers, validators, block.txs[proof["index"]],
                        genesis is not None)


def _verified_from_genesis(client: NodeClient, genesis: Genesis, header: Header, commit: Commit) -> tuple[int, int]:
    """Signers and set size of `header`, verified by R37 from `genesis` through every validator-set change."""
    try:
        trusted, _ = trusted_set_below(client, genesis, header.height)
        verified = verify_target(trusted, genesis.chain_id, codec.encode(header.to_map()), commit, header.height)
    except LightClientError as error:
        raise VerificationFailed(str(error)) from None
    return len(verified.signers), len(verified.validators)


def _verified_by_node_set(client: NodeClient, header: Header, commit: Commit) -> tuple[int, int]:
    """Signers and set size of `header`, checked against the set the node names (no trust anchor)."""
    validators = [bytes.fromhex(v["address"]) for v in client.get(f"/validators?height={header.height}")["validators"]]
    if validators_hash(validators) != header.validators_hash:
        raise VerificationFailed("the validator set does not match the header's validators_hash")
    try:
        verify_commit(commit, header.chain_id, header.hash, header.height, validators)
    except InvalidBlock as error:
        raise VerificationFailed(error.message) from None
    return len(commit.signatures), len(validators)


def verify_order_placement(
    client: NodeClient, order_id: bytes, order: Mapping[str, Any], genesis: Genesis | None = None
) -> Transaction:
    """The buyer-signed `order_place` transaction of `order` (the node's view of `order_id`), checked.

    The order id is that transaction's hash (R9): its bytes are taken from a final block
    (`verify_transaction`: Merkle path, block hash, commit signatures); its signature must be
    valid (R8), its type `order_place`, its sender the order's `buyer` and its `shipping` the
    order's `shipping` (R13). A node that swapped the sealed box, the buyer or the proof is
    refused with `VerificationFailed`; so is an answer of the wrong shape.
    """
    try:
        verification = verify_transaction(client, order_id.hex(), genesis)
        buyer, shipping = bytes.fromhex(order["buyer"]), bytes.fromhex(order["shipping"])
    except (KeyError, TypeError, ValueError, IndexError) as error:
        raise VerificationFailed(f"the node's answer about order {order_id.hex()} is malformed: {error!r}") from None
    try:
        placement = decode_transaction(verification.tx_bytes, len(verification.tx_bytes))
    except AdmissionError as error:
        raise VerificationFailed(f"the order's transaction does not decode: {error.message}") from None
    if placement.type != "order_place":  # its hash is order_id: verify_transaction hashed these bytes
        raise VerificationFailed(f"transaction {order_id.hex()} is a {placement.type}, not this order's order_place")
    if not placement.has_valid_signature():
        raise VerificationFailed("the order_place transaction's signature is not valid (R8)")
    if placement.sender != buyer:
        raise VerificationFailed(f"the node says the buyer is {buyer.hex()}, but the order_place transaction "
                                 f"was signed by {placement.sender.hex()}")
    if placement.payload.get("shipping") != shipping:
        raise VerificationFailed("the shipping box the node returned is not the one in the order_place "
                                 "transaction the buyer signed (R13)")
    return placement

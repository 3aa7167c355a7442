"""Consensus messages on the wire and their checks (PROTOCOL R26, R31–R32).

Bodies of the p2p kinds the node uses (canonical msgpack inside the encrypted frame):

    txs             [tx bytes, …]                      (batched gossip)
    proposal        {proposal: {block_hash, chain_id, height, pol_round, round},
                     signature: bin64, block: canonical block bytes}
    vote            {validator: bin32, vote: {block_hash, chain_id, height, round, type},
                     signature: bin64}
    evidence        an evidence item (marketplace_tx.rules.evidence)
    status          {height, block_hash}
    block_request   {height}
    block_response  {height, block: bytes, commit: bytes}

Everything here is checked before the consensus core sees it: a malformed body
raises `MessageRejected`, for which the sender loses score.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from consensus.proposal import NO_POL_ROUND, Proposal
from consensus.vote import Vote
from marketplace_tx.chain.block import Block
from marketplace_tx.rules.state_transition import BlockResult

INT64_MAX = 2**63 - 1


class MessageRejected(Exception):
    """A peer's message that is malformed or fails its signature check."""


@dataclass
class ProposedBlock:
    """A block as consensus carries it: decoded, with its bytes and, once executed, its result."""

    block: Block
    """The decoded block."""
    raw: bytes
    """Its canonical bytes."""
    result: BlockResult | None = None
    """What executing it on the current tip produced, if it was valid."""


def _uint(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= INT64_MAX:
        raise MessageRejected(f"{name} must be an unsigned integer")
    return value


def _bytes(value: Any, size: int, name: str) -> bytes:
    if not isinstance(value, bytes) or len(value) != size:
        raise MessageRejected(f"{name} must be {size} bytes")
    return value


def proposal_body(proposal: Proposal, signature: bytes, raw_block: bytes) -> dict[str, Any]:
    """The body of a `proposal` message."""
    return {"proposal": proposal.to_map(), "signature": signature, "block": raw_block}


def parse_proposal(body: Any) -> tuple[Proposal, bytes, bytes]:
    """(proposal, signature, raw block) of a `proposal` body; the signature is not checked here."""
    if not isinstance(body, dict) or set(body) != {"proposal", "signature", "block"}:
        raise MessageRejected("proposal body must be {proposal, signature, block}")
    fields = body["proposal"]
    if not isinstance(fields, dict) or set(fields) != {"block_hash", "chain_id", "height", "pol_round", "round"}:
        raise MessageRejected("proposal must be {block_hash, chain_id, height, pol_round, round}")
    pol_round = fields["pol_round"]
    if isinstance(pol_round, bool) or not isinstance(pol_round, int) or not NO_POL_ROUND <= pol_round <= INT64_MAX:
        raise MessageRejected("pol_round must be an integer ≥ -1")
    if not isinstance(fields["chain_id"], str):
        raise MessageRejected("chain_id must be text")
    proposal = Proposal(
        chain_id=fields["chain_id"],
        height=_uint(fields["height"], "height"),
        round=_uint(fields["round"], "round"),
        pol_round=pol_round,
        block_hash=_bytes(fields["block_hash"], 32, "block_hash"),
    )
    if not isinstance(body["block"], bytes):
        raise MessageRejected("block must be bytes")
    return proposal, _bytes(body["signature"], 64, "signature"), body["block"]


def vote_body(validator: bytes, vote: Vote, signature: bytes) -> dict[str, Any]:
    """The body of a `vote` message."""
    return {"validator": validator, "vote": vote.to_map(), "signature": signature}


def parse_vote(body: Any) -> tuple[bytes, Vote, bytes]:
    """(validator, vote, signature) of a `vote` body; the signature is not checked here."""
    if not isinstance(body, dict) or set(body) != {"validator", "vote", "signature"}:
        raise MessageRejected("vote body must be {validator, vote, signature}")
    fields = body["vote"]
    if not isinstance(fields, dict) or set(fields) != {"block_hash", "chain_id", "height", "round", "type"}:
        raise MessageRejected("vote must be {block_hash, chain_id, height, round, type}")
    if fields["type"] not in ("prevote", "precommit") or not isinstance(fields["chain_id"], str):
        raise MessageRejected("vote type or chain_id malformed")
    block_hash = fields["block_hash"]
    if block_hash is not None:
        block_hash = _bytes(block_hash, 32, "block_hash")
    vote = Vote(fields["chain_id"], _uint(fields["height"], "height"), _uint(fields["round"], "round"),
                fields["type"], block_hash)
    return _bytes(body["validator"], 32, "validator"), vote, _bytes(body["signature"], 64, "signature")


def vote_from_signing_bytes(message: bytes) -> Vote:
    """Rebuild a vote from the exact bytes that were signed (domain tag + canonical map)."""
    from marketplace_tx.primitives import codec

    tag = b"marketchain/vote/v1\x00"
    value = codec.decode(message[len(tag):])
    return Vote(value["chain_id"], value["height"], value["round"], value["type"], value["block_hash"])

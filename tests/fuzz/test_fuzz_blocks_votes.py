"""Fuzzing of blocks, headers, commits, votes, proposals and evidence (PROTOCOL R24, R26, R27).

Decoders refuse only with their own error (InvalidBlock, MessageRejected); what they
accept re-encodes to the input; a parsed vote or proposal verifies exactly when its
signature is the signer's over its signing bytes; evidence either names a validator
of the set or is refused with InvalidBlock.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consensus.proposal import Proposal
from consensus.vote import Vote
from marketplace_tx.chain.block import Block, Commit, Header, decode_block, decode_commit
from marketplace_tx.chain.genesis import Genesis, GenesisAccount
from marketplace_tx.primitives import codec
from marketplace_tx.primitives.errors import InvalidBlock
from marketplace_tx.rules.context import BlockContext
from marketplace_tx.rules.evidence import check_evidence, make_evidence
from marketplace_tx.rules.genesis_state import apply_genesis
from marketplace_tx.rules.state import MemoryStateReader, State
from node.consensus_messages import (
    MessageRejected,
    parse_proposal,
    parse_vote,
    proposal_body,
    vote_body,
)
from tests.fuzz.strategies import (
    CHAIN,
    COUNTS,
    HASH32,
    KEY_OF,
    KEYS,
    PARAMS,
    SENDER,
    SMALL_UINT,
    VALIDATORS,
    VOTE_TYPES,
    blocks,
    codec_values,
    commit_maps,
    commits,
    either,
    evidence_items,
    fuzz_settings,
    header_maps,
    iteration_report,
    maybe_missing_map,
    mutated,
    proposal_maps,
    signed_vote,
    vote_maps,
)

print_iteration_counts = iteration_report("tests/fuzz/test_fuzz_blocks_votes.py")


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
    except InvalidBlock as error:
        assert error.code == "invalid_block"
        return
    assert block.encode() == data
    assert len(block.hash) == 32


@fuzz_settings(200)
@given(value=header_maps())
def test_header_from_map(value: Any) -> None:
    COUNTS["Header.from_map"] += 1
    try:
        header = Header.from_map(value)
    except InvalidBlock as error:
        assert error.code == "invalid_block"
        return
    assert header.to_map() == value and len(header.hash) == 32


@fuzz_settings(200)
@given(value=commit_maps())
def test_commit_from_map(value: Any) -> None:
    COUNTS["Commit.from_map"] += 1
    try:
        commit = Commit.from_map(value)
    except InvalidBlock as error:
        assert error.code == "invalid_block"
        return
    assert commit.to_map() == value


@fuzz_settings(300)
@given(data=st.binary(max_size=200) | mutated(commits().map(Commit.encode)) | commit_maps().map(codec.encode))
def test_decode_commit(data: bytes) -> None:
    COUNTS["decode_commit"] += 1
    try:
        commit = decode_commit(data)
    except InvalidBlock as error:
        assert error.code == "invalid_block"
        return
    assert commit.encode() == data


@fuzz_settings(400)
@given(body=maybe_missing_map({"validator": either(st.sampled_from(VALIDATORS)), "vote": either(vote_maps()),
                               "signature": either(st.binary(min_size=64, max_size=64))})
       | codec_values
       | st.builds(lambda key, vote: vote_body(key.address, vote, vote.sign(key)), st.sampled_from(KEYS),
                   st.builds(Vote, st.just(CHAIN), SMALL_UINT.filter(lambda n: n < 2**63),
                             st.integers(0, 9), VOTE_TYPES, st.none() | HASH32)))
def test_parse_vote(body: Any) -> None:
    """R26: a vote body is refused with MessageRejected, or parses to the fields it holds (the
    body re-built from them is the input) and verifies exactly when its signature is the
    validator's over the vote's signing bytes (Ed25519 signatures are deterministic)."""
    COUNTS["parse_vote"] += 1
    try:
        validator, vote, signature = parse_vote(body)
    except MessageRejected:
        return
    assert len(validator) == 32 and len(signature) == 64
    assert vote.type in ("prevote", "precommit") and isinstance(vote.chain_id, str)
    assert vote.block_hash is None or len(vote.block_hash) == 32
    assert vote_body(validator, vote, signature) == body
    signer = KEY_OF.get(validator)
    expected = signer is not None and signer.sign(vote.signing_bytes()) == signature
    assert vote.verify(validator, signature) is expected


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
    """R26: a proposal body is refused with MessageRejected, or parses to the fields it holds
    (the body re-built from them is the input) and verifies exactly when its signature is
    the proposer's over its signing bytes; its block is refused with InvalidBlock or
    re-encodes to the bytes carried."""
    COUNTS["parse_proposal"] += 1
    try:
        proposal, signature, raw = parse_proposal(body)
    except MessageRejected:
        return
    assert proposal.pol_round >= -1 and len(signature) == 64 and len(proposal.block_hash) == 32
    assert proposal_body(proposal, signature, raw) == body
    expected = SENDER.sign(proposal.signing_bytes()) == signature
    assert proposal.verify(SENDER.address, signature) is expected
    assert proposal.verify(KEYS[1].address, signature) is (KEYS[1].sign(proposal.signing_bytes()) == signature)
    try:
        block = decode_block(raw, PARAMS.max_block_bytes)
    except InvalidBlock as error:
        assert error.code == "invalid_block"
        return
    assert block.encode() == raw


# --- 5. evidence ------------------------------------------------------------------------


def evidence_state() -> State:
    state = State(MemoryStateReader())
    apply_genesis(state, Genesis(CHAIN, 1, VALIDATORS, (GenesisAccount(SENDER.address, 10**9),)))
    return state


EVIDENCE_BLOCK = BlockContext(CHAIN, 10, 10_000, VALIDATORS[0], PARAMS)


@fuzz_settings(400)
@given(item=evidence_items() | codec_values)
def test_check_evidence(item: Any) -> None:
    """R27: evidence of any shape is refused with InvalidBlock or names a validator of the set."""
    COUNTS["check_evidence"] += 1
    try:
        validator = check_evidence(evidence_state(), EVIDENCE_BLOCK, item)
    except InvalidBlock as error:
        assert error.code == "invalid_block"
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

"""What a peer's proposal, vote or evidence must pass before the consensus core sees it.

The wire shape of each message is checked in node/consensus_messages.py (R26, R31);
this module holds the checks that need the node's view of the chain:

- **timing** (`proposal_timing`, `vote_timing`): the chain id, the height (a future
  height waits in node/future_messages.py, a past one is dropped), the voter's
  membership in the validator set (R25) and a bound on how many rounds ahead a
  message may be;
- **the block of a proposal** (`BlockChecker`): decoded, its last commit verified
  against the previous validator set, then executed on the tip with every root
  compared (R26);
- **timeliness** (`is_timely`): a fresh value too far ahead of this node's clock gets
  a nil prevote (R28);
- **evidence** (`evidence_valid_now`): an item gossiped by a peer is kept only if it
  is valid evidence of equivocation now (R27).

Where a peer's message goes, in which order the checks run and what each rejection
costs is node/consensus_intake.py (proposals, votes) and node/evidence_intake.py
(evidence); the driver checks the timing again when it runs a queued message.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from consensus.commit import verify_commit
from consensus.proposal import NO_POL_ROUND, Proposal
from consensus.state import ConsensusState
from consensus.tendermint import is_future_height
from consensus.vote import Vote
from marketplace_tx.chain.block import decode_block
from marketplace_tx.chain.params import Params
from marketplace_tx.primitives.errors import InvalidBlock
from marketplace_tx.rules.evidence import check_evidence
from marketplace_tx.rules.state import State
from marketplace_tx.rules.state_transition import apply_block
from marketplace_tx.rules.validators import set_at
from node.consensus_messages import ProposedBlock
from node.evidence_pool import evidence_context
from node.logging_setup import log_fields
from node.storage import ChainStore

if TYPE_CHECKING:
    from node.http.metrics import NodeMetrics

log = logging.getLogger("marketchain.consensus")

MAX_ROUNDS_AHEAD = 50
"""Messages for rounds this far beyond ours are dropped (a faulty validator could
otherwise make the core keep vote sets for absurd rounds)."""


class Timing(enum.Enum):
    """Where a consensus message stands against the height this node is deciding."""

    CURRENT = "current"
    """For the current height and round window: check its signature, then feed the core."""
    FUTURE = "future"
    """For a later height: keep it until the node gets there (and maybe sync)."""
    IGNORED = "ignored"
    """Another chain, a past height, a non-member or too many rounds ahead: dropped."""


def proposal_timing(state: ConsensusState, chain_id: str, proposal: Proposal) -> Timing:
    """Where a proposal stands (R25, R26)."""
    if proposal.chain_id != chain_id:
        return Timing.IGNORED
    if is_future_height(state, proposal.height):
        return Timing.FUTURE
    if proposal.height != state.height or not state.validators:
        return Timing.IGNORED
    if proposal.round > state.round + MAX_ROUNDS_AHEAD:
        return Timing.IGNORED
    return Timing.CURRENT


def vote_timing(state: ConsensusState, chain_id: str, validator: bytes, vote: Vote) -> Timing:
    """Where a vote stands (R25: only members of the height's validator set vote)."""
    if vote.chain_id != chain_id:
        return Timing.IGNORED
    if is_future_height(state, vote.height):
        return Timing.FUTURE
    if vote.height != state.height or validator not in state.members:
        return Timing.IGNORED
    if vote.round > state.round + MAX_ROUNDS_AHEAD:
        return Timing.IGNORED  # bounds what a faulty validator can make the core store
    return Timing.CURRENT


def is_timely(proposal: Proposal, block_time_ms: int, now_ms: int, params: Params) -> bool:
    """R28: a fresh value (no POL round) must not be ahead of our clock by more than
    `max_clock_drift_ms`; re-proposals are exempt."""
    return proposal.pol_round != NO_POL_ROUND or block_time_ms <= now_ms + params.max_clock_drift_ms


def evidence_valid_now(store: ChainStore, chain_id: str, params: Params, height: int, now_ms: int,
                       body: Any) -> bool:
    """R27: whether a peer's evidence item is valid evidence in a block at `height` now."""
    context = evidence_context(chain_id, params, height, now_ms)
    try:
        check_evidence(State(store), context, body)
    except (InvalidBlock, KeyError, TypeError):
        return False
    return True


class BlockChecker:
    """Decodes and executes a proposed block on the current tip (R26)."""

    def __init__(self, store: ChainStore, chain_id: str, params: Params,
                 signature_known_valid: Callable[[bytes], bool], metrics: NodeMetrics) -> None:
        self.store = store
        """The chain (tip, state, validator sets)."""
        self.chain_id = chain_id
        """The chain the block must be for."""
        self.params = params
        """Genesis parameters (block limits)."""
        self.signature_known_valid = signature_known_valid
        """Whether a transaction's signature was already verified (the mempool's cache)."""
        self.metrics = metrics
        """Signature checks and validation time are counted here."""

    def check(self, raw: bytes) -> ProposedBlock | None:
        """The block of `raw` with its result on the current tip; None if it does not
        decode, a block without result if it is not for the next height or is invalid."""
        store, metrics = self.store, self.metrics
        try:
            block = decode_block(raw, self.params.max_block_bytes)
        except InvalidBlock:
            return None
        tip = store.head()
        if block.header.height != tip.height + 1:
            return ProposedBlock(block, raw, None)
        try:
            if tip.height > 0:
                if block.last_commit is None:
                    raise InvalidBlock("last_commit missing")
                verify_commit(block.last_commit, self.chain_id, tip.block_hash, tip.height,
                              set_at(State(store), tip.height))
                metrics.signature_checks.labels("commit").inc(len(block.last_commit.signatures))
            known = self.signature_known_valid

            def signature_known(tx_hash: bytes) -> bool:
                if known(tx_hash):
                    return True
                metrics.signature_checks.labels("tx_block").inc()
                return False

            started = time.perf_counter()
            result = apply_block(store, tip, self.chain_id, self.params, block, signature_known)
            metrics.observe_stage("validate", time.perf_counter() - started)
        except InvalidBlock as error:
            log.info("invalid proposal at height %d: %s", block.header.height, error.message,
                     extra=log_fields(event="proposal_invalid", height=block.header.height, error=error.message))
            return ProposedBlock(block, raw, None)
        return ProposedBlock(block, raw, result)

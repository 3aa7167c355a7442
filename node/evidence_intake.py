"""A peer's evidence item, checked cheapest first before it reaches the pool (PROTOCOL R27).

`check_evidence` (marketplace_tx/rules/evidence.py) verifies both signatures before it
asks whether the signer was a validator; a peer's item instead passes, in order:

1. its **shape** (`evidence_shape_error`, no state, no signature): the map and its two
   signed votes, this chain, the same (height, round, type), different block hashes,
   canonical order: else `MALFORMED_COST`;
2. the **seen-cache**: an item already pending in the pool or checked recently
   (`CHECKED_CACHE_SIZE`) is dropped without any work;
3. its **standing** (state reads): a height below the one being decided, a signer in
   the set of that height and in the set as it will be (R27 v2), not already punished:
   else `STALE_EVIDENCE_COST`; an item against a validator the pool already holds
   evidence against is dropped for free (one item per validator is enough);
4. the **two signatures**, in a thread (off the event loop), after the sender was
   charged `EVIDENCE_CHECK_COST`; a bad one costs `BAD_SIGNATURE_COST` more.

Only then is the item handed to the driver, which keeps and gossips it.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from marketplace_tx.chain.params import Params
from marketplace_tx.primitives import codec
from marketplace_tx.rules.evidence import VOTE_KEYS, standing_error
from marketplace_tx.rules.state import State
from node.evidence_pool import EvidencePool, evidence_id
from node.fault_plan import Clock
from node.inbound_checks import evidence_valid_now
from node.inbound_costs import (
    BAD_SIGNATURE_COST,
    EVIDENCE_CHECK_COST,
    MALFORMED_COST,
    STALE_EVIDENCE_COST,
)
from node.peer_actions import PeerActions
from node.storage import ChainStore

if TYPE_CHECKING:
    from node.http.metrics import NodeMetrics

CHECKED_CACHE_SIZE = 4096
"""Identities of evidence items whose signatures were checked recently (not checked again)."""

_UINT64_LIMIT = 2**63


def _is_uint(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < _UINT64_LIMIT


def _vote_shape_error(vote: Any, chain_id: str) -> str | None:
    if not isinstance(vote, dict) or set(vote) != VOTE_KEYS:
        return "evidence votes must be signed vote maps"
    if vote["chain_id"] != chain_id or vote["type"] not in ("prevote", "precommit"):
        return "evidence vote is for another chain or of an unknown type"
    if not _is_uint(vote["height"]) or vote["height"] < 1 or not _is_uint(vote["round"]):
        return "evidence vote height or round out of range"
    block_hash = vote["block_hash"]
    if block_hash is not None and (not isinstance(block_hash, bytes) or len(block_hash) != 32):
        return "evidence vote block_hash must be 32 bytes or nil"
    if not isinstance(vote["signature"], bytes) or len(vote["signature"]) != 64:
        return "evidence vote signature must be 64 bytes"
    return None


def evidence_shape_error(item: Any, chain_id: str) -> str | None:
    """Why `item` cannot be evidence of equivocation on `chain_id`, found without state
    or signature checks (R27); None if its shape is right."""
    if not isinstance(item, dict) or set(item) != {"validator", "vote_a", "vote_b"}:
        return "evidence must be {validator, vote_a, vote_b}"
    if not isinstance(item["validator"], bytes) or len(item["validator"]) != 32:
        return "evidence.validator must be 32 bytes"
    vote_a, vote_b = item["vote_a"], item["vote_b"]
    for vote in (vote_a, vote_b):
        error = _vote_shape_error(vote, chain_id)
        if error is not None:
            return error
    if any(vote_a[key] != vote_b[key] for key in ("height", "round", "type")):
        return "evidence votes are for different (height, round, type)"
    if vote_a["block_hash"] == vote_b["block_hash"] or codec.encode(vote_a) >= codec.encode(vote_b):
        return "evidence votes do not conflict or are not in canonical order"
    return None


class EvidenceIntake:
    """Judges peers' evidence items, cheapest checks first."""

    def __init__(self, *, store: ChainStore, chain_id: str, params: Params, clock: Clock, pool: EvidencePool,
                 peers: PeerActions, metrics: NodeMetrics, current_height: Callable[[], int]) -> None:
        self.store = store
        """The chain state (validator sets, punishments)."""
        self.chain_id = chain_id
        """The chain evidence must be for."""
        self.params = params
        """Genesis parameters."""
        self.clock = clock
        """The node's clock (ms)."""
        self.pool = pool
        """Evidence already kept (R27)."""
        self.peers = peers
        """Penalize senders of invalid items (R32)."""
        self.metrics = metrics
        """Signature checks are counted here."""
        self.current_height = current_height
        """The height being decided: evidence must be of a lower one."""
        self._checked: OrderedDict[bytes, bool] = OrderedDict()

    async def check(self, peer: bytes, item: Any) -> bool:
        """True if `item` from `peer` is valid new evidence now (R27); False if it was
        dropped, after charging the peer what it cost."""
        error = evidence_shape_error(item, self.chain_id)
        if error is not None:
            self.peers.penalize(peer, MALFORMED_COST, error)
            return False
        identity = evidence_id(item)
        if identity in self._checked or self.pool.holds(identity):
            return False
        height = self.current_height()
        standing = self._standing(item, height)
        if standing is not None:
            if standing:
                self.peers.penalize(peer, STALE_EVIDENCE_COST, standing)
            return False
        self.peers.penalize(peer, EVIDENCE_CHECK_COST, "evidence signatures checked")
        self.metrics.signature_checks.labels("evidence").inc(2)
        valid = await asyncio.to_thread(
            evidence_valid_now, self.store, self.chain_id, self.params, height, self.clock(), item
        )
        self._remember(identity, valid)
        if not valid:
            self.peers.penalize(peer, BAD_SIGNATURE_COST, "evidence signature")
        return valid

    def _standing(self, item: dict[str, Any], height: int) -> str | None:
        """Why the item cannot count now ('' if another item against its validator is
        pending: dropped for free); None if it may."""
        validator, evidence_height = item["validator"], item["vote_a"]["height"]
        if evidence_height >= height:
            return "evidence of a height not below the current one"
        if self.pool.against(validator):
            return ""
        return standing_error(State(self.store), validator, evidence_height)

    def _remember(self, identity: bytes, valid: bool) -> None:
        self._checked[identity] = valid
        while len(self._checked) > CHECKED_CACHE_SIZE:
            self._checked.popitem(last=False)

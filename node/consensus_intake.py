"""A peer's proposal or vote, from its arrival to the driver's queue (PROTOCOL R25–R27, R32).

Cheap checks run first, the signature check after them, and only a verified message
is queued; every rejection costs the sender score (node/inbound_costs.py):

1. the wire shape (node/consensus_messages.py): `MALFORMED_COST`;
2. the chain, the height and the round, against the height being decided and the
   last stored block (`head`):
   - another chain: `MALFORMED_COST`;
   - a past height: dropped, free (an honest peer's late copy);
   - the current height: on to step 3;
   - a future height up to `head + FUTURE_HEIGHTS_AHEAD` (node/future_messages.py):
     on to step 3, checked against the set of that height (known, R34);
   - a later height up to `head + CATCH_UP_HEIGHTS_AHEAD`, or up to the height block
     sync catches up to (`sync_target`, proved by a peer) + `FUTURE_HEIGHTS_AHEAD`
     (what the network is deciding: a node that fell behind must not lose the round it
     will join): on to step 3 against the projected set (the best known; a proposal
     failing against it, or a vote of a non-member, costs only `UNPROVEN_HEIGHT_COST`),
     checked again against the real set when its height starts;
   - beyond: dropped unverified (nothing unverified reaches `PeerActions.maybe_sync`);
     `UNPROVEN_HEIGHT_COST` each while this node is not syncing, else only
     `BEYOND_WINDOW_COST` for each new highest height the peer names;
3. the signer: a vote's validator must be in the height's set (`NOT_A_VALIDATOR_COST`);
   a proposal is checked against the proposer of its round (R25);
4. the signature (R26): `BAD_SIGNATURE_COST`; a message more than `MAX_ROUNDS_AHEAD`
   rounds ahead is dropped after it, for free if its signature is good.

A verified message of the current height waits in the driver's `CURRENT` lane
(node/driver_queue.py; `put` waits while it is full, which stops reading from the
peer); one of a future height is kept in `FutureMessages` within its byte budget, or
dropped and forgotten by the seen-cache so that an honest copy is taken later; being
signed by a validator of that height, it may also start block sync (to head + 1 at most).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from consensus.proposal import Proposal
from consensus.state import ConsensusState
from consensus.vote import Vote
from marketplace_tx.rules.state import State
from marketplace_tx.rules.validators import projected_validators, proposer_for, set_at
from node.consensus_messages import MessageRejected, parse_proposal, parse_vote
from node.driver_queue import CURRENT, DriverQueue, Job
from node.future_messages import CATCH_UP_HEIGHTS_AHEAD, FUTURE_HEIGHTS_AHEAD, FutureMessages
from node.inbound_checks import MAX_ROUNDS_AHEAD
from node.inbound_costs import (
    BAD_SIGNATURE_COST,
    BEYOND_WINDOW_COST,
    MALFORMED_COST,
    NOT_A_VALIDATOR_COST,
    UNPROVEN_HEIGHT_COST,
)
from node.peer_actions import PeerActions
from node.storage import ChainStore

if TYPE_CHECKING:
    from node.http.metrics import NodeMetrics

log = logging.getLogger("marketchain.consensus")

ENVELOPE_BYTES = 256
"""Bytes counted for a message beyond its block: keys, hashes, signature, framing."""
MAX_TRACKED_PEERS = 4096
"""Peers whose highest beyond-window height is remembered (least recently used first out)."""

ForgetSeen = Callable[[str, Any], None]
"""Tell the p2p seen-cache to forget a message (`forget(kind, body)`), so that a later
copy is delivered again."""


PROJECTED = -1
"""The key of the projected set (R27 v2: once every decided change is in force) in the
cache of sets: the best known set of heights beyond head + 2."""


def _forget_nothing(kind: str, body: Any) -> None:
    """The default `ForgetSeen`: no seen-cache to tell."""


def _no_sync_target() -> int:
    """The default `sync_target`: no block sync to ask."""
    return 0


@dataclass(frozen=True)
class _Placement:
    """Against which set a message is checked, and where it goes."""

    validators: tuple[bytes, ...]
    """The set of the message's height (the projected set when `exact` is False)."""
    current: bool
    """For the height being decided (else a later one)."""
    usable: bool
    """Its round is near enough to be used (else dropped after the signature check)."""
    exact: bool
    """`validators` is the set of that height for sure (heights up to head + 2)."""

    @property
    def bad_signature_cost(self) -> float:
        """What a proposal's bad signature costs: less against a projected set, which may
        be stale (then its round's proposer is another)."""
        return BAD_SIGNATURE_COST if self.exact else UNPROVEN_HEIGHT_COST

    @property
    def outsider_cost(self) -> float:
        """What a vote of a non-member costs: less against a projected set."""
        return NOT_A_VALIDATOR_COST if self.exact else UNPROVEN_HEIGHT_COST


class ConsensusIntake:
    """Judges peers' proposals and votes and hands the verified ones to the driver."""

    def __init__(
        self,
        *,
        store: ChainStore,
        chain_id: str,
        peers: PeerActions,
        metrics: NodeMetrics,
        state: Callable[[], ConsensusState],
        queue: DriverQueue,
        future: FutureMessages,
        on_proposal: Callable[[bytes, Proposal, bytes, bytes], Awaitable[None]],
        on_vote: Callable[[bytes, bytes, Vote, bytes], Awaitable[None]],
        forget_seen: ForgetSeen | None = None,
        sync_target: Callable[[], int] | None = None,
    ) -> None:
        self.store = store
        """The chain (its head bounds the future window; validator sets of later heights)."""
        self.chain_id = chain_id
        """The chain messages must be for."""
        self.peers = peers
        """Penalize senders, sync from a peer ahead (R30, R32)."""
        self.metrics = metrics
        """Signature checks are counted here."""
        self.state = state
        """The consensus core's state now (height, round, validators)."""
        self.queue = queue
        """The driver's queue: verified messages of the current height go to its `CURRENT` lane."""
        self.future = future
        """Verified messages of the next heights."""
        self.on_proposal = on_proposal
        """The driver's handling of a verified proposal: `(peer, proposal, signature, raw block)`."""
        self.on_vote = on_vote
        """The driver's handling of a verified vote: `(peer, validator, vote, signature)`."""
        self.forget_seen = forget_seen or _forget_nothing
        """Make the seen-cache forget a message dropped for lack of room."""
        self.sync_target = sync_target or _no_sync_target
        """The height block sync catches up to, proved by a peer (R30; node/block_sync.py)."""
        self._sets: dict[int, tuple[bytes, ...]] = {}
        self._sets_head = -1
        self._beyond: OrderedDict[bytes, int] = OrderedDict()

    async def proposal(self, peer: bytes, body: Any) -> None:
        """A `proposal` message from `peer`."""
        try:
            proposal, signature, raw = parse_proposal(body)
        except MessageRejected as error:
            self.peers.penalize(peer, MALFORMED_COST, f"proposal: {error}")
            return
        placed = self._place(peer, proposal.chain_id, proposal.height, proposal.round)
        if placed is None:
            return
        self.metrics.signature_checks.labels("proposal").inc()
        if not proposal.verify(proposer_for(placed.validators, proposal.height, proposal.round), signature):
            self.peers.penalize(peer, placed.bad_signature_cost, "proposal signature")
            return
        if not placed.usable:
            return
        handler = self.on_proposal if placed.exact else self._recheck_proposal
        await self._deliver(peer, "proposal", body, proposal.height, len(raw) + ENVELOPE_BYTES, placed,
                            lambda: handler(peer, proposal, signature, raw))

    async def vote(self, peer: bytes, body: Any) -> None:
        """A `vote` message from `peer`."""
        try:
            validator, vote, signature = parse_vote(body)
        except MessageRejected as error:
            self.peers.penalize(peer, MALFORMED_COST, f"vote: {error}")
            return
        placed = self._place(peer, vote.chain_id, vote.height, vote.round)
        if placed is None:
            return
        if validator not in placed.validators:
            self.peers.penalize(peer, placed.outsider_cost, "vote of a non-validator")
            return
        self.metrics.signature_checks.labels("vote").inc()
        if not vote.verify(validator, signature):  # its signer is named: bad whatever the set
            self.peers.penalize(peer, BAD_SIGNATURE_COST, "vote signature")
            return
        if not placed.usable:
            return
        await self._deliver(peer, "vote", body, vote.height, ENVELOPE_BYTES, placed,
                            lambda: self.on_vote(peer, validator, vote, signature))

    async def _recheck_proposal(self, peer: bytes, proposal: Proposal, signature: bytes, raw: bytes) -> None:
        """A proposal kept against the projected set, once its height starts: checked
        again against the proposer of the set now known (a vote's membership is checked
        again by the driver)."""
        state = self.state()
        if proposal.height != state.height or not state.validators:
            return
        self.metrics.signature_checks.labels("proposal").inc()
        if proposal.verify(proposer_for(state.validators, proposal.height, proposal.round), signature):
            await self.on_proposal(peer, proposal, signature, raw)

    def _place(self, peer: bytes, chain_id: str, height: int, round_number: int) -> _Placement | None:
        """Against which set a message is checked and where it goes; None when it is
        dropped (and charged, if it must be)."""
        if chain_id != self.chain_id:
            self.peers.penalize(peer, MALFORMED_COST, "consensus message of another chain")
            return None
        state = self.state()
        if height < state.height:
            return None
        if height == state.height:
            if not state.validators:
                return None
            return _Placement(state.validators, True, round_number <= state.round + MAX_ROUNDS_AHEAD, True)
        head = self.store.head().height
        if height <= head:
            return None
        usable = round_number <= MAX_ROUNDS_AHEAD
        if height <= head + FUTURE_HEIGHTS_AHEAD:
            validators = self._validators_at(height, head)
            return _Placement(validators, False, usable, True) if validators else None
        target = self.sync_target()
        if height <= max(head + CATCH_UP_HEIGHTS_AHEAD, target + FUTURE_HEIGHTS_AHEAD):
            validators = self._validators_at(PROJECTED, head)
            return _Placement(validators, False, usable, False) if validators else None
        self._beyond_window(peer, height, syncing=target > head + 1)
        return None

    def _validators_at(self, height: int, head: int) -> tuple[bytes, ...]:
        """The set of a height up to head + 2, or the projected set for `PROJECTED`
        (cached until the head moves)."""
        if head != self._sets_head:
            self._sets, self._sets_head = {}, head
        validators = self._sets.get(height)
        if validators is None:
            state = State(self.store)
            validators = projected_validators(state) if height == PROJECTED else set_at(state, height)
            self._sets[height] = validators
        return validators

    def _beyond_window(self, peer: bytes, height: int, syncing: bool) -> None:
        """Charge a peer for a message beyond the window: every one while no peer proved
        the chain is ahead, else each new highest height it names."""
        if not syncing:
            self.peers.penalize(peer, UNPROVEN_HEIGHT_COST, f"consensus message for unproven height {height}")
            return
        highest = self._beyond.get(peer, -1)
        self._beyond[peer] = max(highest, height)
        self._beyond.move_to_end(peer)
        while len(self._beyond) > MAX_TRACKED_PEERS:
            self._beyond.popitem(last=False)
        if height > highest:
            self.peers.penalize(peer, BEYOND_WINDOW_COST, f"consensus message for height {height}, beyond the window")

    async def _deliver(self, peer: bytes, kind: str, body: Any, height: int, size: int, placed: _Placement,
                       job: Callable[[], Awaitable[None]]) -> None:
        """Queue a verified message of the current height (waiting while the lane is
        full), or keep one of a future height (forgotten by the seen-cache if it does
        not fit)."""
        if placed.current:
            queued: Job = job
            await self.queue.put(queued, size, CURRENT)
            return
        if placed.exact:  # signed by a validator of `height` (≤ head + 2): the network decided height - 1
            self.peers.maybe_sync(peer, height - 1)
        if not self.future.keep(height, peer, size, job):
            log.debug("no room for a %s of height %d from %s", kind, height, peer.hex())
            self.forget_seen(kind, body)

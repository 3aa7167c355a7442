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
from typing import TYPE_CHECKING, Any

from consensus.proposal import Proposal
from consensus.state import ConsensusState
from consensus.vote import Vote
from marketplace_tx.rules.state import State
from marketplace_tx.rules.validators import proposer_for, set_at
from node.consensus_messages import MessageRejected, parse_proposal, parse_vote
from node.driver_queue import CURRENT, DriverQueue, Job
from node.future_messages import FUTURE_HEIGHTS_AHEAD, FutureMessages
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


def _forget_nothing(kind: str, body: Any) -> None:
    """The default `ForgetSeen`: no seen-cache to tell."""


def _never_syncing() -> bool:
    """The default `syncing`: no block sync to ask."""
    return False


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
        syncing: Callable[[], bool] | None = None,
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
        self.syncing = syncing or _never_syncing
        """Whether block sync is catching up with a peer that proved it is ahead (R30)."""
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
        validators, current, usable = placed
        proposer = proposer_for(validators, proposal.height, proposal.round)
        self.metrics.signature_checks.labels("proposal").inc()
        if not proposal.verify(proposer, signature):
            self.peers.penalize(peer, BAD_SIGNATURE_COST, "proposal signature")
            return
        if not usable:
            return
        await self._deliver(peer, "proposal", body, proposal.height, len(raw) + ENVELOPE_BYTES, current,
                            lambda: self.on_proposal(peer, proposal, signature, raw))

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
        validators, current, usable = placed
        if validator not in validators:
            self.peers.penalize(peer, NOT_A_VALIDATOR_COST, "vote of a non-validator")
            return
        self.metrics.signature_checks.labels("vote").inc()
        if not vote.verify(validator, signature):
            self.peers.penalize(peer, BAD_SIGNATURE_COST, "vote signature")
            return
        if not usable:
            return
        await self._deliver(peer, "vote", body, vote.height, ENVELOPE_BYTES, current,
                            lambda: self.on_vote(peer, validator, vote, signature))

    def _place(self, peer: bytes, chain_id: str, height: int,
               round_number: int) -> tuple[tuple[bytes, ...], bool, bool] | None:
        """(the validator set of `height`, whether it is the current height, whether its
        round is near enough to be used), or None when the message is dropped (and
        charged, if it must be)."""
        if chain_id != self.chain_id:
            self.peers.penalize(peer, MALFORMED_COST, "consensus message of another chain")
            return None
        state = self.state()
        if height < state.height:
            return None
        if height == state.height:
            if not state.validators:
                return None
            return state.validators, True, round_number <= state.round + MAX_ROUNDS_AHEAD
        head = self.store.head().height
        if height > head + FUTURE_HEIGHTS_AHEAD:
            self._beyond_window(peer, height)
            return None
        if height <= head:
            return None
        validators = self._validators_at(height, head)
        return (validators, False, round_number <= MAX_ROUNDS_AHEAD) if validators else None

    def _validators_at(self, height: int, head: int) -> tuple[bytes, ...]:
        """The set of a height up to head + 2 (cached until the head moves)."""
        if head != self._sets_head:
            self._sets, self._sets_head = {}, head
        validators = self._sets.get(height)
        if validators is None:
            validators = self._sets[height] = set_at(State(self.store), height)
        return validators

    def _beyond_window(self, peer: bytes, height: int) -> None:
        """Charge a peer for a message beyond the window: every one while no peer proved
        the chain is ahead, else each new highest height it names."""
        if not self.syncing():
            self.peers.penalize(peer, UNPROVEN_HEIGHT_COST, f"consensus message for unproven height {height}")
            return
        highest = self._beyond.get(peer, -1)
        self._beyond[peer] = max(highest, height)
        self._beyond.move_to_end(peer)
        while len(self._beyond) > MAX_TRACKED_PEERS:
            self._beyond.popitem(last=False)
        if height > highest:
            self.peers.penalize(peer, BEYOND_WINDOW_COST, f"consensus message for height {height}, beyond the window")

    async def _deliver(self, peer: bytes, kind: str, body: Any, height: int, size: int, current: bool,
                       job: Callable[[], Awaitable[None]]) -> None:
        """Queue a verified message of the current height (waiting while the lane is
        full), or keep one of a future height (forgotten by the seen-cache if it does
        not fit)."""
        if current:
            queued: Job = job
            await self.queue.put(queued, size, CURRENT)
            return
        self.peers.maybe_sync(peer, height - 1)  # signed by a validator of `height`: the network decided height - 1
        if not self.future.keep(height, peer, size, job):
            log.debug("no room for a %s of height %d from %s", kind, height, peer.hex())
            self.forget_seen(kind, body)

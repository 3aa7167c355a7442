"""The asyncio driver of the pure consensus core (PROTOCOL R25–R30).

It owns the core's state and is the only place that calls `consensus.tendermint.step`.
Events arrive from the network, the mempool and timers and are processed one at a
time by a single task; the actions the core returns are carried out here: blocks are
built and executed, votes and proposals signed through the `SignGuard` (R27) and
gossiped, timers scheduled, and decided blocks stored with their commits.

A peer's proposal or vote passes node/consensus_intake.py (shape, height window,
membership, signature: cheapest first, each rejection charged to the peer) before it
is queued; one of a later height waits in node/future_messages.py; the driver then
checks its block and R28 timeliness (node/inbound_checks.py). Evidence passes
node/evidence_intake.py, then waits in node/evidence_pool.py (R27). The queue
(node/driver_queue.py) is bounded for peers' messages, with back-pressure: the
`receive_*` methods wait while it is full, so that p2p stops reading from the peer.
The driver receives what it uses (`ConsensusDriver.__init__`), never the whole node.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from consensus.actions import (
    BroadcastProposal,
    BuildProposal,
    CastVote,
    DecideBlock,
    EvidenceFound,
    ScheduleTimeout,
)
from consensus.events import (
    ProposalBuilt,
    ProposalReceived,
    StartHeight,
    TimeoutFired,
    VoteReceived,
    WorkAvailable,
)
from consensus.proposal import Proposal
from consensus.tendermint import initial_state, step
from consensus.timeouts import TimeoutConfig
from consensus.vote import Vote
from marketplace_tx.chain.params import Params
from marketplace_tx.primitives.crypto import KeyPair
from marketplace_tx.rules.deadlines import next_deadline
from marketplace_tx.rules.evidence import make_evidence
from marketplace_tx.rules.state import State
from marketplace_tx.rules.state_transition import BlockResult, build_block
from marketplace_tx.rules.validators import proposer_for, scheduled_changes, set_at
from mempool.pool import Mempool
from node.block_budget import BlockBudget
from node.consensus_intake import ConsensusIntake, ForgetSeen
from node.consensus_messages import ProposedBlock, proposal_body, vote_body, vote_from_signing_bytes
from node.driver_queue import OTHER, DriverQueue, Job
from node.evidence_intake import EvidenceIntake
from node.evidence_pool import EvidencePool
from node.fault_plan import NO_FAULTS, Clock, FaultPlan
from node.future_messages import FutureBudget, FutureMessages
from node.inbound_checks import BlockChecker, Timing, is_timely, proposal_timing, vote_timing
from node.inbound_costs import INVALID_BLOCK_COST
from node.logging_setup import log_fields
from node.peer_actions import Broadcast, PeerActions, Send
from node.sign_guard import DoubleSignRefused, SignGuard
from node.storage import ChainStore

if TYPE_CHECKING:
    from node.http.metrics import NodeMetrics

log = logging.getLogger("marketchain.consensus")

REGOSSIP_INTERVAL_S = 1.0
"""How often a validator resends its current-height messages while deciding."""

EVIDENCE_ENVELOPE_BYTES = 512
"""Bytes counted for an evidence item in the driver's queue (two votes, two signatures)."""


class ConsensusDriver:
    """Runs Tendermint for one node: validator (with a key) or follower (without)."""

    def __init__(
        self,
        *,
        store: ChainStore,
        mempool: Mempool,
        chain_id: str,
        params: Params,
        peers: PeerActions,
        broadcast: Broadcast,
        on_block: Callable[[BlockResult], None],
        metrics: NodeMetrics,
        block_time_budget_ms: int,
        validator_key: KeyPair | None = None,
        sign_guard: SignGuard | None = None,
        faults: FaultPlan = NO_FAULTS,
        clock: Clock | None = None,
        timeouts: TimeoutConfig | None = None,
        forget_seen: ForgetSeen | None = None,
        sync_target: Callable[[], int] | None = None,
    ) -> None:
        self.store = store
        """The chain: tip, state, commits, saved proposals."""
        self.mempool = mempool
        """Transactions for this node's proposals (R29: whether work is pending)."""
        self.chain_id = chain_id
        """The chain being decided."""
        self.params = params
        """Genesis parameters."""
        self.peers = peers
        """Penalize, relay to and sync from the peers whose messages arrive here (R32)."""
        self.broadcast = broadcast
        """Gossip a message to every peer: `broadcast(kind, body)`."""
        self.on_block = on_block
        """Bookkeeping after a final block is stored (the node's `after_block`)."""
        self.metrics = metrics
        """Build, validation and commit times, rounds, finality, signature checks."""
        self.validator_key = validator_key
        """The validator signing key, if this node has one."""
        self.sign_guard = sign_guard
        """Double-sign protection of the validator key (R27); None without a key."""
        self.faults = faults
        """Test-only faults (node/fault_plan.py); none in production."""
        self.clock = clock if clock is not None else faults.clock()
        """Source of block time and R28 checks (by default the clock of the fault plan)."""
        self.budget = BlockBudget(block_time_budget_ms)
        """Caps this node's proposals at its block time budget (node/block_budget.py)."""
        self.evidence = EvidencePool(store, chain_id, params, self.clock)
        """Evidence of equivocation waiting for a block (R27)."""
        self.blocks = BlockChecker(store, chain_id, params, mempool.signature_known_valid, metrics)
        """Checks and executes proposed blocks (R26)."""
        self.state = initial_state(chain_id, timeouts)
        """The pure core's state."""
        self._queue = DriverQueue()
        self._future = FutureMessages(FutureBudget.for_blocks(params.max_block_bytes))
        self.intake = ConsensusIntake(
            store=store, chain_id=chain_id, peers=peers, metrics=metrics, state=lambda: self.state,
            queue=self._queue, future=self._future, on_proposal=self._on_proposal, on_vote=self._on_vote,
            forget_seen=forget_seen, sync_target=sync_target,
        )
        """Checks peers' proposals and votes, cheapest first, before they are queued."""
        self.evidence_intake = EvidenceIntake(
            store=store, chain_id=chain_id, params=params, clock=self.clock, pool=self.evidence, peers=peers,
            metrics=metrics, current_height=lambda: self.state.height,
        )
        """Checks peers' evidence items, cheapest first, before they are kept (R27)."""
        self._timers: set[asyncio.TimerHandle] = set()
        self._deadline_timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._regossip_timer: asyncio.TimerHandle | None = None
        self._own_messages: list[tuple[str, Any]] = []
        self.decided_at: dict[int, float] = {}
        """Monotonic time each height was decided (finality metrics)."""
        self.height_started_at: float | None = None
        """Monotonic time the current height's first round started (finality metric)."""

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Start consensus at the height after the stored head."""
        self._task = asyncio.create_task(self._run())
        self.submit(self._start_next_height)

    async def stop(self) -> None:
        """Finish the job in progress (a block being stored completes), then stop."""
        for timer in self._timers:
            timer.cancel()
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
        if self._regossip_timer is not None:
            self._regossip_timer.cancel()
        self._stopping = True
        self._queue.close()
        if self._task is not None:
            await self._task

    def submit(self, job: Job) -> None:
        """Queue the node's own work (never refused, never waits) to run on the driver's
        task, after the node's work queued before it and before peers' messages."""
        if not self._stopping:
            self._queue.put_own(job)

    async def _run(self) -> None:
        while True:
            job = await self._queue.get()
            if job is None or self._stopping:
                return
            try:
                outcome = job()
                if asyncio.iscoroutine(outcome):
                    await outcome
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug must not stop consensus: log it and go on
                log.exception("consensus job failed")

    # --- feeding the core ------------------------------------------------------------

    async def _feed(self, event: Any) -> None:
        pending = [event]
        while pending:
            self.state, actions = step(self.state, pending.pop(0))
            if self.height_started_at is None and self.state.started:
                self.height_started_at = time.monotonic()
            for action in actions:
                follow_up = await self._perform(action)
                if follow_up is not None:
                    pending.append(follow_up)
        self._arm_regossip()

    def _arm_regossip(self) -> None:
        """While a height is being decided, resend our messages now and then, so that
        peers that missed them (dropped, restarted, newly connected) catch up. An idle
        height (not started, R29) sends nothing."""
        if self._regossip_timer is not None or not self.state.started or self.state.decision is not None:
            return
        loop = asyncio.get_running_loop()
        self._regossip_timer = loop.call_later(REGOSSIP_INTERVAL_S, lambda: self.submit(self._regossip))

    async def _regossip(self) -> None:
        self._regossip_timer = None
        if self.state.started and self.state.decision is None:
            for kind, body in self._own_messages:
                self.broadcast(kind, body)
            self._arm_regossip()

    def send_current_messages(self, peer: bytes, send: Send) -> None:
        """Give a newly connected peer what we said at the current height."""
        for kind, body in self._own_messages:
            send(peer, kind, body)

    async def _perform(self, action: Any) -> Any:
        if isinstance(action, BuildProposal):
            return await self._build(action)
        if isinstance(action, BroadcastProposal):
            self._broadcast_proposal(action)
        elif isinstance(action, CastVote):
            return self._cast_vote(action)
        elif isinstance(action, ScheduleTimeout):
            self._schedule(action)
        elif isinstance(action, DecideBlock):
            await self._decide(action)
        elif isinstance(action, EvidenceFound):
            self._add_evidence(make_evidence(
                action.vote_a.validator,
                {**action.vote_a.vote.to_map(), "signature": action.vote_a.signature},
                {**action.vote_b.vote.to_map(), "signature": action.vote_b.signature},
            ), gossip=True)
        return None

    # --- heights ---------------------------------------------------------------------

    async def _start_next_height(self) -> None:
        self.height_started_at = None
        tip = self.store.head()
        height = tip.height + 1
        validators = set_at(State(self.store), height)
        key = self.validator_key
        own = key.address if key is not None and key.address in validators else None
        await self._feed(StartHeight(height, validators, own))
        self._restore_lock()
        self._own_messages = []
        for job in self._future.take(height):
            await job()
        self._arm_deadline_timer()
        if self.work_pending():
            await self._feed(WorkAvailable(height))

    def _restore_lock(self) -> None:
        """After a restart: lock on the value this validator precommitted (R27)."""
        guard = self.sign_guard
        if guard is None or self.state.own_address is None:
            return
        height = self.state.height
        best: tuple[int, bytes] | None = None
        for round_number in range(0, 1000):
            message = guard.signed(height, round_number, "precommit")
            if message is None:
                if round_number > 50:
                    break
                continue
            vote = vote_from_signing_bytes(message)
            if vote.block_hash is not None:
                best = (round_number, vote.block_hash)
        if best is None:
            return
        raw = self.store.saved_proposal(height, best[1])
        proposed = self.blocks.check(raw) if raw is not None else None
        if proposed is None:
            return
        log.info("restored lock at height %d round %d on %s", height, best[0], best[1].hex()[:16],
                 extra=log_fields(event="lock_restored", height=height, round=best[0], block=best[1].hex()))
        self.state = self.state.evolve(
            locked_value=best[1], locked_round=best[0], valid_value=best[1], valid_block=proposed, valid_round=best[0]
        )

    def work_pending(self) -> bool:
        """R29: transactions ready, an order deadline due, or a validator change pending."""
        if self.mempool.has_ready():
            return True
        if len(self.evidence) and self.evidence.usable(self.store.head().height + 1):
            return True
        state = State(self.store)
        deadline = next_deadline(state)
        if deadline is not None and deadline <= self.clock():
            return True
        return bool(scheduled_changes(state))

    def notify_work(self) -> None:
        """Transactions arrived (or a deadline is due): start the height if it waits for work."""
        if not self.state.started:
            self.submit(self._start_if_work)

    async def _start_if_work(self) -> None:
        if not self.state.started and self.work_pending():
            await self._feed(WorkAvailable(self.state.height))

    def _arm_deadline_timer(self) -> None:
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
        deadline = next_deadline(State(self.store))
        if deadline is None:
            return
        delay = max(0.0, (deadline - self.clock()) / 1000)
        loop = asyncio.get_running_loop()
        self._deadline_timer = loop.call_later(delay, self.notify_work)

    # --- actions ---------------------------------------------------------------------

    async def _build(self, action: BuildProposal) -> ProposalBuilt | None:
        store = self.store
        tip = store.head()
        if tip.height + 1 != action.height:
            return None
        last_commit = store.commit(tip.height) if tip.height else None
        evidence = self.evidence.usable(action.height)
        most = min(self.budget.transaction_limit() or self.params.max_block_txs, self.params.max_block_txs)
        candidates = list(self.mempool.ready(2 * most))  # by fee rate; twice the cap, for those skipped
        time_ms = max(self.clock(), tip.time + 1)
        started = time.perf_counter()
        result = await asyncio.to_thread(
            build_block, store, tip, self.chain_id, self.params, self.state.own_address, time_ms,
            candidates, last_commit, evidence, self.budget.transaction_limit(),
        )
        elapsed = time.perf_counter() - started
        self.budget.observe(len(result.transactions), elapsed)
        self.metrics.observe_stage("build", elapsed)
        proposed = ProposedBlock(result.block, result.block.encode(), result)
        return ProposalBuilt(action.height, action.round, result.block.hash, proposed)

    def _broadcast_proposal(self, action: BroadcastProposal) -> None:
        proposed: ProposedBlock = action.block  # type: ignore[assignment]
        proposal = Proposal(self.chain_id, action.height, action.round, action.pol_round, action.block_hash)
        guard = self.sign_guard
        assert guard is not None, "only a validator proposes"
        try:
            signature = guard.sign(action.height, action.round, "proposal", proposal.signing_bytes())
        except DoubleSignRefused as error:
            log.warning("not proposing: %s", error)
            return
        self.store.save_proposal(action.height, action.block_hash, proposed.raw)
        body = proposal_body(proposal, signature, proposed.raw)
        self._own_messages.append(("proposal", body))
        self.broadcast("proposal", body)

    def _cast_vote(self, action: CastVote) -> VoteReceived | None:
        vote = Vote(self.chain_id, action.height, action.round, action.type, action.block_hash)
        guard, key = self.sign_guard, self.validator_key
        assert guard is not None and key is not None, "only a validator votes"
        message = vote.signing_bytes()
        try:
            signature = guard.sign(action.height, action.round, action.type, message)
        except DoubleSignRefused:
            previous = guard.signed(action.height, action.round, action.type)
            vote = vote_from_signing_bytes(previous)
            signature = guard.sign(action.height, action.round, action.type, previous)
            log.warning("re-sending the %s already signed at %d/%d", action.type, action.height, action.round)
        if action.type == "precommit" and vote.block_hash is not None:
            record = self.state.proposals.get(action.round, {}).get(vote.block_hash)
            if record is not None:
                self.store.save_proposal(action.height, vote.block_hash, record.block.raw)
        body = vote_body(key.address, vote, signature)
        self._own_messages.append(("vote", body))
        self.broadcast("vote", body)
        if self.faults.equivocate and action.type == "prevote":
            self._send_conflicting_vote(vote)
        return VoteReceived(key.address, vote, signature)

    def _send_conflicting_vote(self, vote: Vote) -> None:
        """TEST-ONLY FAULT (`FaultPlan.equivocate`, from MARKETCHAIN_TEST_FAULT=equivocate):
        also sign and gossip a conflicting prevote, bypassing the sign guard, so that
        tests can watch the others catch it as evidence (R27). Never enabled in production."""
        other = b"\xee" * 32 if vote.block_hash != b"\xee" * 32 else b"\xdd" * 32
        conflicting = Vote(vote.chain_id, vote.height, vote.round, vote.type, other)
        key = self.validator_key
        assert key is not None, "only a validator votes"
        self.broadcast("vote", vote_body(key.address, conflicting, key.sign(conflicting.signing_bytes())))

    def _schedule(self, action: ScheduleTimeout) -> None:
        loop = asyncio.get_running_loop()
        event = TimeoutFired(action.height, action.round, action.step)

        def fire() -> None:
            self._timers.discard(handle)
            self.submit(lambda: self._on_timeout(event))

        handle = loop.call_later(action.delay_ms / 1000, fire)
        self._timers.add(handle)

    async def _on_timeout(self, event: TimeoutFired) -> None:
        if event.height != self.state.height:
            return
        for kind, body in self._own_messages:  # re-gossip: peers that missed them catch up
            self.broadcast(kind, body)
        await self._feed(event)

    async def _decide(self, action: DecideBlock) -> None:
        proposed: ProposedBlock = action.block  # type: ignore[assignment]
        store = self.store
        if store.head().height + 1 != action.height:
            return
        result = proposed.result
        if result is None:
            validated = self.blocks.check(proposed.raw)
            if validated is None or validated.result is None:
                log.error("decided block %s does not apply here", action.block_hash.hex(),
                          extra=log_fields(event="decided_block_invalid", height=action.height,
                                           block=action.block_hash.hex()))
                return
            result = validated.result
        started = time.perf_counter()
        await asyncio.to_thread(store.commit_block, result, action.commit)
        metrics = self.metrics
        metrics.observe_stage("commit", time.perf_counter() - started)
        metrics.rounds.observe(action.round + 1)
        if self.height_started_at is not None:
            metrics.finality.observe(time.monotonic() - self.height_started_at)
        self.on_block(result)
        self.evidence.remove_included(result.block.evidence)
        self.evidence.usable(action.height + 1)  # drop items this block made stale
        self.decided_at[action.height] = time.monotonic()
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        log.info("final %d %s round=%d txs=%d", action.height, action.block_hash.hex()[:16], action.round,
                 len(result.transactions),
                 extra=log_fields(event="block_final", height=action.height, block=action.block_hash.hex(),
                                  round=action.round, txs=len(result.transactions)))
        self.broadcast("status", {"height": action.height, "block_hash": action.block_hash})
        await self._start_next_height()

    # --- evidence (R27) ----------------------------------------------------------------

    def _add_evidence(self, item: dict[str, Any], gossip: bool) -> None:
        if not self.evidence.add(item):
            return
        if gossip:
            self.broadcast("evidence", item)
        self.notify_work()

    async def receive_evidence(self, peer: bytes, body: Any) -> None:
        """An evidence item from a peer: checked cheapest first (node/evidence_intake.py),
        then kept and gossiped if valid now (R27); waits while the queue is full."""
        if await self.evidence_intake.check(peer, body):
            await self._queue.put(lambda: self._add_evidence(body, gossip=True), EVIDENCE_ENVELOPE_BYTES, OTHER)

    # --- incoming proposals and votes (node/consensus_intake.py) ----------------------

    async def receive_proposal(self, peer: bytes, body: Any) -> None:
        """A proposal from a peer: checked, then queued or kept for its height; waits
        while the queue is full (back-pressure on the peer)."""
        await self.intake.proposal(peer, body)

    async def _on_proposal(self, peer: bytes, proposal: Proposal, signature: bytes, raw: bytes) -> None:
        """A proposal whose signature was checked: its block is checked, then the core gets it."""
        if proposal_timing(self.state, self.chain_id, proposal) is not Timing.CURRENT:
            return
        proposer = proposer_for(self.state.validators, proposal.height, proposal.round)
        proposed = await asyncio.to_thread(self.blocks.check, raw)
        if proposed is None or proposed.block.hash != proposal.block_hash:
            self.peers.penalize(peer, INVALID_BLOCK_COST, "proposal block does not match")
            return
        timely = is_timely(proposal, proposed.block.header.time, self.clock(), self.params)  # R28
        self.peers.relay(peer, "proposal", proposal_body(proposal, signature, raw))
        await self._feed(ProposalReceived(proposal, proposer, proposed, proposed.result is not None, timely))

    async def receive_vote(self, peer: bytes, body: Any) -> None:
        """A vote from a peer: checked, then queued or kept for its height; waits while
        the queue is full (back-pressure on the peer)."""
        await self.intake.vote(peer, body)

    async def _on_vote(self, peer: bytes, validator: bytes, vote: Vote, signature: bytes) -> None:
        """A vote whose signature was checked: relayed, then the core gets it."""
        if vote_timing(self.state, self.chain_id, validator, vote) is not Timing.CURRENT:
            return
        self.peers.relay(peer, "vote", vote_body(validator, vote, signature))
        await self._feed(VoteReceived(validator, vote, signature))

    def resync(self) -> None:
        """Block sync moved the head: restart consensus at the new height."""
        self.submit(self._resync)

    async def _resync(self) -> None:
        if self.store.head().height + 1 > self.state.height:
            for timer in self._timers:
                timer.cancel()
            self._timers.clear()
            await self._start_next_height()


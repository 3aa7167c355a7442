"""The asyncio driver of the pure consensus core (PROTOCOL R25–R30).

It owns the core's state and is the only place that calls `consensus.tendermint.step`.
Events arrive from the network, the mempool and timers and are processed one at a
time by a single task; the actions the core returns are carried out here: blocks are
built and executed, votes and proposals signed through the `SignGuard` (R27) and
gossiped, timers scheduled, and decided blocks stored with their commits.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from consensus.actions import (
    BroadcastProposal,
    BuildProposal,
    CastVote,
    DecideBlock,
    EvidenceFound,
    ScheduleTimeout,
)
from consensus.commit import verify_commit
from consensus.events import (
    ProposalBuilt,
    ProposalReceived,
    StartHeight,
    TimeoutFired,
    VoteReceived,
    WorkAvailable,
)
from consensus.proposal import NO_POL_ROUND, Proposal
from consensus.tendermint import initial_state, is_future_height, step
from consensus.timeouts import TimeoutConfig
from consensus.vote import Vote
from marketplace_tx.chain.block import decode_block
from marketplace_tx.primitives.errors import InvalidBlock
from marketplace_tx.rules.context import BlockContext
from marketplace_tx.rules.deadlines import next_deadline
from marketplace_tx.rules.evidence import check_evidence, make_evidence
from marketplace_tx.rules.state import State
from marketplace_tx.rules.state_transition import apply_block, build_block
from marketplace_tx.rules.validators import proposer_for, scheduled_changes, set_at
from node.block_budget import BlockBudget
from node.consensus_messages import (
    MessageRejected,
    ProposedBlock,
    parse_proposal,
    parse_vote,
    proposal_body,
    vote_body,
    vote_from_signing_bytes,
)
from node.sign_guard import DoubleSignRefused

log = logging.getLogger("marketchain.consensus")

REGOSSIP_INTERVAL_S = 1.0
"""How often a validator resends its current-height messages while deciding."""

MAX_ROUNDS_AHEAD = 50
"""Messages for rounds this far beyond ours are dropped (a faulty validator could
otherwise make the core keep vote sets for absurd rounds)."""

MAX_BUFFERED_MESSAGES = 10_000
"""Messages of future heights kept until the node gets there."""


def wall_clock_ms() -> int:
    """The node's clock in ms since the Unix epoch.

    TEST-ONLY: the environment variable `MARKETCHAIN_TEST_CLOCK_SKEW_MS` (an integer,
    negative for a clock behind) is added to it, so that fault tests can run a node
    whose clock drifts within or beyond `max_clock_drift_ms` (R28; docs/faults.md).
    A warning is logged once per value; a value that is not an integer is ignored.
    """
    now = int(time.time() * 1000)
    setting = os.environ.get("MARKETCHAIN_TEST_CLOCK_SKEW_MS")
    if not setting:
        return now
    try:
        skew = int(setting)
    except ValueError:
        skew = 0
    announced: set[str] = wall_clock_ms.__dict__.setdefault("announced", set())
    if setting not in announced:
        announced.add(setting)
        if skew or setting.strip() in ("0", "+0", "-0"):
            log.warning("TEST CLOCK SKEW ACTIVE: MARKETCHAIN_TEST_CLOCK_SKEW_MS=%d ms is added to this clock", skew)
        else:
            log.warning("MARKETCHAIN_TEST_CLOCK_SKEW_MS=%r is not an integer; ignored", setting)
    return now + skew


class ConsensusDriver:
    """Runs Tendermint for one node: validator (with a key) or follower (without)."""

    def __init__(self, node: Any, broadcast: Callable[[str, Any], Any], timeouts: TimeoutConfig | None = None,
                 clock: Callable[[], int] = wall_clock_ms) -> None:
        self.node = node
        """The node: store, mempool, genesis, sign guard, validator key."""
        self.broadcast = broadcast
        """Gossip a message to every peer: `broadcast(kind, body)`."""
        self.clock = clock
        """Source of block time and R28 checks."""
        self.chain_id = node.genesis.chain_id
        self.params = node.genesis.params
        self.budget = BlockBudget(node.config.consensus.block_time_budget_ms)
        """Caps this node's proposals at its block time budget (node/block_budget.py)."""
        self.state = initial_state(self.chain_id, timeouts)
        self._queue: asyncio.Queue[Callable[[], Awaitable[None] | None]] = asyncio.Queue()
        self._future: list[tuple[int, Any]] = []
        self._timers: set[asyncio.TimerHandle] = set()
        self._deadline_timer: asyncio.TimerHandle | None = None
        self._evidence_pool: dict[bytes, dict] = {}
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._regossip_timer: asyncio.TimerHandle | None = None
        self._own_messages: list[tuple[str, Any]] = []
        self.equivocate = os.environ.get("MARKETCHAIN_TEST_FAULT") == "equivocate"
        """Test-only fault switch: sign conflicting prevotes (see `_send_conflicting_vote`)."""
        if self.equivocate:
            log.warning("TEST FAULT ACTIVE: this validator will equivocate")
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
        if self._task is not None:
            self._queue.put_nowait(None)  # type: ignore[arg-type]
            await self._task

    def submit(self, job: Callable[[], Awaitable[None] | None]) -> None:
        """Queue work to run on the driver's task, after the work queued before it."""
        if not self._stopping:
            self._queue.put_nowait(job)

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

    def send_current_messages(self, peer: bytes, send: Callable[[bytes, str, Any], Any]) -> None:
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
        tip = self.node.store.head()
        height = tip.height + 1
        validators = set_at(State(self.node.store), height)
        key = self.node.validator_key
        own = key.address if key is not None and key.address in validators else None
        await self._feed(StartHeight(height, validators, own))
        self._restore_lock()
        self._own_messages = []
        buffered = [message for message in self._future if message[0] == height]
        self._future = [message for message in self._future if message[0] > height]
        for _, job in buffered:
            await job()
        self._arm_deadline_timer()
        if self.work_pending():
            await self._feed(WorkAvailable(height))

    def _restore_lock(self) -> None:
        """After a restart: lock on the value this validator precommitted (R27)."""
        guard = self.node.sign_guard
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
        raw = self.node.store.saved_proposal(height, best[1])
        proposed = self._validate_block(raw) if raw is not None else None
        if proposed is None:
            return
        log.info("restored lock at height %d round %d on %s", height, best[0], best[1].hex()[:16])
        self.state = self.state.evolve(
            locked_value=best[1], locked_round=best[0], valid_value=best[1], valid_block=proposed, valid_round=best[0]
        )

    def work_pending(self) -> bool:
        """R29: transactions ready, an order deadline due, or a validator change pending."""
        if self.node.mempool.has_ready():
            return True
        if self._evidence_pool and self._usable_evidence(self.node.store.head().height + 1):
            return True
        state = State(self.node.store)
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
        deadline = next_deadline(State(self.node.store))
        if deadline is None:
            return
        delay = max(0.0, (deadline - self.clock()) / 1000)
        loop = asyncio.get_running_loop()
        self._deadline_timer = loop.call_later(delay, self.notify_work)

    # --- actions ---------------------------------------------------------------------

    async def _build(self, action: BuildProposal) -> ProposalBuilt | None:
        store = self.node.store
        tip = store.head()
        if tip.height + 1 != action.height:
            return None
        last_commit = store.commit(tip.height) if tip.height else None
        evidence = self._usable_evidence(action.height)
        candidates = list(self.node.mempool.ready())
        time_ms = max(self.clock(), tip.time + 1)
        started = time.perf_counter()
        result = await asyncio.to_thread(
            build_block, store, tip, self.chain_id, self.params, self.state.own_address, time_ms,
            candidates, last_commit, evidence, self.budget.transaction_limit(),
        )
        elapsed = time.perf_counter() - started
        self.budget.observe(len(result.transactions), elapsed)
        self.node.metrics.observe_stage("build", elapsed)
        proposed = ProposedBlock(result.block, result.block.encode(), result)
        return ProposalBuilt(action.height, action.round, result.block.hash, proposed)

    def _broadcast_proposal(self, action: BroadcastProposal) -> None:
        proposed: ProposedBlock = action.block  # type: ignore[assignment]
        proposal = Proposal(self.chain_id, action.height, action.round, action.pol_round, action.block_hash)
        try:
            signature = self.node.sign_guard.sign(action.height, action.round, "proposal", proposal.signing_bytes())
        except DoubleSignRefused as error:
            log.warning("not proposing: %s", error)
            return
        self.node.store.save_proposal(action.height, action.block_hash, proposed.raw)
        body = proposal_body(proposal, signature, proposed.raw)
        self._own_messages.append(("proposal", body))
        self.broadcast("proposal", body)

    def _cast_vote(self, action: CastVote) -> VoteReceived | None:
        vote = Vote(self.chain_id, action.height, action.round, action.type, action.block_hash)
        guard, key = self.node.sign_guard, self.node.validator_key
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
                self.node.store.save_proposal(action.height, vote.block_hash, record.block.raw)
        body = vote_body(key.address, vote, signature)
        self._own_messages.append(("vote", body))
        self.broadcast("vote", body)
        if self.equivocate and action.type == "prevote":
            self._send_conflicting_vote(vote)
        return VoteReceived(key.address, vote, signature)

    def _send_conflicting_vote(self, vote: Vote) -> None:
        """TEST-ONLY FAULT (MARKETCHAIN_TEST_FAULT=equivocate): also sign and gossip a
        conflicting prevote, bypassing the sign guard, so that tests can watch the
        others catch it as evidence (R27). Never enabled in production."""
        other = b"\xee" * 32 if vote.block_hash != b"\xee" * 32 else b"\xdd" * 32
        conflicting = Vote(vote.chain_id, vote.height, vote.round, vote.type, other)
        key = self.node.validator_key
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
        store = self.node.store
        if store.head().height + 1 != action.height:
            return
        result = proposed.result
        if result is None:
            validated = self._validate_block(proposed.raw)
            if validated is None or validated.result is None:
                log.error("decided block %s does not apply here", action.block_hash.hex())
                return
            result = validated.result
        started = time.perf_counter()
        await asyncio.to_thread(store.commit_block, result, action.commit)
        metrics = self.node.metrics
        metrics.observe_stage("commit", time.perf_counter() - started)
        metrics.rounds.observe(action.round + 1)
        if self.height_started_at is not None:
            metrics.finality.observe(time.monotonic() - self.height_started_at)
        self.node.after_block(result)
        for item in result.block.evidence:
            self._evidence_pool.pop(_evidence_id(item), None)
        self._usable_evidence(action.height + 1)  # drop items this block made stale
        self.decided_at[action.height] = time.monotonic()
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        log.info("final %d %s round=%d txs=%d", action.height, action.block_hash.hex()[:16], action.round,
                 len(result.transactions))
        self.broadcast("status", {"height": action.height, "block_hash": action.block_hash})
        await self._start_next_height()

    # --- evidence --------------------------------------------------------------------

    def _add_evidence(self, item: dict, gossip: bool) -> None:
        identity = _evidence_id(item)
        if identity in self._evidence_pool:
            return
        self._evidence_pool[identity] = item
        log.warning("equivocation by %s at height %d", item["validator"].hex(), item["vote_a"]["height"])
        if gossip:
            self.broadcast("evidence", item)
        self.notify_work()

    def _usable_evidence(self, height: int) -> tuple[dict, ...]:
        usable = []
        state = State(self.node.store)
        context = BlockContext(self.chain_id, height, self.clock(), b"\x00" * 32, self.params)
        for identity, item in list(self._evidence_pool.items()):
            try:
                check_evidence(state, context, item)
            except InvalidBlock:
                self._evidence_pool.pop(identity, None)
                continue
            if all(item["validator"] != other["validator"] for other in usable):
                usable.append(item)
        return tuple(usable)

    def receive_evidence(self, peer: bytes, body: Any) -> None:
        """An evidence item from a peer: kept if valid now."""
        def job() -> None:
            state = State(self.node.store)
            context = BlockContext(self.chain_id, self.state.height, self.clock(), b"\x00" * 32, self.params)
            try:
                check_evidence(state, context, body)
            except (InvalidBlock, KeyError, TypeError):
                return
            self._add_evidence(body, gossip=True)
        self.submit(job)

    # --- incoming proposals and votes ------------------------------------------------

    def _validate_block(self, raw: bytes) -> ProposedBlock | None:
        """Decode and execute a proposed block on the current tip; None if invalid."""
        store, metrics = self.node.store, self.node.metrics
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
            known = self.node.mempool.signature_known_valid

            def signature_known(tx_hash: bytes) -> bool:
                if known(tx_hash):
                    return True
                metrics.signature_checks.labels("tx_block").inc()
                return False

            started = time.perf_counter()
            result = apply_block(store, tip, self.chain_id, self.params, block, signature_known)
            metrics.observe_stage("validate", time.perf_counter() - started)
        except InvalidBlock as error:
            log.info("invalid proposal at height %d: %s", block.header.height, error.message)
            return ProposedBlock(block, raw, None)
        return ProposedBlock(block, raw, result)

    def receive_proposal(self, peer: bytes, body: Any) -> None:
        """A proposal from a peer (checked, then fed to the core, or buffered)."""
        try:
            proposal, signature, raw = parse_proposal(body)
        except MessageRejected as error:
            self.node.penalize(peer, 20, f"proposal: {error}")
            return
        self.submit(lambda: self._on_proposal(peer, proposal, signature, raw))

    async def _on_proposal(self, peer: bytes, proposal: Proposal, signature: bytes, raw: bytes) -> None:
        if proposal.chain_id != self.chain_id:
            return
        if is_future_height(self.state, proposal.height):
            self._buffer(proposal.height, lambda: self._on_proposal(peer, proposal, signature, raw))
            self.node.maybe_sync(peer, proposal.height - 1)
            return
        if proposal.height != self.state.height or not self.state.validators:
            return
        if proposal.round > self.state.round + MAX_ROUNDS_AHEAD:
            return
        proposer = proposer_for(self.state.validators, proposal.height, proposal.round)
        self.node.metrics.signature_checks.labels("proposal").inc()
        if not proposal.verify(proposer, signature):
            self.node.penalize(peer, 20, "proposal signature")
            return
        proposed = await asyncio.to_thread(self._validate_block, raw)
        if proposed is None or proposed.block.hash != proposal.block_hash:
            self.node.penalize(peer, 20, "proposal block does not match")
            return
        # R28: a fresh value too far ahead of our clock gets a nil prevote (re-proposals are exempt).
        timely = proposal.pol_round != NO_POL_ROUND or (
            proposed.block.header.time <= self.clock() + self.params.max_clock_drift_ms
        )
        self.node.relay(peer, "proposal", proposal_body(proposal, signature, raw))
        await self._feed(ProposalReceived(proposal, proposer, proposed, proposed.result is not None, timely))

    def receive_vote(self, peer: bytes, body: Any) -> None:
        """A vote from a peer (checked, then fed to the core, or buffered)."""
        try:
            validator, vote, signature = parse_vote(body)
        except MessageRejected as error:
            self.node.penalize(peer, 20, f"vote: {error}")
            return
        self.submit(lambda: self._on_vote(peer, validator, vote, signature))

    async def _on_vote(self, peer: bytes, validator: bytes, vote: Vote, signature: bytes) -> None:
        if vote.chain_id != self.chain_id:
            return
        if is_future_height(self.state, vote.height):
            self._buffer(vote.height, lambda: self._on_vote(peer, validator, vote, signature))
            if vote.height > self.state.height:
                self.node.maybe_sync(peer, vote.height - 1)
            return
        if vote.height != self.state.height or validator not in self.state.members:
            return
        if vote.round > self.state.round + MAX_ROUNDS_AHEAD:
            return  # bounds what a faulty validator can make the core store
        self.node.metrics.signature_checks.labels("vote").inc()
        if not vote.verify(validator, signature):
            self.node.penalize(peer, 20, "vote signature")
            return
        self.node.relay(peer, "vote", vote_body(validator, vote, signature))
        await self._feed(VoteReceived(validator, vote, signature))

    def _buffer(self, height: int, job: Callable[[], Awaitable[None]]) -> None:
        if height > self.state.height + 100 or len(self._future) >= MAX_BUFFERED_MESSAGES:
            return
        self._future.append((height, job))

    def resync(self) -> None:
        """Block sync moved the head: restart consensus at the new height."""
        self.submit(self._resync)

    async def _resync(self) -> None:
        if self.node.store.head().height + 1 > self.state.height:
            for timer in self._timers:
                timer.cancel()
            self._timers.clear()
            await self._start_next_height()


def _evidence_id(item: dict) -> bytes:
    from marketplace_tx.primitives import codec
    from marketplace_tx.primitives.crypto import sha256

    return sha256(codec.encode(item))

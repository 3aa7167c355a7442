"""A deterministic discrete-event simulator for the pure consensus core (PROTOCOL R25–R29).

It plays the driver for n validators (plus optional followers): it signs votes and
proposals with real Ed25519 keys (fixed seeds), checks signatures, builds and judges
blocks, runs timers, buffers future heights, and gossips over a simulated network
that drops, delays, duplicates and reorders messages before a global stabilization
time (GST) and delivers within a bound after it (partial synchrony). Validators may
crash and recover (keeping their persisted state, R27) or be Byzantine: an
equivocator signs conflicting votes (and proposals) to different peers; an invalid
proposer builds blocks everybody else judges invalid.

Everything random comes from `random.Random(seed)` and no set is ever iterated, so a
seed replays the same schedule. Speed tricks (a signature cache shared by all runs,
tiny block payloads) live in the simulator's modules, away from the core.

Scenarios are in simulator_scenarios.py, messages, nodes and outcomes in
simulator_messages.py.
"""

from __future__ import annotations

import hashlib
import heapq
import random
from collections import deque

from consensus.actions import (
    BroadcastProposal,
    BuildProposal,
    CastVote,
    DecideBlock,
    EvidenceFound,
    ScheduleTimeout,
)
from consensus.commit import has_quorum
from consensus.events import (
    Event,
    NodeRestarted,
    ProposalBuilt,
    ProposalReceived,
    StartHeight,
    TimeoutFired,
    VoteReceived,
    WorkAvailable,
)
from consensus.proposal import Proposal
from consensus.tendermint import initial_state, step
from consensus.vote import SignedVote, Vote
from marketplace_tx.chain.block import Commit
from tests.unit.consensus.simulator_messages import (
    Decided,
    Outcome,
    ProposalMessage,
    SimulatedNode,
    StatusMessage,
    VoteMessage,
    cached_sign,
    cached_verify,
)
from tests.unit.consensus.simulator_scenarios import (
    CHAIN_ID,
    INVALID_PREFIX,
    Scenario,
    validator_keys,
)

# --------------------------------------------------------------------------- the simulation


class Simulation:
    """Runs one scenario to completion."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.random = random.Random(scenario.seed)
        self.now = 0
        self.queue: list = []
        self.sequence = 0
        keys = validator_keys(scenario.validators)
        self.validators = tuple(key.address for key in keys)
        self.nodes = [
            SimulatedNode(i, key, initial_state(CHAIN_ID, scenario.timeouts))
            for i, key in enumerate(keys)
        ]
        for index in range(scenario.followers):
            self.nodes.append(
                SimulatedNode(len(keys) + index, None, initial_state(CHAIN_ID, scenario.timeouts))
            )
        self.index_of = {
            node.address: node.index for node in self.nodes if node.address is not None
        }
        self.decisions: dict[int, dict[int, Decided]] = {node.index: {} for node in self.nodes}
        self.evidence: list[tuple[int, EvidenceFound]] = []
        self.messages = 0
        self.consensus_messages = 0
        self.consensus_actions = 0
        self.idle_actions = 0
        self.double_signs_heard: list[tuple[int, tuple[bytes, int, int, str]]] = []
        self.reproposals = 0
        self.links_down: dict[tuple[int, int, int], bool] = {}
        self.coalition_pairs: dict[int, dict[bytes, bytes]] = {}
        """Equivocators share the two blocks they proposed, each mapped to the other."""
        self.second_face: dict[tuple[int, int], set[int]] = {}
        """The nodes that get the equivocators' second face at (height, round)."""
        faulty = set(scenario.faulty)
        self.honest = tuple(node.index for node in self.nodes if node.index not in faulty)
        self.live = self.honest
        self.work_at = self._draw_work()
        self.trace = hashlib.sha256()

    def _draw_work(self) -> tuple[tuple[int, ...], ...]:
        if self.scenario.work_at is not None:
            return self.scenario.work_at
        crashing = {crash.node for crash in self.scenario.crashes}
        reliable = [i for i in self.honest if i < self.scenario.validators and i not in crashing]
        work = []
        for _ in range(self.scenario.heights):
            chosen = [i for i in range(self.scenario.validators) if self.random.random() < 0.5]
            chosen.append(self.random.choice(reliable))
            work.append(tuple(sorted(set(chosen))))
        return tuple(work)

    # ----------------------------------------------------------------- scheduling

    def _push(self, at_ms: int, kind: str, *data: object) -> None:
        self.sequence += 1
        heapq.heappush(self.queue, (at_ms, self.sequence, kind, data))

    def _send(self, sender: int, receiver: int, message: object) -> None:
        network = self.scenario.network
        self.messages += 1
        if not isinstance(message, StatusMessage):
            self.consensus_messages += 1
        copies = 2 if self.random.random() < network.duplicate_probability else 1
        for _ in range(copies):
            if self.now < network.gst_ms:
                if self.random.random() < network.drop_probability or self._link_down(
                    sender, receiver
                ):
                    continue
                arrival = self.now + self.random.randint(0, network.max_delay_before_gst_ms)
                arrival = min(arrival, network.gst_ms + network.delay_bound_ms)
            else:
                arrival = self.now + self.random.randint(
                    network.min_delay_ms, network.delay_bound_ms
                )
            self._push(arrival, "deliver", receiver, message)

    def _link_down(self, sender: int, receiver: int) -> bool:
        """Before GST, each link is cut for whole periods at a time (shifting partitions)."""
        network = self.scenario.network
        if not network.link_down_probability:
            return False
        key = (sender, receiver, self.now // network.partition_period_ms)
        down = self.links_down.get(key)
        if down is None:
            down = self.links_down[key] = self.random.random() < network.link_down_probability
        return down

    def _broadcast(self, sender: SimulatedNode, message: object) -> None:
        for node in self.nodes:
            if node.index != sender.index:
                self._send(sender.index, node.index, message)

    # ----------------------------------------------------------------- running

    def run(self) -> Outcome:
        """Run until every live node decided every height with work, or the time limit."""
        for node in self.nodes:
            self._start_height(node, 1)
        for crash in self.scenario.crashes:
            self._push(crash.at_ms, "crash", crash.node)
            if crash.recover_at_ms is not None:
                self._push(crash.recover_at_ms, "recover", crash.node)
        for node in self.nodes:
            self._push(
                self.random.randint(0, self.scenario.network.gossip_interval_ms),
                "gossip",
                node.index,
            )
        pending_recoveries = sum(
            1 for crash in self.scenario.crashes if crash.recover_at_ms is not None
        )
        while self.queue:
            at_ms, _, kind, data = heapq.heappop(self.queue)
            if at_ms > self.scenario.time_limit_ms:
                break
            self.now = at_ms
            if kind == "deliver":
                self._deliver(self.nodes[data[0]], data[1])
            elif kind == "timer":
                node, generation, event = self.nodes[data[0]], data[1], data[2]
                if not node.crashed and generation == node.generation:
                    self._feed(node, event)
            elif kind == "work":
                node = self.nodes[data[0]]
                if not node.crashed:
                    self._feed(node, WorkAvailable(data[1]))
            elif kind == "gossip":
                self._gossip(self.nodes[data[0]])
            elif kind == "crash":
                self._crash(self.nodes[data[0]])
            elif kind == "recover":
                pending_recoveries -= 1
                self._recover(self.nodes[data[0]])
            if self.scenario.stop_when_decided and pending_recoveries == 0 and self._all_decided():
                break
        return self._outcome()

    def _all_decided(self) -> bool:
        last = self.scenario.heights
        return all(last in self.decisions[index] for index in self.live)

    def _outcome(self) -> Outcome:
        recoveries = [
            crash.recover_at_ms
            for crash in self.scenario.crashes
            if crash.recover_at_ms is not None
        ]
        max_round = max(
            (
                decided.round
                for by_height in self.decisions.values()
                for decided in by_height.values()
            ),
            default=0,
        )
        return Outcome(
            scenario=self.scenario,
            validators=self.validators,
            decisions=self.decisions,
            evidence=self.evidence,
            honest=self.honest,
            live=self.live,
            stabilized_ms=max([self.scenario.network.gst_ms, *recoveries]),
            end_ms=self.now,
            messages=self.messages,
            consensus_messages=self.consensus_messages,
            consensus_actions=self.consensus_actions,
            idle_actions=self.idle_actions,
            double_signs_heard=self.double_signs_heard,
            reproposals=self.reproposals,
            max_round=max_round,
            trace=self.trace.hexdigest(),
        )

    # ----------------------------------------------------------------- driver: heights, crashes

    def _start_height(self, node: SimulatedNode, height: int) -> None:
        self._feed(node, StartHeight(height, self.validators, node.address))
        if height <= self.scenario.heights and node.index in self.work_at[height - 1]:
            self._push(self.now + self.random.randint(0, 300), "work", node.index, height)
        for message in node.buffer.pop(height, []):
            self._accept(node, message)

    def _crash(self, node: SimulatedNode) -> None:
        node.crashed = True
        node.generation += 1
        node.seen = {}
        node.buffer = {}

    def _recover(self, node: SimulatedNode) -> None:
        node.crashed = False
        self._feed(node, NodeRestarted())
        height = node.state.height
        if height <= self.scenario.heights and node.index in self.work_at[height - 1]:
            self._feed(node, WorkAvailable(height))

    # ----------------------------------------------------------------- driver: messages in

    def _deliver(self, node: SimulatedNode, message: object) -> None:
        if node.crashed:
            return
        if isinstance(message, StatusMessage):
            self._answer_status(node, message)
            return
        height = message.height
        if height < node.state.height:
            return
        seen = node.seen.setdefault(height, set())
        identity = message.identity
        if identity in seen:
            return
        seen.add(identity)
        if height > node.state.height:
            node.buffer.setdefault(height, []).append(message)
            return
        self._accept(node, message)

    def _accept(self, node: SimulatedNode, message: object) -> None:
        """Check a message of the node's height, store it, and feed it to the core."""
        if message.height != node.state.height:
            return  # a buffered message whose height was decided meanwhile
        if isinstance(message, VoteMessage):
            signed = message.signed
            if not cached_verify(signed.validator, signed.vote, signed.signature):
                return
            node.log.setdefault(message.height, {})[message.identity] = message
            self._hear(node, signed)
            self._feed(node, VoteReceived(signed.validator, signed.vote, signed.signature))
            return
        proposal = message.proposal
        if not cached_verify(message.proposer, proposal, message.signature):
            return
        node.log.setdefault(message.height, {})[message.identity] = message
        valid = hashlib.sha256(
            message.block
        ).digest() == proposal.block_hash and not message.block.startswith(INVALID_PREFIX)
        if node.index in self.scenario.equivocators:
            self._support_everything(node, proposal)
        self._feed(node, ProposalReceived(proposal, message.proposer, message.block, valid))

    def _support_everything(self, node: SimulatedNode, proposal: Proposal) -> None:
        """An equivocator also prevotes and precommits every block proposed to it, locks
        or not, each vote to a random subset of its peers (amnesia and withholding)."""
        assert node.key is not None
        for vote_type in ("prevote", "precommit"):
            vote = Vote(CHAIN_ID, proposal.height, proposal.round, vote_type, proposal.block_hash)
            message = VoteMessage(SignedVote(node.key.address, vote, cached_sign(node.key, vote)))
            for peer in self.nodes:
                if peer.index != node.index and self.random.random() < 0.5:
                    self._send(node.index, peer.index, message)

    def _hear(self, node: SimulatedNode, signed: SignedVote) -> None:
        vote = signed.vote
        key = (signed.validator, vote.height, vote.round, vote.type)
        values = node.heard.setdefault(key, [])
        if vote.block_hash not in values:
            values.append(vote.block_hash)
            if len(values) == 2:
                self.double_signs_heard.append((node.index, key))

    def _gossip(self, node: SimulatedNode) -> None:
        if not node.crashed:
            height = node.state.height
            status = StatusMessage(node.index, height, node.seen.setdefault(height, set()))
            self._broadcast(node, status)
        self._push(self.now + self.scenario.network.gossip_interval_ms, "gossip", node.index)

    def _answer_status(self, node: SimulatedNode, status: StatusMessage) -> None:
        if status.height > node.state.height:
            return
        for identity, message in node.log.get(status.height, {}).items():
            if identity not in status.have:
                self._send(node.index, status.sender, message)

    # ----------------------------------------------------------------- driver: the core

    def _feed(self, node: SimulatedNode, event: Event) -> None:
        """Step the core with `event` and carry out its actions, feeding back own votes."""
        pending: deque[Event] = deque([event])
        next_height = None
        while pending:
            node.state, actions = step(node.state, pending.popleft())
            self.consensus_actions += len(actions)
            if actions and node.state.height > self.scenario.heights:
                self.idle_actions += len(actions)
            for action in actions:
                if isinstance(action, CastVote):
                    pending.append(self._cast_vote(node, action))
                elif isinstance(action, BuildProposal):
                    pending.append(self._build(node, action))
                elif isinstance(action, BroadcastProposal):
                    self._broadcast_proposal(node, action)
                elif isinstance(action, ScheduleTimeout):
                    event_at = TimeoutFired(action.height, action.round, action.step)
                    self._push(
                        self.now + action.delay_ms, "timer", node.index, node.generation, event_at
                    )
                elif isinstance(action, DecideBlock):
                    self._decide(node, action)
                    next_height = action.height + 1
                elif isinstance(action, EvidenceFound):
                    self._record_evidence(node, action)
        if next_height is not None:
            self._start_height(node, next_height)

    def _build(self, node: SimulatedNode, action: BuildProposal) -> ProposalBuilt:
        prefix = INVALID_PREFIX if node.index in self.scenario.invalid_proposers else b"block"
        block = b"%s:%d:%d:%d" % (prefix, action.height, action.round, node.index)
        return ProposalBuilt(action.height, action.round, hashlib.sha256(block).digest(), block)

    def _broadcast_proposal(self, node: SimulatedNode, action: BroadcastProposal) -> None:
        assert node.key is not None
        self.reproposals += action.pol_round >= 0
        proposal = Proposal(
            CHAIN_ID, action.height, action.round, action.pol_round, action.block_hash
        )
        message = ProposalMessage(
            proposal, node.key.address, cached_sign(node.key, proposal), action.block
        )
        node.log.setdefault(action.height, {})[message.identity] = message
        node.seen.setdefault(action.height, set()).add(message.identity)
        if node.index not in self.scenario.equivocators:
            self._broadcast(node, message)
            return
        other_block = b"other:%d:%d:%d" % (action.height, action.round, node.index)
        other_hash = hashlib.sha256(other_block).digest()
        pairs = self.coalition_pairs.setdefault(action.height, {})
        pairs.setdefault(action.block_hash, other_hash)
        pairs.setdefault(other_hash, action.block_hash)
        other = Proposal(CHAIN_ID, action.height, action.round, -1, other_hash)
        other_message = ProposalMessage(
            other, node.key.address, cached_sign(node.key, other), other_block
        )
        self._send_two_faces(node, action.height, action.round, message, other_message)

    def _send_two_faces(
        self, node: SimulatedNode, height: int, round_number: int, first: object, second: object
    ) -> None:
        """The equivocators' split: at each (height, round) the coalition picks half of the
        other nodes to get `second`; the rest, equivocators included, get `first`."""
        split = self.second_face.get((height, round_number))
        if split is None:
            others = [i for i in range(len(self.nodes)) if i not in self.scenario.equivocators]
            self.random.shuffle(others)
            split = self.second_face[(height, round_number)] = set(others[: len(others) // 2])
        for peer in self.nodes:
            if peer.index != node.index:
                self._send(node.index, peer.index, second if peer.index in split else first)

    def _cast_vote(self, node: SimulatedNode, action: CastVote) -> VoteReceived:
        assert node.key is not None, "a follower never votes"
        key = (action.height, action.round, action.type)
        if node.index not in self.scenario.equivocators:
            if key in node.signed_votes:
                assert node.signed_votes[key] == action.block_hash, (
                    f"R27: node {node.index} asked to double-sign {key}"
                )
            node.signed_votes[key] = action.block_hash
        vote = Vote(CHAIN_ID, action.height, action.round, action.type, action.block_hash)
        signed = SignedVote(node.key.address, vote, cached_sign(node.key, vote))
        message = VoteMessage(signed)
        node.log.setdefault(action.height, {})[message.identity] = message
        node.seen.setdefault(action.height, set()).add(message.identity)
        if node.index not in self.scenario.equivocators:
            self._broadcast(node, message)
        else:
            conflicting = Vote(
                CHAIN_ID,
                action.height,
                action.round,
                action.type,
                self._conflicting_hash(node, action),
            )
            other = VoteMessage(
                SignedVote(node.key.address, conflicting, cached_sign(node.key, conflicting))
            )
            self._send_two_faces(node, action.height, action.round, message, other)
        return VoteReceived(signed.validator, vote, signed.signature)

    def _conflicting_hash(self, node: SimulatedNode, action: CastVote) -> bytes | None:
        pairs = self.coalition_pairs.get(action.height, {})
        if action.block_hash in pairs:
            return pairs[action.block_hash]
        if action.block_hash is not None:
            return None
        return hashlib.sha256(b"phantom:%d:%d" % (action.height, action.round)).digest()

    def _decide(self, node: SimulatedNode, action: DecideBlock) -> None:
        check_commit(action.commit, action.block_hash, action.height, self.validators)
        assert hashlib.sha256(action.block).digest() == action.block_hash, (
            "decided block and hash agree"
        )
        assert action.height not in self.decisions[node.index], "decided a height twice"
        self.decisions[node.index][action.height] = Decided(
            action.block_hash, action.round, self.now, action.block
        )
        self.trace.update(
            b"%d|%d|%d|%d|" % (self.now, node.index, action.height, action.round)
            + action.block_hash
        )

    def _record_evidence(self, node: SimulatedNode, action: EvidenceFound) -> None:
        first, second = action.vote_a, action.vote_b
        assert first.conflicts_with(second), "evidence of votes that do not conflict"
        assert cached_verify(first.validator, first.vote, first.signature)
        assert cached_verify(second.validator, second.vote, second.signature)
        self.evidence.append((node.index, action))


def check_commit(
    commit: Commit, block_hash: bytes, height: int, validators: tuple[bytes, ...]
) -> None:
    """The checks of `consensus.commit.verify_commit`, with the signature cache (R24)."""
    assert commit.block_hash == block_hash and commit.height == height
    signers = [entry.validator for entry in commit.signatures]
    assert signers == sorted(set(signers)), "commit signatures sorted and unique"
    members = set(validators)
    vote = Vote(CHAIN_ID, height, commit.round, "precommit", block_hash)
    for entry in commit.signatures:
        assert entry.validator in members
        assert cached_verify(entry.validator, vote, entry.signature)
    assert has_quorum(len(signers), len(validators)), "commit holds more than 2/3"


def simulate(scenario: Scenario) -> Outcome:
    """Run one scenario."""
    return Simulation(scenario).run()

"""What the consensus simulator (consensus_simulator.py) passes around and reports: signed
messages on the simulated network, the simulated nodes, the outcome of a run, and a
signature cache shared by all runs (a speed trick of the tests, away from the core)."""

from __future__ import annotations

from dataclasses import dataclass, field

from consensus.actions import (
    EvidenceFound,
)
from consensus.proposal import Proposal
from consensus.state import ConsensusState
from consensus.vote import SignedVote, Vote
from marketplace_tx.primitives.crypto import KeyPair
from tests.unit.consensus.simulator_scenarios import (
    Scenario,
)

# --------------------------------------------------------------------------- signature cache

_SIGNATURES: dict[tuple[bytes, object], bytes] = {}
_VERIFIED: dict[tuple[bytes, object, bytes], bool] = {}


def cached_sign(key: KeyPair, value: Vote | Proposal) -> bytes:
    """`key`'s signature of a vote or proposal, computed once per process."""
    cache_key = (key.address, value)
    signature = _SIGNATURES.get(cache_key)
    if signature is None:
        signature = value.sign(key)
        _SIGNATURES[cache_key] = signature
    return signature


def cached_verify(signer: bytes, value: Vote | Proposal, signature: bytes) -> bool:
    """True iff `signature` is `signer`'s real Ed25519 signature of `value` (cached)."""
    cache_key = (signer, value, signature)
    verdict = _VERIFIED.get(cache_key)
    if verdict is None:
        verdict = value.verify(signer, signature)
        _VERIFIED[cache_key] = verdict
    return verdict


# --------------------------------------------------------------------------- messages


@dataclass(frozen=True)
class ProposalMessage:
    """A signed proposal with its block."""

    proposal: Proposal
    """The signed map (R26)."""
    proposer: bytes
    """Who signed it."""
    signature: bytes
    """The proposer's signature (kind `proposal`)."""
    block: bytes
    """The block payload."""

    @property
    def height(self) -> int:
        """The height it is for."""
        return self.proposal.height

    @property
    def identity(self) -> tuple:
        """What duplicates share."""
        return ("proposal", self.proposal)


@dataclass(frozen=True)
class VoteMessage:
    """A signed vote."""

    signed: SignedVote
    """The vote, its signer and signature."""

    @property
    def height(self) -> int:
        """The height it is for."""
        return self.signed.vote.height

    @property
    def identity(self) -> tuple:
        """What duplicates share."""
        return ("vote", self.signed.validator, self.signed.vote)


@dataclass(frozen=True)
class StatusMessage:
    """A node's height and the messages it holds at it; peers send what it lacks."""

    sender: int
    """Index of the node asking."""
    height: int
    """Its current height."""
    have: set
    """Identities of the messages it holds at that height (a live view, never iterated)."""


# --------------------------------------------------------------------------- nodes and outcome


@dataclass
class SimulatedNode:
    """One node: the pure core plus the driver's persisted and volatile data."""

    index: int
    """Position in `Simulation.nodes`; validators first, by address."""
    key: KeyPair | None
    """The validator key, None for a follower."""
    state: ConsensusState
    """Persisted: the core's state (a real node keeps a WAL of the events instead)."""
    crashed: bool = False
    """True while down: it neither receives nor acts."""
    generation: int = 0
    """Timers of an older generation died in a crash."""
    log: dict[int, dict[tuple, object]] = field(default_factory=dict)
    """Persisted: every checked message by height (the block store and gossip store)."""
    signed_votes: dict[tuple[int, int, str], bytes | None] = field(default_factory=dict)
    """Persisted before sending: what this node signed (R27)."""
    seen: dict[int, set] = field(default_factory=dict)
    """Volatile: message identities seen, by height."""
    buffer: dict[int, list] = field(default_factory=dict)
    """Volatile: messages of future heights."""
    heard: dict[tuple[bytes, int, int, str], list[bytes | None]] = field(default_factory=dict)
    """Persisted with the core's state: the values of each validator's votes fed to the
    core, by (validator, height, round, type); two values are a double sign (R27)."""

    @property
    def address(self) -> bytes | None:
        """The validator address, None for a follower."""
        return None if self.key is None else self.key.address


@dataclass
class Decided:
    """One node's decision at one height."""

    block_hash: bytes
    """The decided block's hash."""
    round: int
    """The round that decided it."""
    time_ms: int
    """Simulated time of the decision."""
    block: bytes
    """The decided block's payload."""


@dataclass
class Outcome:
    """What a run produced, for the checks."""

    scenario: Scenario
    """What was run."""
    validators: tuple[bytes, ...]
    """The validator addresses, sorted; index i is node i."""
    decisions: dict[int, dict[int, Decided]]
    """By node index, then height."""
    evidence: list[tuple[int, EvidenceFound]]
    """(reporting node, evidence)."""
    honest: tuple[int, ...]
    """Nodes whose decisions must agree (validators that are not faulty, and followers)."""
    live: tuple[int, ...]
    """Honest nodes that must decide every height with work."""
    stabilized_ms: int
    """GST or the last recovery, whichever is later."""
    end_ms: int
    """Simulated time when the run stopped."""
    messages: int
    """Messages put on the network, status messages included."""
    consensus_messages: int
    """Proposals and votes put on the network."""
    consensus_actions: int
    """Actions the cores asked for."""
    idle_actions: int
    """Actions the cores asked for at heights without work (R29: must be 0)."""
    double_signs_heard: list[tuple[int, tuple[bytes, int, int, str]]]
    """(node, (validator, height, round, type)) where a core was fed two different votes."""
    reproposals: int
    """Proposals that re-proposed a valid value (pol_round ≥ 0)."""
    max_round: int
    """The highest round any decision took."""
    trace: str
    """Digest of every decision with its time: equal for equal seeds."""

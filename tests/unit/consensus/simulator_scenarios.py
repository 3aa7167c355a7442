"""Scenarios for the consensus simulator (consensus_simulator.py): the validators' keys, the
network's behaviour before and after GST, crashes, Byzantine validators, and random
scenarios drawn from a seed (PROTOCOL R25–R29)."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from consensus.timeouts import TimeoutConfig
from marketplace_tx.primitives.crypto import KeyPair

CHAIN_ID = "marketchain-sim"
INVALID_PREFIX = b"invalid"
"""Blocks whose payload starts with this are judged invalid by every driver."""


def validator_keys(count: int) -> list[KeyPair]:
    """`count` keys from fixed seeds, sorted by address."""
    keys = [
        KeyPair.from_seed(hashlib.sha256(f"sim-validator-{i}".encode()).digest())
        for i in range(count)
    ]
    return sorted(keys, key=lambda key: key.address)


# --------------------------------------------------------------------------- scenario


@dataclass(frozen=True)
class NetworkProfile:
    """How the simulated network behaves before and after GST."""

    gst_ms: int = 0
    """Global stabilization time."""
    drop_probability: float = 0.0
    """Chance that a message sent before GST is lost."""
    duplicate_probability: float = 0.0
    """Chance that a message is delivered twice."""
    max_delay_before_gst_ms: int = 100
    """Delays before GST are uniform in [0, this], but arrive by GST + bound."""
    min_delay_ms: int = 1
    """Least delay after GST."""
    delay_bound_ms: int = 100
    """Δ: every message sent after GST arrives within this."""
    gossip_interval_ms: int = 500
    """How often each node tells its peers its height and what it holds (anti-entropy)."""
    link_down_probability: float = 0.0
    """Before GST: the chance that a link is cut for a whole partition period."""
    partition_period_ms: int = 1000
    """How long a cut link stays cut before it is drawn again."""


@dataclass(frozen=True)
class Crash:
    """One validator stops at `at_ms` and, unless `recover_at_ms` is None, comes back."""

    node: int
    """Index of the node."""
    at_ms: int
    """When it stops."""
    recover_at_ms: int | None
    """When it restarts from its persisted state, or None for never."""


@dataclass(frozen=True)
class Scenario:
    """A testnet described as data: size, faults, network, workload."""

    seed: int
    """Seeds every random choice of the run."""
    validators: int = 4
    """n."""
    heights: int = 3
    """How many heights have work (R29); later heights stay idle."""
    network: NetworkProfile = NetworkProfile()
    """The network's behaviour."""
    crashes: tuple[Crash, ...] = ()
    """Crash (and recovery) of validators."""
    equivocators: tuple[int, ...] = ()
    """Byzantine validators that sign conflicting votes and proposals."""
    invalid_proposers: tuple[int, ...] = ()
    """Faulty validators that propose blocks every other driver judges invalid."""
    followers: int = 0
    """Non-validator nodes that only follow."""
    work_at: tuple[tuple[int, ...], ...] | None = None
    """For each height, the nodes whose mempool gets work; None: drawn from the seed."""
    timeouts: TimeoutConfig = TimeoutConfig()
    """Consensus timeouts."""
    time_limit_ms: int = 600_000
    """The simulation stops here whatever happens."""
    stop_when_decided: bool = True
    """Stop as soon as every live node decided every height with work."""

    @property
    def faulty(self) -> tuple[int, ...]:
        """Validators that are not honest (a crash that never recovers counts too)."""
        crashed_for_good = tuple(
            crash.node for crash in self.crashes if crash.recover_at_ms is None
        )
        return tuple(sorted(set(self.equivocators + self.invalid_proposers + crashed_for_good)))


# --------------------------------------------------------------------------- random scenarios


def random_network(rng: random.Random) -> NetworkProfile:
    """A network that misbehaves arbitrarily until a random GST, then is bounded."""
    return NetworkProfile(
        gst_ms=rng.randint(0, 8000),
        drop_probability=rng.choice((0.0, 0.1, 0.3, 0.6)),
        duplicate_probability=rng.choice((0.0, 0.05, 0.2)),
        max_delay_before_gst_ms=rng.randint(10, 5000),
        min_delay_ms=1,
        delay_bound_ms=rng.randint(20, 300),
        gossip_interval_ms=rng.choice((300, 500, 1000)),
        link_down_probability=rng.choice((0.0, 0.0, 0.3, 0.6)),
        partition_period_ms=rng.randint(200, 3000),
    )


FAULT_KINDS = ("none", "crash", "equivocate", "invalid", "mixed")
"""What kind of faults `random_scenario` injects (at most f faulty validators)."""


def random_scenario(
    seed: int, validators: int = 4, heights: int = 3, faults: str | None = None
) -> Scenario:
    """A seeded scenario: random network, up to f faulty validators of one kind."""
    rng = random.Random(seed * 7919 + validators)
    fault_limit = (validators - 1) // 3
    faults = faults or FAULT_KINDS[seed % len(FAULT_KINDS)]
    network = random_network(rng)
    order = list(range(validators))
    rng.shuffle(order)
    faulty = order[:fault_limit]
    crashes: list[Crash] = []
    equivocators: tuple[int, ...] = ()
    invalid_proposers: tuple[int, ...] = ()
    if faults == "crash":
        crashes = [_random_crash(rng, node, network) for node in faulty]
    elif faults == "equivocate":
        equivocators = tuple(faulty)
    elif faults == "invalid":
        invalid_proposers = tuple(faulty)
    elif faults == "mixed" and faulty:
        equivocators = (faulty[0],)
        crashes = [_random_crash(rng, node, network) for node in faulty[1:]]
        invalid_proposers = ()
    return Scenario(
        seed=seed,
        validators=validators,
        heights=heights,
        network=network,
        crashes=tuple(crashes),
        equivocators=equivocators,
        invalid_proposers=invalid_proposers,
        followers=1 if rng.random() < 0.25 else 0,
        timeouts=random_timeouts(rng),
    )


def random_timeouts(rng: random.Random) -> TimeoutConfig:
    """Half the time the defaults; else timeouts far shorter than the delays before GST,
    so that many rounds, locks and re-proposals happen before the network settles."""
    if rng.random() < 0.5:
        return TimeoutConfig()
    return TimeoutConfig(
        propose_base_ms=rng.randint(100, 1000),
        propose_per_round_ms=rng.randint(20, 200),
        prevote_base_ms=rng.randint(50, 500),
        prevote_per_round_ms=rng.randint(20, 200),
        precommit_base_ms=rng.randint(50, 500),
        precommit_per_round_ms=rng.randint(20, 200),
    )


def _random_crash(rng: random.Random, node: int, network: NetworkProfile) -> Crash:
    at_ms = rng.randint(0, network.gst_ms + 5000)
    recovers = rng.random() < 0.7
    return Crash(node, at_ms, at_ms + rng.randint(200, 8000) if recovers else None)

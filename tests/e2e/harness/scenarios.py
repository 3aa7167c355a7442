"""Fault scenarios as data (docs/faults.md): a testnet, a load, and steps at times.

A `Scenario` names its validators, test faults and network (loopback or network
namespaces), a `Load` (senders, rate, duration) and `Step`s: kill -9, SIGSTOP/SIGCONT,
SIGTERM restarts, clock skew, disconnect/reconnect, partitions, late-joining nodes.
`MATRIX` is what tests/e2e/test_faults.py runs; `random_scenario(seed, …)` is what
`make soak` (bench/soak.py) runs. `Scenario.manifest` is the testnet it needs.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tests.e2e.harness.manifest import Manifest

ACTIONS = ("kill", "start", "pause", "resume", "restart", "skew", "disconnect", "reconnect", "partition", "heal",
           "add_full_node", "crash_all")
"""What a `Step` can do."""

NETWORK_ACTIONS = ("disconnect", "reconnect", "partition", "heal")
"""Steps that need a network namespace per node."""

MAX_CLOCK_DRIFT_MS = 2000
"""The default genesis `max_clock_drift_ms` (R28) the scenarios assume."""

PROBE_SENDER = "faucet"
"""Sends the liveness probe; never a load sender, so its nonce is never contended."""


# --- the description ----------------------------------------------------------------


@dataclass(frozen=True)
class Load:
    """Transfers sent while the steps run."""

    senders: tuple[str, ...] = ("alice", "bob", "carol")
    """Dev accounts that send (never `faucet`, the liveness probe's sender)."""
    rate: float = 4.0
    """Transactions per second, all senders together."""
    duration_s: float = 40.0
    """How long new transactions are sent, from the start of the schedule."""
    window: int = 8
    """Most transactions of one sender not yet seen final (beyond it the sender waits)."""


@dataclass(frozen=True)
class Step:
    """One perturbation at a time of the schedule."""

    at_s: float
    """Seconds after the schedule starts."""
    action: str
    """One of `ACTIONS`."""
    node: int | None = None
    """The node it applies to (not for `partition`, `heal`, `add_full_node`, `crash_all`:
    kill -9 of every node at once, then all started again)."""
    skew_ms: int = 0
    """`skew`: the node's clock offset after its restart (0: the true clock)."""
    groups: tuple[tuple[int, ...], ...] = ()
    """`partition`: the sides; links between nodes of different sides are cut."""
    expect: str = ""
    """Until the next step: `live` (a height becomes final), `stall` (no quorum: at most
    the height in flight finishes) or `` (nothing checked)."""

    def describe(self) -> str:
        """A short human text."""
        if self.action == "partition":
            return "partition " + " | ".join(",".join(f"node{i}" for i in side) for side in self.groups)
        if self.action == "skew":
            return f"skew node{self.node} {self.skew_ms:+d} ms"
        if self.node is None:
            return self.action
        return f"{self.action} node{self.node}"


@dataclass(frozen=True)
class Scenario:
    """A testnet, a load and a schedule of perturbations."""

    name: str
    """Short id (test ids, directory names)."""
    description: str
    """What it exercises."""
    load: Load
    """The transfers sent meanwhile."""
    steps: tuple[Step, ...]
    """The perturbations, in time order."""
    validators: int = 4
    """Genesis validators."""
    faults: Mapping[int, str] = field(default_factory=dict)
    """Node index → `MARKETCHAIN_TEST_FAULT` (e.g. `equivocate`)."""
    network: str = "loopback"
    """`loopback`, or `netns` when a step cuts links."""

    def __post_init__(self) -> None:
        times = [step.at_s for step in self.steps]
        if times != sorted(times):
            raise ValueError(f"{self.name}: steps out of time order")
        for step in self.steps:
            if step.action not in ACTIONS:
                raise ValueError(f"{self.name}: unknown action {step.action!r}")
            if step.action in NETWORK_ACTIONS and self.network != "netns":
                raise ValueError(f"{self.name}: {step.action} needs network='netns'")
            if step.expect not in ("", "live", "stall"):
                raise ValueError(f"{self.name}: unknown expectation {step.expect!r}")
        if PROBE_SENDER in self.load.senders:
            raise ValueError(f"{PROBE_SENDER} is the liveness probe's sender")

    @property
    def needs_netns(self) -> bool:
        """True when some step cuts links."""
        return self.network == "netns"

    @property
    def manifest(self) -> Manifest:
        """The testnet this scenario runs on."""
        return Manifest(validators=self.validators, faults=dict(self.faults), network=self.network)

    @property
    def punished(self) -> tuple[int, ...]:
        """Validators that must end up punished by evidence."""
        return tuple(sorted(index for index, fault in self.faults.items() if fault == "equivocate"))


# --- the matrix (tests/e2e/test_faults.py) ---------------------------------------------

CRASHES = Scenario(
    name="crash-pause-restart-clock",
    description="kill -9 and restart, SIGSTOP/SIGCONT, SIGTERM restart, clocks skewed within and "
                "beyond max_clock_drift_ms (ahead and behind), a full node joining late, every node "
                "killed -9 at once",
    load=Load(duration_s=55.0),
    steps=(
        Step(3, "kill", 3, expect="live"),
        Step(9, "start", 3),
        Step(12, "pause", 2, expect="live"),
        Step(18, "resume", 2),
        Step(20, "restart", 1),
        Step(23, "skew", 0, skew_ms=1500, expect="live"),  # within the drift: its blocks are accepted
        Step(27, "skew", 3, skew_ms=6000, expect="live"),  # beyond: its proposals get nil prevotes
        Step(32, "add_full_node", expect="live"),
        Step(35, "skew", 3, skew_ms=-4000, expect="live"),  # behind: it prevotes nil on the others' blocks
        # Every node kill -9 at once (skews kept), then started: mempools are lost, the
        # load resends, and a height signed before the crash may need a round or two.
        Step(39, "crash_all", expect="live"),
        Step(52, "skew", 3, skew_ms=0),
    ),
)


PARTITIONS = Scenario(
    name="disconnect-split-heal",
    description="one validator cut off and back, a 2|2 split (no quorum anywhere) healed, a 1|3 split "
                "with a SIGTERM restart of the isolated node and a crash on the majority side",
    network="netns",
    load=Load(duration_s=54.0),
    steps=(
        Step(4, "disconnect", 3, expect="live"),
        Step(10, "reconnect", 3),
        Step(14, "partition", groups=((0, 1), (2, 3)), expect="stall"),
        Step(24, "heal", expect="live"),
        Step(29, "partition", groups=((0,), (1, 2, 3)), expect="live"),
        Step(34, "restart", 0),
        Step(37, "kill", 1, expect="stall"),  # 2 and 3 alone: no quorum
        # 0, 2, 3 are a quorum again; the window spans a few rounds whose proposer (node1) is dead
        Step(41, "heal", expect="live"),
        Step(51, "start", 1),
    ),
)

EQUIVOCATION = Scenario(
    name="equivocator-late-joiner",
    description="a validator signing conflicting prevotes (punished by evidence), restarted with the "
                "fault on; a late full node killed -9, restarted and paused",
    faults={1: "equivocate"},
    load=Load(duration_s=36.0),
    steps=(
        Step(4, "add_full_node"),
        Step(10, "restart", 1),
        Step(16, "kill", 4, expect="live"),
        Step(21, "start", 4),
        Step(26, "pause", 4, expect="live"),
        Step(31, "resume", 4),
    ),
)

MATRIX = (CRASHES, PARTITIONS, EQUIVOCATION)
"""The scenarios of the test suite."""


# --- random scenarios (make soak) --------------------------------------------------


LIVE_WINDOW_S = 8.0
"""Shortest time to the next step for which a random episode expects a new height: a
round whose proposer is down lasts timeoutPropose (3 s and more) plus the vote timeouts."""


def _has_quorum(validators: int, faulty: int) -> bool:
    return 3 * (validators - faulty) > 2 * validators


def random_scenario(seed: int, duration_s: float, validators: int = 4, netns: bool = True,
                    equivocate: bool = False, rate: float = 4.0) -> Scenario:
    """Episodes of one fault each, drawn from `seed`: applied, held a few seconds, undone.

    Each step says whether a quorum remains until the next one (`live`, when the window
    is at least `LIVE_WINDOW_S`) or not (`stall`). With an equivocator the set shrinks
    once it is punished, so nothing is expected.
    """
    rng = random.Random(seed)
    kinds = ["crash", "pause", "restart", "clock", "quorum-loss", "join", "full-crash", "crash-all"]
    if netns:
        kinds += ["disconnect", "split", "minority"]
    steps: list[Step] = []
    full_nodes: list[int] = []
    node_count = validators
    clock = 3.0

    def add(delay: float, action: str, node: int | None = None, faulty: int | None = None, **extra: Any) -> None:
        expect = ""
        if faulty is not None and not equivocate:
            expect = "live" if _has_quorum(validators, faulty) else "stall"
        steps.append(Step(round(clock + delay, 1), action, node, expect=expect, **extra))

    while clock < duration_s - 12:
        kind = rng.choice(kinds)
        hold = rng.uniform(3.0, 10.0)
        victim = rng.randrange(validators)
        if kind == "crash":
            add(0, "kill", victim, faulty=1)
            add(hold, "start", victim, faulty=0)
        elif kind == "pause":
            add(0, "pause", victim, faulty=1)
            add(hold, "resume", victim, faulty=0)
        elif kind == "restart":
            add(0, "restart", victim, faulty=0)
            hold = 1.0
        elif kind == "clock":
            add(0, "skew", victim, faulty=1, skew_ms=rng.choice([1500, -1500, 5000, -5000, 30000]))
            add(hold, "skew", victim, faulty=0, skew_ms=0)
        elif kind == "quorum-loss":
            second = rng.choice([index for index in range(validators) if index != victim])
            add(0, "kill", victim)
            add(1.0, "kill", second, faulty=2)
            add(hold, "start", second, faulty=1)
            add(hold + 3.0, "start", victim, faulty=0)
            hold += 3.0
        elif kind == "crash-all":
            add(0, "crash_all", faulty=0)
            hold = 12.0  # the restart of every node takes a few seconds itself
        elif kind == "join" and len(full_nodes) < 2:
            full_nodes.append(node_count)
            node_count += 1
            add(0, "add_full_node", faulty=0)
            hold = 2.0
        elif kind == "full-crash" and full_nodes:
            full, action = rng.choice(full_nodes), rng.choice(["kill", "pause"])
            add(0, action, full, faulty=0)
            add(hold, "start" if action == "kill" else "resume", full, faulty=0)
        elif kind == "disconnect":
            add(0, "disconnect", victim, faulty=1)
            add(hold, "reconnect", victim, faulty=0)
        elif kind in ("split", "minority"):
            nodes = rng.sample(range(node_count), node_count)
            cut = node_count // 2 if kind == "split" else 1
            sides = (tuple(sorted(nodes[:cut])), tuple(sorted(nodes[cut:])))
            largest = max(sum(1 for index in side if index < validators) for side in sides)
            add(0, "partition", faulty=validators - largest, groups=sides)
            add(hold, "heal", faulty=0)
        else:
            continue
        clock += hold + rng.uniform(2.0, 5.0)
    windows = [later.at_s - step.at_s for step, later in zip(steps, steps[1:], strict=False)]
    windows.append(duration_s - steps[-1].at_s if steps else 0.0)
    steps = [Step(step.at_s, step.action, step.node, step.skew_ms, step.groups, "")
             if step.expect == "live" and window < LIVE_WINDOW_S else step
             for step, window in zip(steps, windows, strict=True)]
    return Scenario(
        name=f"soak-{seed}",
        description=f"random fault episodes from seed {seed}",
        load=Load(senders=("alice", "bob", "carol", "dave"), rate=rate, duration_s=duration_s),
        steps=tuple(steps),
        validators=validators,
        faults={1: "equivocate"} if equivocate else {},
        network="netns" if netns else "loopback",
    )

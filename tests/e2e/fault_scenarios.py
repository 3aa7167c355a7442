"""Fault-injection scenarios as data, and the engine that runs them (docs/faults.md).

A `Scenario` is a testnet (validators, test faults, loopback or network namespaces),
a `Load` (senders, rate, duration) and `Step`s at times: kill -9, SIGSTOP/SIGCONT,
SIGTERM restarts, clock skew, disconnect/reconnect, partitions, late-joining nodes.
`run_scenario` starts the testnet, sends transfers from a background thread while
the steps are applied on schedule, brings every node back, then runs the checks:

- liveness: a transaction sent after the last perturbation becomes final everywhere,
  and every transaction any node accepted from the load ends final;
- agreement: every node holds identical blocks, each commit signed by > 2/3;
- nothing final is lost: every transaction observed committed (`GET /txs/{hash}`)
  at any node, at any time, is committed in the same block on every node;
- conservation (R17): the balances of every account sum to the genesis supply
  (the load is transfers between genesis accounts only, so there is no escrow);
- block time (R28): strictly increasing, never more than `max_clock_drift_ms`
  ahead of the moment the block was first seen final;
- per-step expectations: `expect="live"` (a height becomes final before the next
  step) or `expect="stall"` (no quorum: at most the height in flight finishes);
- evidence: validators started with `equivocate` are punished on chain;
- clean logs: no traceback or ERROR line in any node.log.

    report = run_scenario(CRASHES, tmp_path / "net")
    assert report.ok, report.summary()

`MATRIX` is what tests/test_faults.py runs; `random_scenario(seed, …)` is what
`make soak` (bench/soak.py) runs.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from marketplace_tx.chain.transaction import sign_transaction
from tests.e2e.node_process import http_get, http_post
from tests.e2e.testnet_harness import LOG_PROBLEM_MARKERS, Manifest, NodeHandle, Testnet, wait_until

ACTIONS = ("kill", "start", "pause", "resume", "restart", "skew", "disconnect", "reconnect", "partition", "heal",
           "add_full_node", "crash_all")
"""What a `Step` can do."""

NETWORK_ACTIONS = ("disconnect", "reconnect", "partition", "heal")
"""Steps that need a network namespace per node."""

MAX_CLOCK_DRIFT_MS = 2000
"""The default genesis `max_clock_drift_ms` (R28) the scenarios assume."""

REQUEST_TIMEOUT_S = 3.0
"""HTTP timeout of the load generator: a paused node must not hold it up long."""

RESEND_AFTER_S = 3.0
"""A sender's oldest transaction not final this long is sent again (same bytes) to a node."""

PROBE_SENDER = "faucet"
"""Sends the liveness probe; never a load sender, so its nonce is never contended."""

WAIT_S = 120.0
"""Deadline of the waits of the end phase."""

KNOWN_BUGS: dict[str, tuple[str, ...]] = {}
"""Open bugs (docs/faults.md) → substrings that identify their node.log records. A record
matching one is reported as that bug instead of failing the log check; the bug's own
strict-xfail test fails once it is fixed, and then its entry goes."""

LOG_RECORD_START = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
"""The first line of a plain-format log record (the rest are its traceback lines)."""


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
    def punished(self) -> tuple[int, ...]:
        """Validators that must end up punished by evidence."""
        return tuple(sorted(index for index, fault in self.faults.items() if fault == "equivocate"))


# --- the matrix (tests/test_faults.py) ---------------------------------------------

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


# --- the load -----------------------------------------------------------------------


@dataclass
class SentTx:
    """A transfer of the load, not yet seen final."""

    sender: str
    """The dev account that signed it."""
    nonce: int
    """Its nonce."""
    hash: str
    """Its hash (hex)."""
    raw: bytes
    """Its signed bytes, posted again unchanged when it seems lost."""
    last_sent: float = 0.0
    """Monotonic time it was last posted (0: never accepted yet)."""


@dataclass(frozen=True)
class FinalTx:
    """A transfer seen committed at some node."""

    hash: str
    """Its hash (hex)."""
    height: int
    """The height of the block that holds it, as first reported."""
    block_hash: str
    """That block's hash (hex)."""
    node: str
    """The node that first reported it committed."""
    seen_at_s: float
    """Seconds after the schedule started."""


class LoadGenerator:
    """Sends transfers at a rate from a background thread and watches them become final.

    Each sender signs consecutive nonces itself; a transaction whose node dies before
    gossiping it is sent again, same bytes, to another node, so that no nonce gap
    stalls a sender. Only nodes that run and are not paused are asked.
    """

    def __init__(self, net: Testnet, load: Load, rng: random.Random, origin: float) -> None:
        self.net = net
        """The testnet it sends to."""
        self.load = load
        """Senders, rate, window."""
        self.rng = rng
        """Chooses senders, recipients, amounts and nodes (seeded: runs repeat)."""
        self.origin = origin
        """Monotonic time the schedule started."""
        self.final: dict[str, FinalTx] = {}
        """Every load transaction seen committed, by hash."""
        self.unconfirmed: dict[str, list[SentTx]] = {sender: [] for sender in load.senders}
        """Per sender, its transactions not yet seen final, in nonce order."""
        self.heights: list[tuple[float, int, int]] = []
        """(seconds after origin, wall clock ms, height) of every /status read."""
        self.rejections: list[str] = []
        """Unexpected answers to a submission."""
        self.submitted = 0
        """Distinct transactions signed and sent."""
        self._nonces: dict[str, int] = {}
        self._min_fee = 0
        self._sending = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="load", daemon=True)
        self._lock = threading.Lock()
        self._failure: BaseException | None = None

    def start(self) -> None:
        """Read the senders' nonces, then send and watch in the background."""
        node = self.net.available_nodes[0]
        for sender in self.load.senders:
            self._nonces[sender] = node.get_ok(f"/accounts/{self.net.address(sender).hex()}")["nonce"]
        self._min_fee = node.status()["min_fee"]
        self._sending.set()
        self._thread.start()

    def stop_sending(self) -> None:
        """No new transactions; those sent are still watched and resent."""
        self._sending.clear()

    def close(self) -> None:
        """Stop the thread."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(30)
        if self._failure is not None:
            raise AssertionError(f"the load generator failed: {self._failure!r}")

    def outstanding(self) -> int:
        """Transactions sent and not yet seen final."""
        with self._lock:
            return sum(len(queue) for queue in self.unconfirmed.values())

    def _elapsed(self) -> float:
        return time.monotonic() - self.origin

    def _run(self) -> None:
        next_send = time.monotonic()
        turn = 0
        try:
            while not self._stopping.is_set():
                now = time.monotonic()
                if self._sending.is_set() and now >= next_send:
                    self._send_new()
                    next_send = max(next_send + 1.0 / self.load.rate, now - 1.0)
                self._watch()
                self._resend_stuck()
                nodes = self.net.available_nodes
                if nodes:
                    self._observe(nodes[turn % len(nodes)])
                    turn += 1
                time.sleep(0.05)
        except BaseException as error:  # reported by close()
            self._failure = error

    def _pick(self) -> NodeHandle | None:
        nodes = self.net.available_nodes
        return self.rng.choice(nodes) if nodes else None

    def _send_new(self) -> None:
        with self._lock:
            candidates = [sender for sender, queue in self.unconfirmed.items() if len(queue) < self.load.window]
        if not candidates:
            return
        sender = min(candidates, key=lambda name: (len(self.unconfirmed[name]), self.rng.random()))
        recipient = self.rng.choice([name for name in ("faucet", "alice", "bob", "carol", "dave", "erin")
                                     if name != sender])
        nonce = self._nonces[sender]
        payload = {"to": self.net.address(recipient), "amount": self.rng.randint(1, 1000)}
        tx = sign_transaction(self.net.keys[sender], self.net.chain_id, "transfer", payload, nonce, self._min_fee)
        sent = SentTx(sender, nonce, tx.hash.hex(), tx.raw)
        self._nonces[sender] = nonce + 1
        self.submitted += 1
        with self._lock:
            self.unconfirmed[sender].append(sent)
        self._post(sent)

    def _post(self, sent: SentTx) -> None:
        node = self._pick()
        if node is None:
            return
        try:
            code, body = http_post(node.url + "/txs", sent.raw, timeout=REQUEST_TIMEOUT_S)
        except OSError:
            return
        error = body.get("error", {}) if isinstance(body, dict) else {}
        if code == 202 or error.get("code") in ("duplicate", "bad_nonce"):  # held already, or already final
            sent.last_sent = time.monotonic()
        else:
            self.rejections.append(f"{node.name}: POST /txs {sent.hash[:12]} answered {code}: {body!r}")

    def _watch(self) -> None:
        """Ask a node about each sender's oldest transactions, in nonce order."""
        for queue in self.unconfirmed.values():
            while queue:
                node = self._pick()
                if node is None:
                    return
                try:
                    code, body = http_get(f"{node.url}/txs/{queue[0].hash}", timeout=REQUEST_TIMEOUT_S)
                except OSError:
                    break
                if code != 200 or body.get("status") != "committed":
                    break
                with self._lock:
                    sent = queue.pop(0)
                self.final[sent.hash] = FinalTx(sent.hash, body["height"], body["block_hash"], node.name,
                                                self._elapsed())

    def _resend_stuck(self) -> None:
        now = time.monotonic()
        for queue in self.unconfirmed.values():
            if queue and now - queue[0].last_sent > RESEND_AFTER_S:
                for sent in list(queue):
                    self._post(sent)

    def _observe(self, node: NodeHandle) -> None:
        try:
            code, body = http_get(node.url + "/status", timeout=REQUEST_TIMEOUT_S)
        except OSError:
            return
        if code == 200:
            self.heights.append((self._elapsed(), int(time.time() * 1000), body["height"]))


# --- running a scenario -------------------------------------------------------------


@dataclass
class Report:
    """What a run did and found."""

    scenario: Scenario
    """What ran."""
    seed: int
    """The seed of the load (and, for a soak, of the schedule)."""
    applied: list[tuple[float, str]] = field(default_factory=list)
    """(seconds after the start of the schedule, step) as applied."""
    checks: list[tuple[str, bool, str]] = field(default_factory=list)
    """(check, passed, detail)."""
    submitted: int = 0
    """Load transfers signed and sent."""
    final: int = 0
    """Load transfers seen final."""
    height: int = 0
    """The height every node reached at the end."""
    known_bugs: dict[str, int] = field(default_factory=dict)
    """Open bugs seen in node logs (`KNOWN_BUGS`) → records."""
    liveness_s: float | None = None
    """From the last perturbation undone to the probe transaction final everywhere."""
    duration_s: float = 0.0
    """Wall time of the whole run, start-up and checks included."""

    @property
    def ok(self) -> bool:
        """True when every check passed."""
        return bool(self.checks) and all(passed for _, passed, _ in self.checks)

    def failures(self) -> list[str]:
        """`check: detail` of each failed check."""
        return [f"{name}: {detail}" for name, passed, detail in self.checks if not passed]

    def summary(self) -> str:
        """A human report: the schedule as applied, the counts and every check."""
        lines = [f"scenario {self.scenario.name} (seed {self.seed}): {self.scenario.description}",
                 f"  {self.duration_s:.0f} s, {self.submitted} transfers sent, {self.final} seen final, "
                 f"height {self.height}, liveness after the last fault "
                 f"{'-' if self.liveness_s is None else f'{self.liveness_s:.1f} s'}"]
        lines += [f"  t={at:5.1f}s {what}" for at, what in self.applied]
        lines += [f"  [{'ok' if passed else 'FAIL'}] {name}{'' if passed else ': ' + detail}"
                  for name, passed, detail in self.checks]
        lines += [f"  [known bug, {count} log records] {bug}" for bug, count in self.known_bugs.items()]
        return "\n".join(lines)


def apply_step(net: Testnet, step: Step) -> None:
    """Carry out one step on the testnet."""
    if step.action == "kill":
        net.kill(step.node)  # type: ignore[arg-type]
    elif step.action == "start":
        net.relaunch(step.node)  # type: ignore[arg-type]
    elif step.action == "pause":
        net.pause(step.node)  # type: ignore[arg-type]
    elif step.action == "resume":
        net.resume(step.node)  # type: ignore[arg-type]
    elif step.action == "restart":
        net.stop(step.node)  # type: ignore[arg-type]
        net.relaunch(step.node)  # type: ignore[arg-type]
    elif step.action == "skew":
        net.skew_clock(step.node, step.skew_ms)  # type: ignore[arg-type]
    elif step.action == "disconnect":
        net.disconnect(step.node)  # type: ignore[arg-type]
    elif step.action == "reconnect":
        net.reconnect(step.node)  # type: ignore[arg-type]
    elif step.action == "partition":
        net.partition(step.groups)
    elif step.action == "heal":
        net.heal()
    elif step.action == "add_full_node":
        net.add_full_node()
    elif step.action == "crash_all":
        running = [node.index for node in net.nodes if node.running]
        for index in running:
            net.kill(index)
        for index in running:
            net.relaunch(index)


def restore(net: Testnet) -> None:
    """Undo what is still perturbed: heal cuts, resume paused nodes, start stopped ones."""
    if net.network is not None:
        net.heal()
    for node in net.nodes:
        if node.paused:
            net.resume(node.index)
        elif not node.running:
            net.relaunch(node.index)


def max_height(net: Testnet) -> int:
    """The highest height any answering node reports."""
    heights = [status["height"] for node in net.available_nodes if (status := node.try_status()) is not None]
    return max(heights, default=0)


def run_scenario(scenario: Scenario, directory: Path, seed: int = 0,
                 log: Callable[[str], None] = lambda _: None) -> Report:
    """Start the testnet, run load and schedule, bring every node back, check; the report.

    Raises `testnet_harness.NetworkUnavailable` when the scenario needs namespaces
    and the machine cannot make them."""
    report = Report(scenario, seed)
    began = time.monotonic()
    manifest = Manifest(validators=scenario.validators, faults=dict(scenario.faults), network=scenario.network)
    net = Testnet(directory, manifest, timeout=WAIT_S)
    try:
        net.start_all()
        _run_and_check(net, scenario, seed, report, log)
    finally:
        problems = net.close()
    report.checks.append(("clean shutdown on SIGTERM", not problems, "; ".join(problems)))
    report.duration_s = time.monotonic() - began
    return report


def _run_and_check(net: Testnet, scenario: Scenario, seed: int, report: Report,
                   log: Callable[[str], None]) -> None:
    origin = time.monotonic()
    load = LoadGenerator(net, scenario.load, random.Random(seed), origin)
    load.start()
    try:
        _run_schedule(net, scenario, origin, report, log)
        delay = origin + scenario.load.duration_s - time.monotonic()
        if delay > 0:
            time.sleep(delay)  # the rest of the scripted schedule: load only
        load.stop_sending()
        restore(net)
        restored = time.monotonic()
        report.applied.append((restored - origin, "restore: heal, resume, start"))
        log(f"t={restored - origin:5.1f}s everything restored; checking")
        _check(report, "liveness after the last perturbation", lambda: _probe(net, report, restored))
        _check(report, "every accepted load tx ends final",
               lambda: wait_until(lambda: load.outstanding() == 0, WAIT_S,
                                  lambda: net.describe(f"{load.outstanding()} load txs final")))
    finally:
        load.close()
    report.submitted, report.final = load.submitted, len(load.final)
    _check(report, "identical blocks on every node", lambda: _identical(net, report))
    _check(report, "no final tx missing anywhere", lambda: _final_everywhere(net, load))
    _check(report, "conservation (R17)", lambda: net.assert_conservation())
    _check(report, "block times (R28)", lambda: _block_times(net, load, report.height))
    if scenario.punished:
        _check(report, "equivocator punished (R27)", lambda: _punished(net, scenario.punished))
    skews = [step for step in scenario.steps if step.action == "skew" and step.skew_ms]
    if skews:
        _check(report, "clock skews in force", lambda: _skews_logged(net, skews))
    _check(report, "load submissions answered as expected",
           lambda: _assert(not load.rejections, "; ".join(load.rejections[:5])))
    _check(report, "no traceback or ERROR in node logs", lambda: _clean_logs(net, report))


def _run_schedule(net: Testnet, scenario: Scenario, origin: float, report: Report,
                  log: Callable[[str], None]) -> None:
    pending: tuple[Step, int] | None = None  # a step with an expectation, and the height then
    for step in scenario.steps:
        delay = origin + step.at_s - time.monotonic()
        if delay > 0:
            time.sleep(delay)  # the scripted perturbation schedule
        if pending is not None:
            _expectation(report, *pending, _height_for(net, *pending))
        at = time.monotonic() - origin
        apply_step(net, step)
        took = time.monotonic() - origin - at
        report.applied.append((at, f"{step.describe()} ({took:.1f} s)"))
        log(f"t={at:5.1f}s {step.describe()} ({took:.1f} s)")
        pending = (step, max_height(net)) if step.expect else None
    if pending is not None:
        delay = origin + scenario.load.duration_s - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        _expectation(report, *pending, _height_for(net, *pending))


LIVE_GRACE_S = 60.0
"""A `live` step whose window passed without a new height gets this much longer (the
quorum is still there; a loaded 2-core machine can be slow) before it counts as stuck."""


def _height_for(net: Testnet, step: Step, before: int) -> int:
    """The height to judge `step` by: for `live`, wait (bounded) for progress first."""
    if step.expect == "live":
        deadline = time.monotonic() + LIVE_GRACE_S
        while max_height(net) <= before and time.monotonic() < deadline:
            time.sleep(0.2)  # polling a condition with a generous deadline
    return max_height(net)


def _expectation(report: Report, step: Step, before: int, after: int) -> None:
    name = f"{step.expect} after '{step.describe()}'"
    if step.expect == "live":
        report.checks.append((name, after > before, f"height stayed {before}"))
    else:
        report.checks.append((name, after <= before + 1, f"height went from {before} to {after} without a quorum"))


def _check(report: Report, name: str, check: Callable[[], Any]) -> None:
    try:
        check()
    except AssertionError as error:
        report.checks.append((name, False, str(error)[:4000]))
    else:
        report.checks.append((name, True, ""))


def _assert(condition: bool, detail: str) -> None:
    if not condition:
        raise AssertionError(detail)


def _probe(net: Testnet, report: Report, restored: float) -> None:
    node = next(node for node in net.available_nodes if node.validator)
    tx_hash = net.transfer(PROBE_SENDER, "erin", 1, node=node.index)
    net.wait_for_tx(tx_hash)
    report.liveness_s = time.monotonic() - restored


def _identical(net: Testnet, report: Report) -> None:
    report.height = net.wait_identical_blocks(height=max_height(net))


def _final_everywhere(net: Testnet, load: LoadGenerator) -> None:
    missing = []
    for final in load.final.values():
        for node in net.nodes:
            view = net.tx_on(node, final.hash)
            placed = None if view is None else (view["status"], view["height"], view["block_hash"])
            if placed != ("committed", final.height, final.block_hash):
                missing.append(f"{final.hash[:12]} final at {final.height} on {final.node} "
                               f"(t={final.seen_at_s:.1f}s) but {placed} on {node.name}")
    _assert(not missing, f"{len(missing)} final txs missing: " + "; ".join(missing[:10]))


def _block_times(net: Testnet, load: LoadGenerator, top: int) -> None:
    node = net.nodes[0]
    times = [node.get_ok(f"/blocks/{height}")["header"]["time"] for height in range(1, top + 1)]
    problems = [f"block {height + 1} time {times[height]} not after {times[height - 1]}"
                for height in range(1, len(times)) if times[height] <= times[height - 1]]
    first_seen: dict[int, int] = {}
    for _, wall_ms, height in sorted(load.heights, key=lambda entry: entry[1]):
        for seen in range(1, height + 1):
            first_seen.setdefault(seen, wall_ms)
    for height, block_time in enumerate(times, start=1):
        seen = first_seen.get(height)
        if seen is not None and block_time > seen + MAX_CLOCK_DRIFT_MS:
            problems.append(f"block {height} time {block_time} is {block_time - seen} ms after it was seen final")
    _assert(not problems, "; ".join(problems[:10]))


def log_problems(node: NodeHandle) -> list[str]:
    """node.log records (a line and its traceback) that reveal a bug: tracebacks, ERROR."""
    try:
        lines = node.log_path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return []
    records: list[list[str]] = []
    for line in lines:
        if LOG_RECORD_START.match(line) or not records:
            records.append([line])
        else:
            records[-1].append(line)
    texts = ["\n".join(record) for record in records]
    return [text for text in texts if any(marker in text for marker in LOG_PROBLEM_MARKERS)]


def _clean_logs(net: Testnet, report: Report) -> None:
    unknown = []
    for node in net.nodes:
        for record in log_problems(node):
            bug = next((bug for bug, parts in KNOWN_BUGS.items() if all(part in record for part in parts)), None)
            if bug is None:
                unknown.append(f"{node.name}: {record}")
            else:
                report.known_bugs[bug] = report.known_bugs.get(bug, 0) + 1
    _assert(not unknown, "\n".join(unknown)[:3000])


def _skews_logged(net: Testnet, skews: list[Step]) -> None:
    for step in skews:
        text = net.node(step.node).log_path.read_text(errors="replace")  # type: ignore[arg-type]
        marker = f"TEST CLOCK SKEW ACTIVE: MARKETCHAIN_TEST_CLOCK_SKEW_MS={step.skew_ms} ms"
        _assert(marker in text, f"node{step.node}.log lacks {marker!r}")


def _punished(net: Testnet, culprits: tuple[int, ...]) -> None:
    for index in culprits:
        address = net.node(index).validator_address
        node = next(node for node in net.nodes if node.index != index)
        evidence = [entry for entry in node.get_ok("/validators")["evidence"] if entry["validator"] == address]
        _assert(len(evidence) == 1, f"evidence against node{index}: {evidence}")
        net.wait_for_height(evidence[0]["height"] + 1, [node.index])
        later = node.get_ok(f"/validators?height={evidence[0]['height'] + 2}")["validators"]
        _assert(address not in {entry["address"] for entry in later}, f"node{index} still signs after H+2")

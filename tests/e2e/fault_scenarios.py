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

The scenarios themselves (`MATRIX`, `random_scenario`) live in harness/scenarios.py
and the load in harness/load_generator.py; both are re-exported here. `MATRIX` is what
tests/e2e/test_faults.py runs; `random_scenario(seed, …)` is what `make soak`
(bench/soak.py) runs.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.e2e.harness.load_generator import FinalTx, LoadGenerator, SentTx
from tests.e2e.harness.scenarios import (
    ACTIONS,
    CRASHES,
    EQUIVOCATION,
    LIVE_WINDOW_S,
    MATRIX,
    MAX_CLOCK_DRIFT_MS,
    NETWORK_ACTIONS,
    PARTITIONS,
    PROBE_SENDER,
    Load,
    Scenario,
    Step,
    random_scenario,
)
from tests.e2e.testnet_harness import NodeHandle, Testnet, wait_until

__all__ = [
    "ACTIONS", "CRASHES", "EQUIVOCATION", "LIVE_WINDOW_S", "MATRIX", "MAX_CLOCK_DRIFT_MS", "NETWORK_ACTIONS",
    "PARTITIONS", "PROBE_SENDER", "FinalTx", "Load", "LoadGenerator", "Report", "Scenario", "SentTx", "Step",
    "apply_step", "log_problems", "random_scenario", "restore", "run_scenario",
]

WAIT_S = 120.0
"""Deadline of the waits of the end phase."""

KNOWN_BUGS: dict[str, tuple[str, ...]] = {}
"""Open bugs (docs/faults.md) → substrings that identify their node.log records. A record
matching one is reported as that bug instead of failing the log check; the bug's own
strict-xfail test fails once it is fixed, and then its entry goes."""


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
    net = Testnet(directory, scenario.manifest, timeout=WAIT_S)
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
    """Every load tx seen final somewhere sits in the same block on every node (read a page of
    blocks at a time, not one request per transaction)."""
    top = max((final.height for final in load.final.values()), default=0)
    if top == 0:
        return
    net.wait_for_height(top, [node.index for node in net.nodes])
    missing = []
    for node in net.nodes:
        placed = {tx_hash: (view["height"], view["hash"]) for view in net.blocks(node, top) for tx_hash in view["txs"]}
        for final in load.final.values():
            where = placed.get(final.hash)
            if where != (final.height, final.block_hash):
                missing.append(f"{final.hash[:12]} final at {final.height} on {final.node} "
                               f"(t={final.seen_at_s:.1f}s) but {where} on {node.name}")
    _assert(not missing, f"{len(missing)} final txs missing: " + "; ".join(missing[:10]))


def _block_times(net: Testnet, load: LoadGenerator, top: int) -> None:
    times = [view["header"]["time"] for view in net.blocks(net.nodes[0], top)]
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
    return node.log_problems()


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

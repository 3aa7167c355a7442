"""Faults and hostile conditions on real processes: nothing final is ever lost (docs/faults.md).

The integration test runs the scenario matrix of `fault_scenarios.MATRIX`, one testnet
each, all at the same time (perturbations are combined to keep the number of testnets
small; about a minute in all, the longest scenario): crashes, pauses, restarts and clock
skew; disconnects and partitions in network namespaces (skipped, with the reason, where
namespaces cannot be made); an equivocating validator with a late full node. Each ends with the checks of
`run_scenario`: liveness once a quorum is back, identical blocks, every transaction
seen final present everywhere, conservation (R17), block times (R28), evidence (R27).

The unit tests check the scenario data, the random soak schedules and the test-only
clock skew and fault switch of `node.fault_plan.FaultPlan`; the last two tests reproduce, in
process and deterministically, the block-sync bugs the soak found (now fixed).
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest

from marketplace_tx.chain.params import Params
from node import block_sync
from node.block_sync import BlockSync
from node.config import HttpConfig, P2pConfig
from node.fault_plan import NO_FAULTS, FaultPlan, wall_clock_ms
from node.home import init_home, load_home
from node.node import Node
from tests.e2e.fault_scenarios import (
    LIVE_WINDOW_S,
    MATRIX,
    NETWORK_ACTIONS,
    Load,
    Report,
    Scenario,
    Step,
    random_scenario,
    run_scenario,
)
from tests.e2e.testnet_harness import netns_unavailable_reason

UNDO = {"kill": "start", "pause": "resume", "disconnect": "reconnect", "partition": "heal"}
"""Each perturbation of a random episode, and the step that undoes it."""


def _namespaces() -> set[str]:
    completed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=20)
    return {line.split()[0] for line in completed.stdout.splitlines() if line.strip()}


# --- the matrix (integration) -------------------------------------------------------


@pytest.mark.integration
@pytest.mark.timeout(400)
def test_fault_scenarios_lose_nothing_final(tmp_path: Path) -> None:
    """Every scenario of the matrix, each on its own testnet, run at the same time.

    The testnets mostly wait on the schedule (each uses about half a core), so running
    the three together takes about as long as the longest alone, not the sum (about
    three minutes); a scenario that needs namespaces where none can be made is left out
    and the test is then skipped with the reason once the others have passed."""
    unavailable = netns_unavailable_reason() if any(scenario.needs_netns for scenario in MATRIX) else None
    runnable = [scenario for scenario in MATRIX if not (scenario.needs_netns and unavailable is not None)]
    before = _namespaces() if any(scenario.needs_netns for scenario in runnable) else set()
    with ThreadPoolExecutor(max_workers=len(runnable)) as pool:
        futures = {scenario.name: pool.submit(_run_one, scenario, tmp_path / scenario.name) for scenario in runnable}
        reports = {name: future.result() for name, future in futures.items()}
    problems = []
    for name, report in reports.items():
        print(report.summary())
        if not report.ok:
            problems.append(report.summary())
        elif not report.final >= report.submitted > 0:
            problems.append(f"{name}: {report.submitted} sent, {report.final} final")
        elif report.liveness_s is None:
            problems.append(f"{name}: no liveness probe")
    if any(scenario.needs_netns for scenario in runnable) and _namespaces() != before:
        problems.append("namespaces left behind")
    assert not problems, "\n".join(problems)
    if unavailable is not None:
        skipped = [scenario.name for scenario in MATRIX if scenario not in runnable]
        pytest.skip(f"{', '.join(skipped)} need network namespaces: {unavailable}")


def _run_one(scenario: Scenario, directory: Path) -> Report:
    """`run_scenario`, its progress lines prefixed with the scenario's name."""
    return run_scenario(scenario, directory, seed=0, log=lambda line: print(f"[{scenario.name}] {line}"))


# --- the data -----------------------------------------------------------------------


def test_the_matrix_covers_every_kind_of_fault() -> None:
    actions = {step.action for scenario in MATRIX for step in scenario.steps}
    assert {"kill", "start", "pause", "resume", "restart", "skew", "disconnect", "reconnect", "partition",
            "heal", "add_full_node", "crash_all"} <= actions
    skews = [step.skew_ms for scenario in MATRIX for step in scenario.steps if step.action == "skew"]
    assert any(0 < abs(skew) <= 2000 for skew in skews), "a skew within max_clock_drift_ms"
    assert any(skew > 2000 for skew in skews) and any(skew < -2000 for skew in skews), "beyond, both ways"
    assert any(scenario.punished for scenario in MATRIX), "an equivocating validator"
    assert any(step.expect == "stall" for scenario in MATRIX for step in scenario.steps)
    two_two = [step for scenario in MATRIX for step in scenario.steps
               if step.action == "partition" and sorted(map(len, step.groups)) == [2, 2]]
    assert two_two, "a 2|2 split of four validators"


def test_a_scenario_rejects_inconsistent_data() -> None:
    with pytest.raises(ValueError, match="needs network='netns'"):
        Scenario("x", "", Load(), (Step(1, "partition", groups=((0,), (1,))),))
    with pytest.raises(ValueError, match="out of time order"):
        Scenario("x", "", Load(), (Step(2, "kill", 0), Step(1, "start", 0)))
    with pytest.raises(ValueError, match="unknown action"):
        Scenario("x", "", Load(), (Step(1, "explode", 0),))
    with pytest.raises(ValueError, match="liveness probe"):
        Scenario("x", "", Load(senders=("faucet",)), ())


@pytest.mark.parametrize("seed", range(30))
def test_random_schedules_are_reproducible_and_undo_every_fault(seed: int) -> None:
    scenario = random_scenario(seed, 600.0)
    assert scenario == random_scenario(seed, 600.0)
    assert scenario.steps and scenario.steps[-1].at_s < 600.0
    open_faults: dict[tuple[str, int | None], int] = {}
    for step in scenario.steps:
        if step.action in UNDO:
            key = (UNDO[step.action], None if step.action == "partition" else step.node)
            open_faults[key] = open_faults.get(key, 0) + 1
        elif (step.action, None if step.action == "heal" else step.node) in open_faults:
            key = (step.action, None if step.action == "heal" else step.node)
            open_faults[key] -= 1
            if not open_faults[key]:
                del open_faults[key]
    assert not open_faults, f"faults never undone: {open_faults}"
    assert sum(step.action == "add_full_node" for step in scenario.steps) <= 2
    times = [step.at_s for step in scenario.steps] + [600.0]
    for step, following in zip(scenario.steps, times[1:], strict=True):
        if step.expect == "live":
            assert following - step.at_s >= LIVE_WINDOW_S


def test_random_schedules_without_namespaces_cut_no_links() -> None:
    for seed in range(20):
        scenario = random_scenario(seed, 300.0, netns=False)
        assert scenario.network == "loopback"
        assert not any(step.action in NETWORK_ACTIONS for step in scenario.steps)


def test_random_splits_expect_a_stall_only_without_a_quorum_side() -> None:
    splits = [step for seed in range(40) for step in random_scenario(seed, 600.0).steps
              if step.action == "partition"]
    assert splits
    for step in splits:
        largest = max(sum(1 for index in side if index < 4) for side in step.groups)
        if step.expect == "stall":
            assert largest <= 2
        if largest <= 2:
            assert step.expect == "stall"


def test_an_equivocating_soak_expects_nothing_of_windows() -> None:
    scenario = random_scenario(3, 300.0, equivocate=True)
    assert scenario.punished == (1,)
    assert not any(step.expect for step in scenario.steps)


# --- the test-only clock skew -------------------------------------------------------


def test_clock_skew_variable_shifts_the_node_clock_and_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    assert FaultPlan.from_environment({}) == NO_FAULTS
    assert NO_FAULTS.clock() is wall_clock_ms
    before = int(time.time() * 1000)
    assert before <= wall_clock_ms() <= int(time.time() * 1000)
    with caplog.at_level(logging.WARNING, logger="marketchain.consensus"):
        plan = FaultPlan.from_environment({"MARKETCHAIN_TEST_CLOCK_SKEW_MS": "-123456"})
        clock = plan.clock()
        first = clock()
        second = clock()
    now = int(time.time() * 1000)
    assert plan == FaultPlan(clock_skew_ms=-123456)
    assert now - 123456 - 1000 <= first <= second <= now - 123456
    warnings = [record for record in caplog.records if "TEST CLOCK SKEW ACTIVE" in record.getMessage()]
    assert [record.getMessage() for record in warnings] == [
        "TEST CLOCK SKEW ACTIVE: MARKETCHAIN_TEST_CLOCK_SKEW_MS=-123456 ms is added to this clock"
    ], "warned once, where the node is assembled (the marker fault_scenarios looks for)"
    assert FaultPlan.from_environment({"MARKETCHAIN_TEST_CLOCK_SKEW_MS": "not a number"}) == NO_FAULTS


def test_the_equivocation_switch_is_read_into_the_fault_plan(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="marketchain.consensus"):
        plan = FaultPlan.from_environment({"MARKETCHAIN_TEST_FAULT": "equivocate"})
    assert plan == FaultPlan(equivocate=True)
    assert any("TEST FAULT ACTIVE" in record.getMessage() for record in caplog.records)
    assert FaultPlan.from_environment({"MARKETCHAIN_TEST_FAULT": "something else"}) == NO_FAULTS


def _sync_over(store: object, penalize: object = None) -> BlockSync:
    """A `BlockSync` on `store` whose peers never answer and whose jobs never run."""
    peers = SimpleNamespace(penalize=penalize or (lambda peer, penalty, reason: None))
    return BlockSync(
        store=store, chain_id="test", params=Params(), send=lambda peer, kind, body: True,  # type: ignore[arg-type]
        peers=peers, run_in_order=lambda job: None, on_block=lambda result: None,  # type: ignore[arg-type]
        on_head_moved=lambda: None, signature_known_valid=lambda tx_hash: False,
    )


# --- bugs found by the soak (docs/faults.md, "What was found") -----------------------


async def test_block_sync_forgets_a_request_that_consensus_answered_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(block_sync, "REQUEST_TIMEOUT_S", 0.05)
    head = [0]
    sync = _sync_over(SimpleNamespace(head=lambda: SimpleNamespace(height=head[0])))
    calls: list[float] = []
    original = sync.request_missing

    def counting() -> None:
        calls.append(time.monotonic())
        original()

    sync.request_missing = counting  # type: ignore[method-assign]
    peer = b"\x01" * 32
    for height in range(1, 11):
        sync.peer_height(peer, height)  # a peer announces block `height` first: it is requested
        head[0] = height  # this node's own consensus decides it meanwhile
        sync.receive(peer, {"height": height, "block": b"late", "commit": b"late"})  # the answer comes late
    calls.clear()
    await asyncio.sleep(0.5)
    # Nothing is missing, nothing is outstanding: nothing should run any more.
    assert not calls, f"{len(calls)} request_missing() runs in 0.5 s with nothing to fetch"


async def test_block_sync_timers_stop_with_the_node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(block_sync, "REQUEST_TIMEOUT_S", 0.05)
    init_home(tmp_path / "home", http=HttpConfig(port=0), p2p=P2pConfig(port=0))
    node = Node(load_home(tmp_path / "home", environ={}))
    await node.start()
    errors: list[dict] = []
    asyncio.get_running_loop().set_exception_handler(lambda loop, context: errors.append(context))
    node.sync.send = lambda peer, kind, body: True  # type: ignore[method-assign]  # a peer that never answers
    node.sync.peer_height(b"\x01" * 32, 3)  # three blocks requested from it
    await node.stop()
    await asyncio.sleep(0.3)
    assert not errors, [context.get("message") for context in errors]

"""Safety, liveness and evidence of the pure core under thousands of seeded schedules
(PROTOCOL R25, R27, R29), driven by tests/unit/consensus/consensus_simulator.py.

Each schedule is a testnet as data: n = 4 (or 7) validators, sometimes a follower, a
network that drops, delays, duplicates and reorders until a random GST, and at most f
faulty validators (crash with or without recovery, equivocation, invalid proposals).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

from marketplace_tx.rules.validators import proposer_for
from tests.paths import REPO_ROOT
from tests.unit.consensus.consensus_simulator import simulate
from tests.unit.consensus.simulator_messages import Outcome
from tests.unit.consensus.simulator_scenarios import (
    INVALID_PREFIX,
    Crash,
    NetworkProfile,
    Scenario,
    random_scenario,
    validator_keys,
)

N4_SCHEDULES = 2000
N4_HEIGHTS = 3
N7_SCHEDULES = 300
N7_HEIGHTS = 2
PER_HEIGHT_BOUND_MS = 20_000
"""Liveness: after GST and the last recovery, every live node decides each height
within this much simulated time."""


def check(outcome: Outcome) -> None:
    """Safety, validity, liveness and evidence of one run; AssertionError names the seed."""
    scenario = outcome.scenario
    label = f"seed {scenario.seed}, n = {scenario.validators}: {scenario}"
    for height in range(1, scenario.heights + 1):
        decided = {
            outcome.decisions[i][height].block_hash
            for i in outcome.honest
            if height in outcome.decisions[i]
        }
        assert len(decided) <= 1, f"SAFETY: two blocks decided at height {height}; {label}"
        for i in outcome.honest:
            if height in outcome.decisions[i]:
                assert not outcome.decisions[i][height].block.startswith(INVALID_PREFIX), (
                    f"VALIDITY; {label}"
                )
    deadline = outcome.stabilized_ms + scenario.heights * PER_HEIGHT_BOUND_MS
    for i in outcome.live:
        assert scenario.heights in outcome.decisions[i], f"LIVENESS: node {i} stuck; {label}"
        assert outcome.decisions[i][scenario.heights].time_ms <= deadline, (
            f"LIVENESS bound; {label}"
        )
    faulty = set(scenario.faulty)
    honest_addresses = {outcome.validators[i] for i in outcome.honest if i < scenario.validators}
    for _, evidence in outcome.evidence:
        assert evidence.vote_a.validator not in honest_addresses, (
            f"evidence against an honest node; {label}"
        )
        assert scenario.equivocators, f"evidence without an equivocator; {label}"
    reported = {
        (
            reporter,
            evidence.vote_a.validator,
            evidence.vote_a.vote.height,
            evidence.vote_a.vote.round,
            evidence.vote_a.vote.type,
        )
        for reporter, evidence in outcome.evidence
    }
    for node, key in outcome.double_signs_heard:
        assert (node, *key) in reported, (
            f"R27: node {node} heard a double sign and did not report it; {label}"
        )
    assert faulty.isdisjoint(outcome.honest)


def sweep(validators: int, count: int, heights: int) -> dict[str, int]:
    """Run `count` seeded schedules, check each, and return statistics."""
    stats: Counter[str] = Counter()
    for seed in range(count):
        scenario = random_scenario(seed, validators, heights)
        outcome = simulate(scenario)
        check(outcome)
        stats["schedules"] += 1
        stats["decisions"] += sum(len(outcome.decisions[i]) for i in outcome.honest)
        stats["messages"] += outcome.messages
        stats["later_round_decisions"] += sum(
            1
            for i in outcome.honest
            for decided in outcome.decisions[i].values()
            if decided.round > 0
        )
        stats["max_round"] = max(stats["max_round"], outcome.max_round)
        stats["reproposals"] += outcome.reproposals
        stats["with_crash"] += bool(scenario.crashes)
        stats["with_follower"] += bool(scenario.followers)
        stats["with_invalid_proposer"] += bool(scenario.invalid_proposers)
        if scenario.equivocators:
            stats["with_equivocator"] += 1
            stats["equivocator_reported"] += bool(outcome.evidence)
        stats["worst_ms_after_stabilization"] = max(
            stats["worst_ms_after_stabilization"],
            max(outcome.decisions[i][heights].time_ms for i in outcome.live)
            - outcome.stabilized_ms,
        )
    return dict(stats)


def assert_sweep_exercised_everything(stats: dict[str, int]) -> None:
    for key in (
        "with_crash",
        "with_follower",
        "with_invalid_proposer",
        "with_equivocator",
        "later_round_decisions",
        "reproposals",
    ):
        assert stats.get(key, 0) > 0, key
    assert stats["equivocator_reported"] >= 0.9 * stats["with_equivocator"], stats


def test_safety_and_liveness_n4_thousands_of_schedules() -> None:
    stats = sweep(4, N4_SCHEDULES, N4_HEIGHTS)
    print(f"\nn = 4: {stats['schedules']} schedules of {N4_HEIGHTS} heights: {stats}")
    assert stats["schedules"] == N4_SCHEDULES
    assert_sweep_exercised_everything(stats)


def test_safety_and_liveness_n7() -> None:
    stats = sweep(7, N7_SCHEDULES, N7_HEIGHTS)
    print(f"\nn = 7: {stats['schedules']} schedules of {N7_HEIGHTS} heights: {stats}")
    assert stats["schedules"] == N7_SCHEDULES
    assert_sweep_exercised_everything(stats)


def test_more_than_f_equivocators_break_safety_and_the_check_sees_it() -> None:
    """A control: with f + 1 equivocators (2 of 4) some schedule decides two blocks, so
    the simulator is adversarial enough for the safety check to mean something."""
    violations = 0
    for seed in range(200):
        scenario = Scenario(
            seed=seed,
            validators=4,
            heights=2,
            network=NetworkProfile(gst_ms=0, delay_bound_ms=50),
            equivocators=(seed % 4, (seed + 1) % 4),
            time_limit_ms=60_000,
        )
        outcome = simulate(scenario)
        for height in (1, 2):
            decided = {
                outcome.decisions[i][height].block_hash
                for i in outcome.honest
                if height in outcome.decisions[i]
            }
            violations += len(decided) > 1
    assert violations > 0


def test_an_idle_network_is_silent() -> None:
    """R29: with no work nobody proposes, votes or schedules anything."""
    outcome = simulate(Scenario(seed=1, heights=0, time_limit_ms=120_000))
    assert outcome.consensus_actions == 0
    assert outcome.consensus_messages == 0
    assert all(not decided for decided in outcome.decisions.values())


def test_after_the_last_block_with_work_the_chain_goes_quiet() -> None:
    outcome = simulate(Scenario(seed=2, heights=2, stop_when_decided=False, time_limit_ms=120_000))
    assert all(2 in outcome.decisions[i] and 3 not in outcome.decisions[i] for i in range(4))
    assert outcome.idle_actions == 0


def test_work_at_one_node_is_enough() -> None:
    """R29: the others start on its first message."""
    for seed in range(20):
        outcome = simulate(Scenario(seed=seed, heights=2, work_at=((seed % 4,), ((seed + 1) % 4,))))
        check(outcome)


def test_a_single_validator_decides_without_timeouts() -> None:
    outcome = simulate(Scenario(seed=3, validators=1, heights=5))
    assert [decided.round for decided in outcome.decisions[0].values()] == [0] * 5
    assert max(decided.time_ms for decided in outcome.decisions[0].values()) <= 5 * 300


def test_a_crashed_proposer_costs_a_round() -> None:
    """The round-0 proposer of height 1 is down for good: others time out and move on."""
    addresses = [key.address for key in validator_keys(4)]
    proposer = addresses.index(proposer_for(addresses, 1, 0))
    outcome = simulate(Scenario(seed=4, heights=1, crashes=(Crash(proposer, 0, None),)))
    check(outcome)
    assert all(outcome.decisions[i][1].round >= 1 for i in outcome.live)


def test_an_equivocator_is_reported_by_the_nodes_that_hear_it() -> None:
    outcome = simulate(
        Scenario(
            seed=5,
            heights=3,
            equivocators=(0,),
            network=NetworkProfile(gossip_interval_ms=50, delay_bound_ms=200),
        )
    )
    check(outcome)
    accused = {evidence.vote_a.validator for _, evidence in outcome.evidence}
    assert accused == {outcome.validators[0]}
    assert {reporter for reporter, _ in outcome.evidence} & {1, 2, 3}
    assert outcome.double_signs_heard  # and `check` saw each of them reported (R27)


def test_invalid_blocks_are_never_decided() -> None:
    for seed in range(20):
        outcome = simulate(Scenario(seed=seed, heights=4, invalid_proposers=(seed % 4,)))
        check(outcome)


def test_schedules_are_deterministic_across_processes() -> None:
    """Same seeds, different PYTHONHASHSEED: identical traces (no set is iterated)."""
    seeds = list(range(0, 400, 20))
    here = [simulate(random_scenario(seed)).trace for seed in seeds]
    assert here == [simulate(random_scenario(seed)).trace for seed in seeds]
    assert len(set(here)) > 1
    script = (
        "import json;"
        "from tests.unit.consensus.consensus_simulator import simulate;"
        "from tests.unit.consensus.simulator_scenarios import random_scenario;"
        f"print(json.dumps([simulate(random_scenario(seed)).trace for seed in {seeds}]))"
    )
    root = REPO_ROOT
    for hash_seed in ("1", "2"):
        environment = {**os.environ, "PYTHONHASHSEED": hash_seed}
        result = subprocess.run(
            [sys.executable, "-c", script],
            cwd=root,
            env=environment,
            capture_output=True,
            text=True,
            check=True,
        )
        assert json.loads(result.stdout) == here
